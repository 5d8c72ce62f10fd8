"""TensorFlow backend for polyframe (registered as ``tensorflow``).

TensorFlow itself is not a hard dependency, because its CPU and GPU builds are different
distributions; choose one with an extra::

    pip install "polyframe-tensorflow[cpu]"   # tensorflow-cpu>=2.16
    pip install "polyframe-tensorflow[gpu]"   # tensorflow[and-cuda]>=2.16

or install any TensorFlow >= 2.16 yourself. Importing this module does not import tensorflow;
:meth:`TensorFlowBackend.devices` and :meth:`TensorFlowBackend.build` do.
"""

from __future__ import annotations

import importlib.metadata
import polyframe
from polyframe.backend import Backend

__all__ = ["TensorFlowBackend", "polyframe_backends"]

_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "tensorflow-macos")


class TensorFlowBackend(Backend):
    """Compiles a polyframe model into TF variables and ``tf.function`` steps (NHWC, native)."""

    name = "tensorflow"
    framework = "tensorflow"
    framework_distribution = "tensorflow-cpu"
    executable = "polyframe_tensorflow._executable:TensorFlowExecutable"
    distributed = "polyframe_tensorflow._distributed:TensorFlowDataParallelEngine"
    distributed_processes = "per_node"
    precisions = ("float32", "bf16-mixed")
    adapter_distribution = "polyframe-tensorflow"
    priority = 30

    def framework_version(self) -> str | None:
        """The version of whichever TensorFlow distribution is installed (no import)."""
        for distribution in _DISTRIBUTIONS:
            try:
                return importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    def devices(self) -> list[str]:
        from ._executable import tf

        return [device.name for device in tf.config.list_logical_devices()]


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return [TensorFlowBackend]
