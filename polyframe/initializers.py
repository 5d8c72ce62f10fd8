"""Canonical initial weights, drawn in numpy so every backend starts from identical arrays.

=================  =====================================================================
name               rule
=================  =====================================================================
glorot_uniform     ``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``; for a kernel
                   ``(..., in, out)`` the receptive field ``prod(...)`` multiplies both fans
orthogonal         the ``Q`` of a QR decomposition, for a matrix ``(rows, cols)`` with
                   ``rows = prod(shape[:-1])``: draw ``A ~ N(0, 1)`` of shape
                   ``(max(rows, cols), min(rows, cols))``, take the reduced ``A = QR``,
                   multiply each column of ``Q`` by ``sign(R[j, j])`` (so the result is
                   unique), transpose when ``rows < cols``: the rows (or the columns, if
                   fewer) are orthonormal. Keras' ``Orthogonal`` rule, gain 1
zeros              all zeros
ones               all ones
lstm_bias          zeros except the forget-gate slice ``[H:2H]`` of a ``(4H,)`` bias: ones
embedding_uniform  ``U(-0.05, 0.05)`` (Keras' ``Embedding`` default)
=================  =====================================================================

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


def _orthogonal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    rows, cols = math.prod(shape[:-1]), shape[-1]
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return (q.T if rows < cols else q).reshape(shape)


def _lstm_bias(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    units = shape[0] // 4
    bias = np.zeros(shape)
    bias[units:2 * units] = 1.0
    return bias


def _embedding_uniform(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.uniform(-0.05, 0.05, size=shape)


def _zeros(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.zeros(shape)


def _ones(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.ones(shape)


INITIALIZERS: dict[str, Callable[[np.random.Generator, Shape], np.ndarray]] = {
    "glorot_uniform": _glorot_uniform,
    "orthogonal": _orthogonal,
    "zeros": _zeros,
    "ones": _ones,
    "lstm_bias": _lstm_bias,
    "embedding_uniform": _embedding_uniform,
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
