"""Data-parallel training: the strategy options, how a global batch is split, and the executable
the trainer drives when the work is spread over several workers.

The trainer's loop does not change. With ``strategy="data_parallel"`` it talks to a
:class:`DataParallelExecutable`, which hands each worker process its contiguous slice of every
global batch (worker ``k`` takes rows ``bounds[k]`` of :func:`slice_bounds`), collects the
slices' losses and outputs, and puts them back together in batch order. The workers train
on their framework's own engine (torch DDP, ``tf.distribute``, a JAX device mesh): each adapter
supplies it as a :class:`DataParallelEngine` named by :attr:`polyframe.backend.Backend.distributed`.

The loss is the mean over the global batch, so the gradient an engine applies is the
single-worker one up to summation order. Evaluation and prediction run on worker 0 alone.
"""

from __future__ import annotations

import abc
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._checks import check_int
from .backend import BuildOptions, Executable, StepResult
from .errors import ConfigError
from .execution import as_tuple, single_or_tuple

if TYPE_CHECKING:
    from .backend import Backend
    from .losses import Loss
    from .model import Model
    from .optimizers import Optimizer

__all__ = ["STRATEGIES", "Parallel", "WorkerContext", "DataParallelEngine", "DataParallelExecutable",
           "check_parallel", "max_local_devices", "MIN_DEVICE_LIMIT", "slice_bounds", "split_batch",
           "merge_outputs", "mean_loss", "build_data_parallel"]

STRATEGIES = ("single", "data_parallel")


@dataclass(frozen=True)
class Parallel:
    """``devices`` workers on each of ``nodes`` machines."""

    devices: int = 1
    nodes: int = 1

    @property
    def workers(self) -> int:
        return self.devices * self.nodes


@dataclass(frozen=True)
class WorkerContext:
    """Where one worker process stands in the job, handed to its engine.

    ``rank`` / ``processes`` number the processes; ``local_devices`` is how many devices this
    process drives (1 for a process-per-device engine); ``address`` / ``port`` is the framework's
    rendezvous (the coordinator of rank 0), and ``timeout_s`` bounds every collective.
    """

    rank: int
    processes: int
    local_devices: int
    address: str
    port: int
    timeout_s: float


MIN_DEVICE_LIMIT = 16
"""``devices`` may always go up to this (a node with many GPUs), and up to the CPU count beyond."""


def max_local_devices() -> int:
    """The largest ``devices`` polyframe will start on this machine."""
    return max(MIN_DEVICE_LIMIT, os.cpu_count() or 1)


