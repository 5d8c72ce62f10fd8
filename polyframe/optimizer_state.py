"""The canonical names and shapes of optimizer state, shared by every backend and checkpoint.

An optimizer's state is a flat dict of arrays: ``"step"`` (int64 scalar, the number of updates
applied: the position of the learning-rate schedule and of Adam's bias correction) plus, for each
trainable parameter key ``k``, one float32 array per slot named ``"k/<slot>"`` in the parameter's
canonical layout (dense kernels ``(in, out)``, conv kernels ``(kH, kW, in, out)``). Slots, with
the symbols of :mod:`polyframe.optimizers`:

=========  ==============================================================
SGD        ``momentum`` (``v``; only with ``momentum > 0``)
Adam(W)    ``m``, ``v``
RMSprop    ``square`` (``s``), ``average`` (``a``; only ``centered``),
           ``momentum`` (``b``; only with ``momentum > 0``)
=========  ==============================================================

Every slot starts at zero, so a fresh optimizer's state is ``step = 0`` and zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import CheckpointError, ConfigError
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["STEP", "SCHEDULED", "state_slots", "state_shapes", "zero_state", "check_optimizer_state"]

STEP = "step"
SCHEDULED = ("the optimizer's learning rate is a schedule, which sets the rate of every update; "
             "give the optimizer a constant learning_rate to change it at run time")


def state_slots(spec: Optimizer) -> tuple[str, ...]:
    """The per-parameter slot names of ``spec``, in a fixed order."""
    if isinstance(spec, SGD):
        return ("momentum",) if spec.momentum else ()
    if isinstance(spec, (Adam, AdamW)):
        return ("m", "v")
    if isinstance(spec, RMSprop):
        return ("square",) + (("average",) if spec.centered else ()) + \
            (("momentum",) if spec.momentum else ())
    raise ConfigError(f"polyframe has no canonical state layout for optimizer "
                      f"{type(spec).__name__} ({spec.kind!r})")


def state_shapes(spec: Optimizer, params: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the canonical state for trainable ``params`` (key -> shape)."""
    shapes: dict[str, tuple[int, ...]] = {STEP: ()}
    for key, shape in params.items():
        for slot in state_slots(spec):
            shapes[f"{key}/{slot}"] = tuple(shape)
    return shapes


def zero_state(spec: Optimizer, params: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A fresh optimizer's canonical state."""
    return {name: (np.zeros((), np.int64) if name == STEP else np.zeros(shape, np.float32))
            for name, shape in state_shapes(spec, params).items()}


_NON_NEGATIVE = frozenset({"v", "square"})
"""Slots that are running means of squared gradients."""


def check_optimizer_state(spec: Optimizer, params: Mapping[str, tuple[int, ...]],
                          state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` as int64 step + float32 slot copies, after checking its names and shapes
    against ``spec`` and ``params``; raises :class:`CheckpointError` naming the mismatch."""
    expected = state_shapes(spec, params)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"the optimizer state does not fit a {type(spec).__name__} over this model's "
            f"parameters: missing {missing[:4] or 'none'}, unexpected {extra[:4] or 'none'}; "
            "it was saved with a different optimizer or model (load the weights only)")
    checked: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        array = np.asarray(state[name])
        if array.shape != shape:
            raise CheckpointError(f"optimizer state {name!r} has shape {array.shape}, the model "
                                  f"needs {shape}")
        if name == STEP:
            if array.dtype.kind not in "iu" or int(array) < 0:
                raise CheckpointError(f"optimizer state 'step' must be a non-negative integer, "
                                      f"got {array!r}")
            checked[name] = np.array(int(array), dtype=np.int64)
        else:
            values = np.array(array, dtype=np.float32, copy=True)
            if not np.isfinite(values).all():
                raise CheckpointError(f"optimizer state {name!r} holds NaN or infinite values; the "
                                      "checkpoint is damaged: use an earlier one, or load the weights only")
            if name.rpartition("/")[2] in _NON_NEGATIVE and (values < 0).any():
                raise CheckpointError(f"optimizer state {name!r} (a running mean of squared gradients) "
                                      "holds negative values; the checkpoint is damaged: use an earlier one")
            checked[name] = values
    return checked
