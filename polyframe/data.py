"""Input checks, validation splits and the batch order, all in numpy.

The order of batches depends only on ``(seed, epoch, len(data), batch_size, shuffle)``, so every
backend sees the same samples in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .errors import ConfigError, DataError, ShapeError
from .random import generator

__all__ = ["batch_indices", "check_inputs", "check_batch_size", "split_validation"]

Shape = tuple[int, ...]


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def check_inputs(x: np.ndarray, input_shape: Shape) -> np.ndarray:
    """``x`` as a float32 array of shape ``(N, *input_shape)``, or a clear error."""
    try:
        array = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"inputs must be a numeric array, could not convert them: {exc}") from None
    if array.shape[1:] != tuple(input_shape):
        hint = "reshape the data or build the model with input_shape=" + str(array.shape[1:])
        if array.ndim == len(input_shape) and array.shape[1:] == tuple(input_shape[:-1]) \
                and input_shape[-1] == 1:
            hint = "add a channel axis: x[..., None]"
        raise ShapeError(
            f"inputs have shape {array.shape}, the model expects (N, "
            f"{', '.join(map(str, input_shape))}); {hint}"
        )
    if len(array) == 0:
        raise DataError("inputs are empty; give at least one sample")
    if not np.all(np.isfinite(array)):
        raise DataError("inputs contain NaN or infinite values; clean or impute them first")
    return array


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out the last ``fraction`` of the samples (before any shuffling) for validation."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation_split must be in (0, 1), got {fraction!r}")
    cut = len(x) - int(round(len(x) * fraction))
    if cut <= 0 or cut >= len(x):
        raise ConfigError(
            f"validation_split={fraction} leaves an empty training or validation set "
            f"for {len(x)} samples; choose a fraction that keeps both non-empty"
        )
    return x[:cut], y[:cut], x[cut:], y[cut:]


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool
                  ) -> Iterator[np.ndarray]:
    """Index arrays of the batches of one epoch; the last batch may be smaller."""
    order = generator(seed, "shuffle", epoch).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