def check_parallel(strategy: object, devices: object, nodes: object) -> Parallel | None:
    """The checked options: ``None`` for ``"single"``, else a :class:`Parallel`."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}")
    devices = check_int(devices, "devices", minimum=1)
    nodes = check_int(nodes, "nodes", minimum=1)
    if strategy == "single":
        if devices != 1 or nodes != 1:
            raise ConfigError(f"devices={devices}, nodes={nodes} need strategy='data_parallel'; "
                              "the single strategy trains on one device")
        return None
    limit = max_local_devices()
    if devices > limit:
        raise ConfigError(
            f"devices={devices} is more than this machine can run: data-parallel training starts one "
            f"worker (a process or a logical device) per device, and this machine has "
            f"{os.cpu_count() or 1} CPU core(s); use at most devices={limit}")
    if nodes != 1:
        raise ConfigError(
            f"nodes={nodes}: polyframe starts workers on this machine only. To train on several "
            "machines, start polyframe on each one with the framework's own launcher "
            "(torchrun, TF_CONFIG, jax.distributed; see docs/distributed.md)")
    return Parallel(devices, nodes)


def slice_bounds(total: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` rows of each of ``parts`` workers in a batch of ``total``:
    the first ``total % parts`` workers take one row more. A worker may get none."""
    base, extra = divmod(total, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (k < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def split_batch(batch: np.ndarray | tuple[np.ndarray, ...], bounds: Sequence[tuple[int, int]]
                ) -> list[np.ndarray | tuple[np.ndarray, ...]]:
    """Each worker's rows of a batch (one array, or a tuple of one per model input/output)."""
    parts = as_tuple(batch)
    return [single_or_tuple([a[start:stop] for a in parts]) for start, stop in bounds]


def merge_outputs(pieces: Sequence[np.ndarray | tuple[np.ndarray, ...]]
                  ) -> np.ndarray | tuple[np.ndarray, ...]:
    """The workers' outputs put back in batch order."""
    columns = zip(*(as_tuple(piece) for piece in pieces))
    return single_or_tuple([np.concatenate(column) for column in columns])


def mean_loss(losses: Sequence[float], counts: Sequence[int]) -> float:
    """The global batch's mean loss from each worker's mean over its ``count`` rows."""
    total = sum(counts)
    return float(sum(loss * n for loss, n in zip(losses, counts) if n) / total)


class DataParallelEngine(Executable):
    """What an adapter runs in one worker process: an executable whose :meth:`train_share` steps
    on this process's slice of a global batch, exchanging gradients with the other workers
    through its framework.

    The gradient applied must be that of the mean loss over the whole global batch of ``total``
    rows; the loss handed back is the mean over this process's rows (the driver combines them).
    """

    @abc.abstractmethod
    def train_share(self, x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray | tuple[np.ndarray, ...],
                    total: int) -> StepResult:
        """One optimizer step on this process's rows of a global batch of ``total`` rows."""

    @abc.abstractmethod
    def devices_used(self) -> list[str]:
        """The devices this process trains on, in the order its rows are split over them."""

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        return self.train_share(x, y, len(as_tuple(x)[0]))


class DataParallelExecutable(Executable):
    """The trainer's side of a data-parallel job: one executable over several worker processes.

    Training steps go to every worker, each with its slice; evaluation, prediction and reading
    state go to worker 0; writing state goes to every worker. A worker that fails, dies or stops
    answering stops the whole job with a :class:`~polyframe.errors.DistributedError`.
    """

    def __init__(self, backend: Backend, model: Model, weights: dict[str, np.ndarray],
                 loss: Loss | tuple[Loss, ...], optimizer: Optimizer, options: BuildOptions,
                 parallel: Parallel) -> None:
        from ._workers import WorkerPool

        if backend.distributed is None:
            raise ConfigError(f"the {backend.name!r} backend has no data-parallel engine; train "
                              "with strategy='single' or use torch, tensorflow or jax")
        per_device = backend.distributed_processes == "per_device"
        self.parallel = parallel
        self.processes = parallel.devices if per_device else 1
        local = 1 if per_device else parallel.devices
        self.pool = WorkerPool(backend.name, self.processes, local,
                               (model, weights, loss, optimizer, options))
        self._finalizer = weakref.finalize(self, self.pool.close)

    def close(self) -> None:
        """Stop the worker processes (also done when this executable is garbage-collected)."""
        self._finalizer()

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers, rank 0 first."""
        return self.pool.pids

    def devices_used(self) -> list[str]:
        """Every device of the job, in the order the rows of a global batch are split over them."""
        return [device for devices in self.pool.call_each([("devices_used", ())] * self.processes,
                                                           fatal=False) for device in devices]

    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        return self.pool.call(0, "prepare_inputs", x)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        total = len(as_tuple(x)[0])
        bounds = slice_bounds(total, self.processes)
        calls = [("train_share", (xs, ys, total)) for xs, ys
                 in zip(split_batch(x, bounds), split_batch(y, bounds))]
        results = self.pool.call_each(calls)
        counts = [stop - start for start, stop in bounds]
        kept = [(r, n) for r, n in zip(results, counts) if n]
        return StepResult(mean_loss([r.loss for r, _ in kept], [n for _, n in kept]),
                          merge_outputs([r.outputs for r, _ in kept]))

    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        return self.pool.call(0, "eval_step", x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.pool.call(0, "predict", x)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.pool.call(0, "get_weights")

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.pool.broadcast("set_weights", weights)

    def get_optimizer_state(self) -> dict[str, np.ndarray]:
        return self.pool.call(0, "get_optimizer_state")

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.pool.broadcast("set_optimizer_state", state)

    def get_rng_state(self) -> dict[str, np.ndarray]:
        return self.pool.call(0, "get_rng_state")

    def set_rng_state(self, state: dict[str, np.ndarray]) -> None:
        self.pool.broadcast("set_rng_state", state)

    def get_learning_rate(self) -> float:
        return self.pool.call(0, "get_learning_rate")

    def set_learning_rate(self, learning_rate: float) -> None:
        self.pool.broadcast("set_learning_rate", learning_rate)

    def get_loss_scale(self) -> dict[str, float] | None:
        return self.pool.call(0, "get_loss_scale")

    def set_loss_scale(self, state: dict[str, float]) -> None:
        self.pool.broadcast("set_loss_scale", state)


def build_data_parallel(backend: Backend, model: Model, weights: dict[str, np.ndarray],
                        loss: Loss | tuple[Loss, ...], optimizer: Optimizer, options: BuildOptions,
                        parallel: Parallel) -> DataParallelExecutable:
    """Start the workers of ``backend``'s data-parallel engine and return the trainer's handle."""
    return DataParallelExecutable(backend, model, weights, loss, optimizer, options, parallel)
