"""Optimizer specifications, each with one exact update rule.

Notation: parameter ``p``, gradient ``g``, step ``t`` (starting at 1), learning rate ``lr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import ConfigError

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


@dataclass(frozen=True)
class Optimizer:
    """Base of optimizer specs."""

    kind: ClassVar[str] = "optimizer"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if not float(self.learning_rate) > 0:
            raise ConfigError(
                f"{type(self).__name__}: learning_rate must be > 0, got {self.learning_rate!r}"
            )


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
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ConfigError(f"SGD: momentum must be in [0, 1), got {self.momentum!r}")


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
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ConfigError(f"Adam: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if not float(self.epsilon) > 0:
            raise ConfigError(f"Adam: epsilon must be > 0, got {self.epsilon!r}")


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
