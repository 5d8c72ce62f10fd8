"""Input checks, validation splits and the batch order, all in numpy.

The order of batches depends only on ``(seed, epoch, len(data), batch_size, shuffle)``, so every
backend sees the same samples in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._checks import check_float, check_int
from .errors import ConfigError, DataError, ShapeError
from .random import generator

__all__ = ["batch_indices", "check_inputs", "check_batch_size", "split_validation", "by_name"]

Shape = tuple[int, ...]


def check_batch_size(batch_size: int) -> int:
    return check_int(batch_size, "batch_size")


def by_name(value: object, names: Sequence[str], what: str) -> tuple[object, ...]:
    """One entry per name from a model with ``names`` inputs (or outputs): ``value`` itself for a
    single name, else a list/tuple in that order or a dict keyed by name."""
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        extra = sorted(set(value) - set(names))
        if missing or extra:
            raise DataError(f"the {what} dict must have the keys {list(names)}; missing "
                            f"{missing or 'none'}, unexpected {extra or 'none'}")
        return tuple(value[n] for n in names)
    if len(names) == 1:
        return (value,)
    if not isinstance(value, (list, tuple)) or len(value) != len(names):
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else type(value).__name__
        raise DataError(f"the model has {len(names)} {what}s {list(names)}; pass a list of "
                        f"{len(names)} arrays in that order or a dict keyed by those names, got {got}")
    return tuple(value)


def check_inputs(x: np.ndarray, input_shape: Shape, what: str = "inputs", *,
                 integer: bool = False) -> np.ndarray:
    """``x`` as a float32 array of shape ``(N, *input_shape)``, or a clear error.

    ``integer``: the values must be whole numbers (token ids) that float32 holds exactly.
    """
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
    if integer and (np.any(original != np.round(original)) or np.any(np.abs(original) > 2**24)):
        raise DataError(f"{what} must hold whole numbers (integer ids) below 2**24 in magnitude; "
                        "convert them with x.astype(int)")
    return array


def split_validation(x: Sequence[np.ndarray], y: Sequence[np.ndarray], fraction: float
                     ) -> tuple[tuple[np.ndarray, ...], ...]:
    """Hold out the last ``fraction`` of the samples (before any shuffling) for validation.

    ``x`` and ``y`` are arrays, or tuples of them (one per model input / output); returns
    ``(x_train, y_train, x_val, y_val)`` in the same form.
    """
    check_float(fraction, "validation_split", low=0.0, high=1.0, low_open=True, high_open=True)
    single = not isinstance(x, tuple)
    xs, ys = ((x,), (y,)) if single else (tuple(x), tuple(y))
    n = len(xs[0])
    cut = n - int(round(n * fraction))
    if cut <= 0 or cut >= n:
        raise ConfigError(
            f"validation_split={fraction} leaves an empty training or validation set "
            f"for {n} samples; choose a fraction that keeps both non-empty"
        )
    parts = (tuple(a[:cut] for a in xs), tuple(a[:cut] for a in ys),
             tuple(a[cut:] for a in xs), tuple(a[cut:] for a in ys))
    return tuple(p[0] for p in parts) if single else parts  # type: ignore[return-value]


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool
                  ) -> Iterator[np.ndarray]:
    """Index arrays of the batches of one epoch; the last batch may be smaller."""
    order = generator(seed, "shuffle", epoch).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
