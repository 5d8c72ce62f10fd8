"""Deliberately faulty backends for testing the conformance suite, registered only by its tests
(``POLYFRAME_PLUGINS=faulty_backends`` with this directory on the path).

Each is a real adapter's backend with one planted semantic defect in its executable (see
:mod:`faulty_executables`). ``DEFECTS`` says, for each, which quick levels must fail.
Importing this module imports no framework.
"""

from __future__ import annotations

import polyframe
from polyframe.backend import Backend
from polyframe_jax import JaxBackend
from polyframe_torch import TorchBackend

__all__ = ["DEFECTS", "polyframe_backends"]

_MODULE = "faulty_executables"


def _faulty(base: type[Backend], name: str, executable: str) -> type[Backend]:
    return type(executable, (base,), {"name": name, "executable": f"{_MODULE}:{executable}",
                                      "adapter_distribution": "conformance-tests", "priority": 900,
                                      "__module__": __name__})


DEFECTS: dict[str, tuple[type[Backend], str, frozenset[str]]] = {
    "faulty-adam-eps-in-sqrt": (JaxBackend, "AdamEpsilonInsideSqrt", frozenset({"optimizers", "trajectory"})),
    "faulty-batchnorm-momentum": (TorchBackend, "BatchNormMomentumInverted", frozenset({"gradients"})),
    "faulty-same-padding": (TorchBackend, "SamePaddingSplitFirst", frozenset({"forward", "gradients"})),
    "faulty-gate-order": (JaxBackend, "LstmGatesReordered", frozenset({"forward", "gradients"})),
    "faulty-flatten": (JaxBackend, "FlattenChannelFirst", frozenset({"forward", "gradients", "trajectory"})),
    "faulty-loss-sum": (TorchBackend, "LossSummed", frozenset({"gradients", "trajectory"})),
    "faulty-eval-mode": (TorchBackend, "DropoutAtInference", frozenset({"forward"})),
    "faulty-shuffle": (TorchBackend, "UnseededBatchShuffle", frozenset({"determinism"})),
    "faulty-checkpoint-moments": (TorchBackend, "CheckpointMomentsSwapped", frozenset({"checkpoint"})),
}
"""Backend name -> (real backend it derives from, executable class, quick levels that must fail)."""

_CLASSES = [_faulty(base, name, executable) for name, (base, executable, _) in DEFECTS.items()]


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return list(_CLASSES)
