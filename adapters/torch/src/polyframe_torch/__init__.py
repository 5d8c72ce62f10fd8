"""PyTorch backend for polyframe (registered as ``torch``).

Importing this module does not import torch; building the first model does.
"""

from __future__ import annotations

import polyframe
from polyframe.backend import Backend

__all__ = ["TorchBackend", "polyframe_backends"]


class TorchBackend(Backend):
    """Compiles a polyframe model into a ``torch.nn.Module`` (NCHW) with a ``torch.optim`` optimizer."""

    name = "torch"
    framework = "torch"
    framework_distribution = "torch"
    executable = "polyframe_torch._executable:TorchExecutable"
    distributed = "polyframe_torch._distributed:TorchDataParallelEngine"
    precisions = ("float32", "bf16-mixed", "fp16-mixed")
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


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return [TorchBackend]
