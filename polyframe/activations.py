"""Activation names and their canonical formulas.

=========  ============================================
name       formula
=========  ============================================
linear     ``x``
relu       ``max(x, 0)``
tanh       ``tanh(x)``
sigmoid    ``1 / (1 + exp(-x))``
softmax    ``exp(x - max x) / sum exp(x - max x)`` over the last axis
=========  ============================================
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["ACTIVATIONS", "check_activation"]

ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "tanh", "sigmoid", "softmax")


def check_activation(name: str | None, where: str) -> str:
    """Return the canonical activation name for ``name`` (``None`` means ``"linear"``)."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(
            f"{where}: unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}"
        )
    return name
