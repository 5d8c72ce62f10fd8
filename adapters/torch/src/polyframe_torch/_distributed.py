"""Data-parallel training on torch.distributed: one process per device, the model wrapped in
``DistributedDataParallel``, gradients averaged by its all-reduce (gloo on CPU).

Each process backpropagates its slice's mean loss times ``rows * processes / total``, so DDP's
average of the processes' gradients is the gradient of the mean loss over the global batch. A
process with no rows (a last batch smaller than the number of processes) still joins the
all-reduce, with a zero gradient. DDP broadcasts buffers from rank 0 each step, so BatchNorm's
moving statistics are worker 0's and its batch statistics are per worker (not synchronised).
"""

from __future__ import annotations

import datetime

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from polyframe.backend import BuildOptions, StepResult
from polyframe.distributed import DataParallelEngine, WorkerContext
from polyframe.execution import as_tuple
from polyframe.losses import Loss
from polyframe.model import Model
from polyframe.optimizers import Optimizer

from ._executable import TorchExecutable

__all__ = ["TorchDataParallelEngine"]


def init_process_group(context: WorkerContext) -> None:
    """Join the job's process group: gloo on CPU (nccl would need the model on CUDA devices)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://{context.address}:{context.port}",
                                rank=context.rank, world_size=context.processes,
                                timeout=datetime.timedelta(seconds=context.timeout_s))


class TorchDataParallelEngine(TorchExecutable, DataParallelEngine):
    """One rank of a DDP job: a :class:`TorchExecutable` whose module is wrapped in
    ``DistributedDataParallel`` for training steps."""

    def __init__(self, model: Model, weights: dict[str, np.ndarray], loss: Loss | tuple[Loss, ...],
                 optimizer: Optimizer, options: BuildOptions, context: WorkerContext) -> None:
        init_process_group(context)
        super().__init__(model, weights, loss, optimizer, options)
        self._processes, self._rank = context.processes, context.rank
        self._ddp = DistributedDataParallel(self.module)

    def devices_used(self) -> list[str]:
        return [f"cpu (rank {self._rank} of {self._processes}, gloo)"]

    def train_share(self, x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray | tuple[np.ndarray, ...],
                    total: int) -> StepResult:
        rows = len(as_tuple(x)[0])
        self._mode(True)
        self._optimizer.zero_grad(set_to_none=True)
        outputs = self._forward(x, self._ddp)
        if rows:
            loss = self._loss(outputs, y)
            objective = loss * (rows * self._processes / total)
        else:
            loss = torch.tensor(float("nan"))
            objective = sum(o.sum() for o in outputs) * 0.0
        self._precision.backward_and_step(objective, self._optimizer)
        return StepResult(loss.item(), self._host(outputs))
