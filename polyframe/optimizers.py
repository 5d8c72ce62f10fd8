"""Optimizer specifications, each with one exact update rule.

Notation: parameter ``p``, gradient ``g``, step ``t`` (starting at 1), learning rate ``lr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._checks import check_float
from .errors import ConfigError

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


@dataclass(frozen=True)
class Optimizer:
    """Base of optimizer specs."""

    kind: ClassVar[str] = "optimizer"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        self._check("learning_rate", low=0.0, low_open=True)

    def _check(self, name: str, **bounds: object) -> None:
        value = check_float(getattr(self, name), f"{type(self).__name__}: {name}", **bounds)
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with heavy-ball momentum (PyTorch's form, no dampening).

    ``v = momentum * v + g``; ``p = p - lr * v`` (``v`` starts at 0; with momentum 0, ``p -= lr*g``).
    """

    kind: ClassVar[str] = "sgd"
    learning_rate: float = 1e-2
    momentum: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("momentum", low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam with epsilon added to the square root of the bias-corrected second moment.

    ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g^2``;
    ``p = p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    """

    kind: ClassVar[str] = "adam"
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("beta_1", low=0.0, high=1.0, high_open=True)
        self._check("beta_2", low=0.0, high=1.0, high_open=True)
        self._check("epsilon", low=0.0, low_open=True)


_BY_NAME: dict[str, type[Optimizer]] = {cls.kind: cls for cls in (SGD, Adam)}


def get_optimizer(optimizer: Optimizer | str) -> Optimizer:
    """An optimizer spec from a spec or its name (``"sgd"``, ``"adam"``) with default settings."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer in _BY_NAME:
        return _BY_NAME[optimizer]()
    raise ConfigError(
        f"unknown optimizer {optimizer!r}; use one of {', '.join(sorted(_BY_NAME))} or an Optimizer"
    )
