"""Input checks, validation splits and the batch order, all in numpy.

The order of batches depends only on ``(seed, epoch, len(data), batch_size, shuffle)``, so every
backend sees the same samples in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._checks import check_float, check_int
from .errors import ConfigError, DataError, ShapeError
from .random import generator

__all__ = ["batch_indices", "check_inputs", "check_batch_size", "split_validation"]

Shape = tuple[int, ...]


def check_batch_size(batch_size: int) -> int:
    return check_int(batch_size, "batch_size")


def check_inputs(x: np.ndarray, input_shape: Shape, what: str = "inputs") -> np.ndarray:
    """``x`` as a float32 array of shape ``(N, *input_shape)``, or a clear error."""
    original = np.asarray(x) if x is not None else None
    if original is None or not (np.issubdtype(original.dtype, np.integer)
                                or np.issubdtype(original.dtype, np.floating)):
        kind = "None" if original is None else f"dtype {original.dtype}"
        raise DataError(f"{what} must be a numeric array of shape (N, "
                        f"{', '.join(map(str, input_shape))}), got {kind}")
    if original.ndim == 0:
        raise DataError(f"{what} must be an array of samples, got a scalar {original!r}")
    if np.issubdtype(original.dtype, np.floating) and not np.all(np.isfinite(original)):
        raise DataError(f"{what} contain NaN or infinite values; clean or impute them first")
    with np.errstate(over="ignore"):
        array = original.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise DataError(f"{what} hold values beyond the float32 range (|x| > 3.4e38); rescale them")
    if array.shape[1:] != tuple(input_shape):
        hint = ("reshape the data or build the model with input_shape=" + str(array.shape[1:])
                if what == "inputs" else "give it the same sample shape as the model's input")
        if array.ndim == len(input_shape) and array.shape[1:] == tuple(input_shape[:-1]) \
                and input_shape[-1] == 1:
            hint = "add a channel axis: x[..., None]"
        raise ShapeError(
            f"{what} have shape {array.shape}, the model expects (N, "
            f"{', '.join(map(str, input_shape))}); {hint}"
        )
    if len(array) == 0:
        raise DataError(f"{what} are empty; give at least one sample")
    return array


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out the last ``fraction`` of the samples (before any shuffling) for validation."""
    check_float(fraction, "validation_split", low=0.0, high=1.0, low_open=True, high_open=True)
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
