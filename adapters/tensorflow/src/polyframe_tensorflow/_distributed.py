"""Data-parallel training on ``tf.distribute``: one process drives every local device through a
``MirroredStrategy`` (on CPU, that many logical CPU devices, configured before TensorFlow
initialises its runtime).

The model's variables are created under the strategy's scope, so each replica holds a mirrored
copy. One compiled step runs every replica on its contiguous slice of the global batch
(``strategy.run``; replica ``k`` takes the rows :func:`polyframe.distributed.slice_bounds` gives
it), scales its slice's mean loss by ``rows / total``, sums the gradients across replicas with
the strategy's all-reduce and applies polyframe's optimizer once, in cross-replica context,
which updates every mirrored copy. BatchNorm is refused: its moving statistics cannot be
assigned from several replicas.
"""

from __future__ import annotations

import numpy as np

from polyframe.backend import BuildOptions, StepResult
from polyframe.distributed import DataParallelEngine, WorkerContext
from polyframe.errors import ConfigError
from polyframe.layers import BatchNorm
from polyframe.losses import Loss
from polyframe.model import Model
from polyframe.optimizers import Optimizer

from ._executable import TensorFlowExecutable, _Step, tf

__all__ = ["TensorFlowDataParallelEngine"]

Tensor = tf.Tensor


def mirrored_strategy(count: int) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over ``count`` local GPUs, else ``count`` logical CPU devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < count:
            raise ConfigError(f"devices={count} but TensorFlow sees {len(gpus)} GPU(s)")
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(count)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as exc:
        raise ConfigError(f"cannot split the CPU into {count} TensorFlow devices: the runtime was "
                          f"already initialised in this process ({exc})") from None
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(count)],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


def _rows(total: Tensor, replicas: int, k: Tensor) -> tuple[Tensor, Tensor]:
    """``(start, stop)`` of replica ``k``, as :func:`polyframe.distributed.slice_bounds`."""
    base, extra = total // replicas, total % replicas
    start = k * base + tf.minimum(k, extra)
    return start, start + base + tf.cast(k < extra, total.dtype)


class TensorFlowDataParallelEngine(TensorFlowExecutable, DataParallelEngine):
    """A :class:`TensorFlowExecutable` built under a MirroredStrategy, with a distributed step."""

    def __init__(self, model: Model, weights: dict[str, np.ndarray], loss: Loss | tuple[Loss, ...],
                 optimizer: Optimizer, options: BuildOptions, context: WorkerContext) -> None:
        if context.processes != 1:
            raise ConfigError("the tensorflow backend drives every device of a machine from one "
                              "process; for several machines see docs/distributed.md (TF_CONFIG)")
        if any(isinstance(node.layer, BatchNorm) for node in model.nodes):
            raise ConfigError("data-parallel training on tensorflow does not support BatchNorm "
                              "(its moving statistics would be written by every replica); train it "
                              "with strategy='single' or on the jax backend")
        self._strategy = mirrored_strategy(context.local_devices)
        with self._strategy.scope():
            super().__init__(model, weights, loss, optimizer, options)
            update = self._optimizer
            update._compiled = tf.function(update._update, autograph=False)  # XLA cannot span devices
            self._train = _Step(self._distributed_graph, *self._train_specs)

    def _distributed_graph(self, *tensors: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        strategy = self._strategy
        replicas = strategy.num_replicas_in_sync
        total = tf.shape(tensors[0], out_type=tf.int64)[0]

        def replica(*batch: Tensor) -> tuple[Tensor, list[Tensor], tuple[Tensor, ...]]:
            k = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
            start, stop = _rows(total, replicas, k)
            part = [t[start:stop] for t in batch]
            x, y = part[:self._inputs], part[self._inputs:]
            variables = self._net.ordered
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                outputs = self._net(x, training=True)
                loss = self._loss(outputs, y)
                share = tf.cast(stop - start, loss.dtype) / tf.cast(total, loss.dtype)
                weighted = tf.where(stop > start, loss * share, tf.zeros_like(loss))
            return weighted, tape.gradient(weighted, variables), outputs

        weighted, grads, outputs = strategy.run(replica, args=tensors)
        self._optimizer(strategy.reduce(tf.distribute.ReduceOp.SUM, grads, axis=None))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, weighted, axis=None)
        return loss, tuple(strategy.gather(o, axis=0) for o in outputs)

    def devices_used(self) -> list[str]:
        return list(self._strategy.extended.worker_devices)

    def train_share(self, x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray | tuple[np.ndarray, ...],
                    total: int) -> StepResult:
        return self.train_step(x, y)
