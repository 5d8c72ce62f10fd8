"""Optimizer specifications, each with one exact update rule.

Notation: parameter ``p``, gradient ``g``, update ``t`` (from 1), learning rate ``lr = lr(t - 1)``
(a float, or a :class:`~polyframe.schedules.Schedule` evaluated at the update count from 0).

Every optimizer first transforms the gradients of all trainable parameters together:

1. ``clip_value`` (if set): ``g = clip(g, -clip_value, clip_value)`` element-wise;
2. ``clip_norm`` (if set): with ``n = sqrt(sum over every trainable array of sum(g^2))`` (after
   step 1), ``g = g * clip_norm / max(n, clip_norm)``: unchanged when ``n <= clip_norm``, else
   scaled to norm ``clip_norm``. No epsilon (PyTorch's ``clip_grad_norm_`` divides by
   ``n + 1e-6``; TensorFlow's ``clip_by_global_norm`` and optax's ``clip_by_global_norm`` match
   this form).

then applies its rule below to the clipped ``g``.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from ._checks import SpecMeta, check_bool, check_float
from .errors import ConfigError
from .schedules import Constant, Schedule

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get_optimizer"]


@dataclass(frozen=True)
class Optimizer(metaclass=SpecMeta):
    """Base of optimizer specs: a learning rate (float or schedule) and gradient clipping."""

    kind: ClassVar[str] = "optimizer"
    learning_rate: float | Schedule = 1e-3
    _: KW_ONLY
    clip_norm: float | None = None
    clip_value: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.learning_rate, Schedule):
            self._check("learning_rate", low=0.0, low_open=True)
        for name in ("clip_norm", "clip_value"):
            if getattr(self, name) is not None:
                self._check(name, low=0.0, low_open=True)

    def _check(self, name: str, **bounds: object) -> None:
        value = check_float(getattr(self, name), f"{type(self).__name__}: {name}", **bounds)
        object.__setattr__(self, name, value)

    @property
    def schedule(self) -> Schedule:
        """The learning rate as a schedule (:class:`~polyframe.schedules.Constant` for a float)."""
        lr = self.learning_rate
        return lr if isinstance(lr, Schedule) else Constant(lr)

    @property
    def constant_learning_rate(self) -> float | None:
        """The learning rate when it is a float, else ``None``."""
        return None if isinstance(self.learning_rate, Schedule) else self.learning_rate


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with momentum in PyTorch's form (no dampening).

    ``v = momentum * v + g`` (``v`` starts at 0); ``p -= lr * v``, or with ``nesterov``
    ``p -= lr * (g + momentum * v)`` (using the new ``v``). With momentum 0: ``p -= lr * g``.
    """

    kind: ClassVar[str] = "sgd"
    learning_rate: float | Schedule = 1e-2
    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("momentum", low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "nesterov", check_bool(self.nesterov, "SGD: nesterov"))
        if self.nesterov and not self.momentum:
            raise ConfigError("SGD: nesterov=True needs a momentum > 0; set momentum (e.g. 0.9) "
                              "or drop nesterov")


@dataclass(frozen=True)
class _Moments(Optimizer):
    """The fields and checks Adam and AdamW share (neither is a subclass of the other)."""

    learning_rate: float | Schedule = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("beta_1", low=0.0, high=1.0, high_open=True)
        self._check("beta_2", low=0.0, high=1.0, high_open=True)
        self._check("epsilon", low=0.0, low_open=True)


@dataclass(frozen=True)
class Adam(_Moments):
    """Adam with epsilon added to the square root of the bias-corrected second moment.

    ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g^2``;
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    """

    kind: ClassVar[str] = "adam"


@dataclass(frozen=True)
class AdamW(_Moments):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    ``p -= lr * weight_decay * p`` (with the parameter before this update), then the Adam
    update of :class:`Adam`. The decay is scaled by the scheduled ``lr`` and applies to every
    trainable parameter, biases included.
    """

    kind: ClassVar[str] = "adamw"
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("weight_decay", low=0.0)


@dataclass(frozen=True)
class RMSprop(Optimizer):
    """RMSprop with epsilon outside the square root (PyTorch's form).

    ``s = rho*s + (1-rho)*g^2``; with ``centered``, ``a = rho*a + (1-rho)*g`` and
    ``d = sqrt(s - a^2) + eps``, else ``d = sqrt(s) + eps``. Then ``p -= lr * g / d``, or with
    momentum ``b = momentum*b + g/d``, ``p -= lr * b``. ``s``, ``a`` and ``b`` start at 0.
    """

    kind: ClassVar[str] = "rmsprop"
    learning_rate: float | Schedule = 1e-3
    rho: float = 0.9
    epsilon: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("rho", low=0.0, high=1.0, high_open=True)
        self._check("epsilon", low=0.0, low_open=True)
        self._check("momentum", low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "centered", check_bool(self.centered, "RMSprop: centered"))


_BY_NAME: dict[str, type[Optimizer]] = {cls.kind: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def get_optimizer(optimizer: Optimizer | str) -> Optimizer:
    """An optimizer spec from a spec or its name (``"sgd"``, ``"adam"``, ``"adamw"``,
    ``"rmsprop"``) with default settings."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer in _BY_NAME:
        return _BY_NAME[optimizer]()
    raise ConfigError(
        f"unknown optimizer {optimizer!r}; use one of {', '.join(sorted(_BY_NAME))} or an Optimizer"
    )
