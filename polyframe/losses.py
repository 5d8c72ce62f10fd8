"""Loss specifications, each with one exact formula (mean over the batch).

Every backend implements these formulas, whatever its framework's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._checks import check_bool
from .errors import ConfigError, LabelError

__all__ = ["Loss", "SparseCategoricalCrossentropy", "MeanSquaredError", "get_loss"]

Shape = tuple[int, ...]

PROBABILITY_FLOOR = 1e-7
"""With ``from_logits=False`` probabilities are clipped to ``[1e-7, 1 - 1e-7]`` before the log."""


def _numeric(y: object, what: str) -> np.ndarray:
    if y is None:
        raise LabelError(f"{what} are missing (got None); pass an array with one entry per sample")
    array = np.asarray(y)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_):
        raise LabelError(f"{what} must be a numeric array, got dtype {array.dtype}; convert them "
                         "to integers (class indices) or floats first")
    return array


@dataclass(frozen=True)
class Loss:
    """Base of loss specs."""

    kind: ClassVar[str] = "loss"

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        """Validate targets for a model with ``output_shape``; returns them in canonical dtype."""
        raise NotImplementedError


@dataclass(frozen=True)
class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels, averaged over the batch.

    ``from_logits=True`` (default): ``mean_i(logsumexp(z_i) - z_i[y_i])``.
    ``from_logits=False``: ``mean_i(-log(clip(p_i[y_i], 1e-7, 1 - 1e-7)))`` where ``p`` is the
    model's probability output (e.g. after a softmax).
    """

    kind: ClassVar[str] = "sparse_categorical_crossentropy"
    from_logits: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_logits", check_bool(self.from_logits, "from_logits"))

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        if len(output_shape) != 1:
            raise LabelError(
                f"sparse categorical cross-entropy needs a model output of shape (batch, classes), "
                f"got (batch, {', '.join(map(str, output_shape))}); end the model with Dense(classes)"
            )
        classes = output_shape[0]
        y = _numeric(y, "labels")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise LabelError(
                f"labels must be a 1-D array of class indices, got shape {y.shape}; "
                "for one-hot labels use y.argmax(axis=1)"
            )
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise LabelError(
                    f"labels must be integer class indices, got dtype {y.dtype} with "
                    "non-integer values; convert them with y.astype(int)"
                )
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if bad.size:
            raise LabelError(
                f"labels must be in [0, {classes}) for a model with {classes} outputs; found "
                f"{y[bad[0]].item()!r} at index {bad[0]} ({bad.size} out of range); fix the labels or "
                f"give the last Dense layer as many units as there are classes"
            )
        return y.astype(np.int64)


@dataclass(frozen=True)
class MeanSquaredError(Loss):
    """``mean((prediction - target)^2)`` over every element of the batch."""

    kind: ClassVar[str] = "mean_squared_error"

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        y = _numeric(y, "targets")
        if y.shape[1:] != tuple(output_shape):
            raise LabelError(
                f"mean squared error needs targets of shape (batch, "
                f"{', '.join(map(str, output_shape))}) like the model output, got {y.shape}"
            )
        if not np.all(np.isfinite(y)):
            raise LabelError("targets contain NaN or infinite values; clean or drop those samples")
        return y.astype(np.float32)


_BY_NAME: dict[str, type[Loss]] = {
    cls.kind: cls for cls in (SparseCategoricalCrossentropy, MeanSquaredError)
}
_BY_NAME["mse"] = MeanSquaredError


def get_loss(loss: Loss | str) -> Loss:
    """A loss spec from a spec or its name (``"sparse_categorical_crossentropy"``, ``"mse"``)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]()
    raise ConfigError(f"unknown loss {loss!r}; use one of {', '.join(sorted(_BY_NAME))} or a Loss")
