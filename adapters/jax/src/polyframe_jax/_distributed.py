"""Data-parallel training on a JAX device mesh: one process drives every local device (on CPU,
``jax_num_cpu_devices`` host devices, set before JAX creates its backend).

The jitted step is the single-device one: params, state and optimizer state are replicated over
a one-axis ``("data",)`` mesh and each batch is placed with ``NamedSharding(mesh, P("data"))``,
so device ``k`` holds the ``k``-th contiguous block of rows and XLA's partitioner inserts the
gradient all-reduce. The program is still the mean over the global batch, so BatchNorm's batch
statistics are global (synchronised across devices). A batch whose size the device count does
not divide is replicated instead of split (same result, no speed-up).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from polyframe.backend import BuildOptions, StepResult
from polyframe.distributed import DataParallelEngine, WorkerContext
from polyframe.errors import ConfigError
from polyframe.execution import as_tuple
from polyframe.losses import Loss
from polyframe.model import Model
from polyframe.optimizers import Optimizer

from ._executable import JaxExecutable

__all__ = ["JaxDataParallelEngine"]


def local_mesh(count: int) -> Mesh:
    """A ``("data",)`` mesh over the first ``count`` devices of this process (on a CPU-only
    machine, ``count`` host devices: call before JAX creates its backends)."""
    jax.config.update("jax_num_cpu_devices", count)
    devices = jax.local_devices()
    if len(devices) < count:
        raise ConfigError(f"devices={count} but JAX sees {len(devices)} local device(s) "
                          f"({', '.join(map(str, devices))}); ask for at most {len(devices)}")
    return Mesh(np.array(devices[:count]), ("data",))


class JaxDataParallelEngine(JaxExecutable, DataParallelEngine):
    """A :class:`JaxExecutable` whose arrays live on a device mesh."""

    def __init__(self, model: Model, weights: dict[str, np.ndarray], loss: Loss | tuple[Loss, ...],
                 optimizer: Optimizer, options: BuildOptions, context: WorkerContext) -> None:
        if context.processes != 1:
            raise ConfigError("the jax backend drives every device of a machine from one process; "
                              "for several machines see docs/distributed.md (jax.distributed)")
        self._mesh = local_mesh(context.local_devices)
        super().__init__(model, weights, loss, optimizer, options)
        self._replicate()

    def _replicate(self) -> None:
        everywhere = NamedSharding(self._mesh, PartitionSpec())
        for name in ("_params", "_state", "_opt_state", "_step", "_dropout_key"):
            setattr(self, name, jax.device_put(getattr(self, name), everywhere))

    def _place(self, array: np.ndarray) -> jax.Array:
        split = len(array) % self._mesh.size == 0
        spec = PartitionSpec("data") if split else PartitionSpec()
        return jax.device_put(array, NamedSharding(self._mesh, spec))

    def _inputs(self, x: np.ndarray | tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
        return tuple(self._place(np.asarray(part)) for part in as_tuple(x))

    def _targets(self, y: np.ndarray | tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
        return tuple(self._place(np.asarray(t, dtype=dtype))
                     for t, dtype in zip(as_tuple(y), self._target_dtypes))

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        super().set_weights(weights)
        self._replicate()

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_optimizer_state(state)
        self._replicate()

    def devices_used(self) -> list[str]:
        return [str(device) for device in self._mesh.devices.flat]

    def train_share(self, x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray | tuple[np.ndarray, ...],
                    total: int) -> StepResult:
        return self.train_step(x, y)
