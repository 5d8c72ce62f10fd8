"""Canonical initial weights, drawn in numpy so every backend starts from identical arrays.

==============  =====================================================================
name            rule
==============  =====================================================================
glorot_uniform  ``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``; for a kernel
                ``(..., in, out)`` the receptive field ``prod(...)`` multiplies both fans
zeros           all zeros
ones            all ones
==============  =====================================================================

Values are drawn in float64 from one generator, in the model's parameter order, then cast to
float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import ConfigError

__all__ = ["INITIALIZERS", "initialize"]

Shape = tuple[int, ...]


def _fans(shape: Shape) -> tuple[int, int]:
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _glorot_uniform(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _zeros(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.zeros(shape)


def _ones(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.ones(shape)


INITIALIZERS: dict[str, Callable[[np.random.Generator, Shape], np.ndarray]] = {
    "glorot_uniform": _glorot_uniform,
    "zeros": _zeros,
    "ones": _ones,
}


def initialize(name: str, rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Draw one float32 array with initializer ``name``."""
    try:
        init = INITIALIZERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown initializer {name!r}; use one of {', '.join(INITIALIZERS)}"
        ) from None
    return init(rng, shape).astype(np.float32)
