"""PyTorch backend for polyframe (registered as ``torch``).

Importing this module does not import torch; :meth:`TorchBackend.build` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polyframe
from polyframe.backend import Backend, BuildOptions, Executable

if TYPE_CHECKING:
    import numpy as np

    from polyframe.losses import Loss
    from polyframe.model import Sequential
    from polyframe.optimizers import Optimizer

__all__ = ["TorchBackend", "polyframe_backends"]


class TorchBackend(Backend):
    """Compiles a polyframe model into a ``torch.nn.Module`` (NCHW) with a ``torch.optim`` optimizer."""

    name = "torch"
    framework = "torch"
    framework_distribution = "torch"
    adapter_distribution = "polyframe-torch"
    priority = 10

    def devices(self) -> list[str]:
        import torch

        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            found.append("mps")
        return found

    def build(self, model: Sequential, weights: dict[str, np.ndarray], loss: Loss,
              optimizer: Optimizer, options: BuildOptions) -> Executable:
        from ._executable import TorchExecutable

        return TorchExecutable(model, weights, loss, optimizer, options)


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return [TorchBackend]
