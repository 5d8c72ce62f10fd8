"""Learning-rate schedules, each one formula ``lr(step)``.

``step`` counts optimizer updates from 0: the first update uses ``lr(0)``, the ``t``-th (``t`` from
1, as in the optimizer formulas) uses ``lr(t - 1)``. Each schedule writes its formula once, in
:meth:`Schedule.formula`, against a tiny set of array operations (:class:`ArrayOps`); the float64
reference evaluates it with numpy (``schedule(step)``) and each adapter with its framework's ops
inside the compiled train step, from a step counter held on the device, so nothing is retraced or
recompiled as the learning rate changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from ._checks import SpecMeta, check_float, check_int
from .errors import ConfigError

__all__ = [
    "ArrayOps",
    "NUMPY_OPS",
    "Schedule",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "CosineDecay",
]


class ArrayOps(Protocol):
    """The operations a schedule's formula may use besides ``+ - * / **`` and comparisons."""

    def floor(self, x: Any) -> Any: ...

    def cos(self, x: Any) -> Any: ...

    def minimum(self, x: Any, y: Any) -> Any: ...

    def where(self, condition: Any, x: Any, y: Any) -> Any: ...


class _NumpyOps:
    floor = staticmethod(np.floor)
    cos = staticmethod(np.cos)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)


NUMPY_OPS: ArrayOps = _NumpyOps()
"""The float64 numpy operations the reference evaluates schedules with."""


@dataclass(frozen=True)
class Schedule(metaclass=SpecMeta):
    """Base of learning-rate schedules."""

    kind: ClassVar[str] = "schedule"

    def formula(self, step: Any, ops: ArrayOps) -> Any:
        """The learning rate at ``step`` (a float array or tensor of update counts from 0)."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        """The learning rate of update ``step`` (from 0), in float64."""
        step = check_int(step, f"{type(self).__name__} step", minimum=0)
        return float(self.formula(np.float64(step), NUMPY_OPS))

    def _positive(self, name: str, *, allow_zero: bool = False) -> None:
        value = check_float(getattr(self, name), f"{type(self).__name__}: {name}", low=0.0,
                            low_open=not allow_zero)
        object.__setattr__(self, name, value)

    def _fraction(self, name: str, *, low_open: bool) -> None:
        value = check_float(getattr(self, name), f"{type(self).__name__}: {name}", low=0.0,
                            high=1.0, low_open=low_open)
        object.__setattr__(self, name, value)

    def _count(self, name: str, minimum: int) -> None:
        object.__setattr__(self, name, check_int(getattr(self, name),
                                                 f"{type(self).__name__}: {name}", minimum=minimum))


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(step) = value``. A float learning rate means this schedule."""

    kind: ClassVar[str] = "constant"
    value: float

    def __post_init__(self) -> None:
        self._positive("value")

    def formula(self, step: Any, ops: ArrayOps) -> Any:
        return step * 0.0 + self.value


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr(step) = initial * gamma ** floor(step / step_size)`` (PyTorch's ``StepLR``)."""

    kind: ClassVar[str] = "step_decay"
    initial: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        self._positive("initial")
        self._count("step_size", 1)
        self._fraction("gamma", low_open=True)

    def formula(self, step: Any, ops: ArrayOps) -> Any:
        return self.initial * self.gamma ** ops.floor(step / self.step_size)


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``lr(step) = initial * decay_rate ** (step / decay_steps)``; with ``staircase`` the
    exponent is ``floor(step / decay_steps)`` (Keras' ``ExponentialDecay``)."""

    kind: ClassVar[str] = "exponential_decay"
    initial: float
    decay_rate: float
    decay_steps: int
    staircase: bool = False

    def __post_init__(self) -> None:
        self._positive("initial")
        self._fraction("decay_rate", low_open=True)
        self._count("decay_steps", 1)
        if not isinstance(self.staircase, (bool, np.bool_)):
            raise ConfigError(f"ExponentialDecay: staircase must be True or False, got {self.staircase!r}")
        object.__setattr__(self, "staircase", bool(self.staircase))

    def formula(self, step: Any, ops: ArrayOps) -> Any:
        exponent = step / self.decay_steps
        return self.initial * self.decay_rate ** (ops.floor(exponent) if self.staircase else exponent)


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """Linear warm-up from ``initial`` to ``peak`` over ``warmup_steps`` updates, then a half
    cosine from ``peak`` down to ``final = alpha * peak`` at ``decay_steps``, then ``final``.

    With ``W = warmup_steps``, ``D = decay_steps`` (counted from step 0, warm-up included):

    - ``step < W``: ``lr = initial + (peak - initial) * step / W``
    - ``W <= step``: ``lr = final + (peak - final) * (1 + cos(pi * p)) / 2`` with
      ``p = min(step - W, D - W) / (D - W)``

    (optax's ``warmup_cosine_decay_schedule`` with ``end_value = alpha * peak``; Keras'
    ``CosineDecay`` counts its ``decay_steps`` after the warm-up instead.)
    """

    kind: ClassVar[str] = "cosine_decay"
    peak: float
    decay_steps: int
    warmup_steps: int = 0
    initial: float = 0.0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        self._positive("peak")
        self._count("decay_steps", 1)
        self._count("warmup_steps", 0)
        self._positive("initial", allow_zero=True)
        self._fraction("alpha", low_open=False)
        if self.warmup_steps >= self.decay_steps:
            raise ConfigError(
                f"CosineDecay: warmup_steps ({self.warmup_steps}) must be smaller than decay_steps "
                f"({self.decay_steps}), which counts the warm-up too; raise decay_steps"
            )

    def formula(self, step: Any, ops: ArrayOps) -> Any:
        warmup, span = self.warmup_steps, self.decay_steps - self.warmup_steps
        final = self.alpha * self.peak
        progress = ops.minimum(step - warmup, float(span)) / span
        decayed = final + (self.peak - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if not warmup:
            return decayed
        warming = self.initial + (self.peak - self.initial) * step / warmup
        return ops.where(step < warmup, warming, decayed)
