"""Loss specifications, each with one exact formula (a mean over the batch).

Every backend implements these formulas, whatever its framework's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._checks import SpecMeta, check_bool, check_float
from .errors import ConfigError, LabelError

__all__ = [
    "Loss",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "get_loss",
]

Shape = tuple[int, ...]

PROBABILITY_FLOOR = 1e-7
"""With ``from_logits=False`` probabilities are clipped to ``[1e-7, 1 - 1e-7]`` before the log."""

SOFT_LABEL_TOLERANCE = 1e-3
"""How far from 1 a one-hot / probability label row may sum."""


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
class Loss(metaclass=SpecMeta):
    """Base of loss specs."""

    kind: ClassVar[str] = "loss"

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        """Validate targets for a model with ``output_shape``; returns them in canonical dtype."""
        raise NotImplementedError


def _class_indices(y: np.ndarray, classes: int) -> np.ndarray:
    """``y`` (1-D, or a ``(batch, 1)`` column) checked as class indices in ``[0, classes)``."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise LabelError(
            f"labels must be a 1-D array of class indices, got shape {y.shape}; "
            "for one-hot labels use y.argmax(axis=1) or CategoricalCrossentropy"
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
            f"labels must be in [0, {classes}) for a model output of {classes} classes; found "
            f"{y[bad[0]].item()!r} at index {bad[0]} ({bad.size} out of range); fix the labels or "
            f"give the last Dense layer as many units as there are classes"
        )
    return y.astype(np.int64)


def _probability_rows(y: np.ndarray, classes: int) -> np.ndarray:
    """``(batch, classes)`` targets checked as probability rows (one-hot or soft labels)."""
    if not np.all(np.isfinite(y)) or np.any((y < 0) | (y > 1)):
        raise LabelError("one-hot / probability labels must lie in [0, 1]; found values outside "
                         "it (or NaN); pass class indices or one-hot rows")
    sums = y.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SOFT_LABEL_TOLERANCE)
    if bad.size:
        raise LabelError(
            f"each one-hot / probability label row must sum to 1; row {bad[0]} sums to "
            f"{sums[bad[0]]:g} ({bad.size} rows off); normalise the rows or pass class indices"
        )
    return y.astype(np.float32)


def _cross_entropy_classes(output_shape: Shape, what: str) -> int:
    if len(output_shape) != 1 or output_shape[0] < 2:
        raise LabelError(
            f"{what} needs a model output of shape (batch, classes) with at least 2 classes, "
            f"got (batch, {', '.join(map(str, output_shape))}); end the model with Dense(classes), "
            "or use BinaryCrossentropy for one output"
        )
    return output_shape[0]


@dataclass(frozen=True)
class CategoricalCrossentropy(Loss):
    """Cross-entropy against class indices or one-hot / probability rows, mean over the batch.

    Targets ``t_i`` are rows over the ``K`` classes: a class index ``y_i`` means the one-hot row.
    With ``label_smoothing = s`` in ``[0, 1)`` they become ``t' = (1 - s) t + s / K``. Then
    ``loss = mean_i(-sum_k t'_ik log q_ik)`` where ``log q = log_softmax(z)`` for
    ``from_logits=True`` (default), else ``log q = log(clip(p, 1e-7, 1 - 1e-7))`` of the model's
    probability output (no renormalisation of ``p``).

    Integer labels are turned into one-hot ``float32`` rows once, when the data is checked; use
    :class:`SparseCategoricalCrossentropy` to keep them as indices.
    """

    kind: ClassVar[str] = "categorical_crossentropy"
    sparse: ClassVar[bool] = False
    from_logits: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "from_logits", check_bool(self.from_logits, f"{name}: from_logits"))
        object.__setattr__(self, "label_smoothing", check_float(
            self.label_smoothing, f"{name}: label_smoothing", low=0.0, high=1.0, high_open=True))

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        classes = _cross_entropy_classes(output_shape, "categorical cross-entropy")
        y = _numeric(y, "labels")
        if y.ndim == 2 and y.shape[1] == classes:
            return _probability_rows(y, classes)
        if y.ndim == 2 and y.shape[1] != 1:
            raise LabelError(
                f"one-hot labels must have one column per model output ({classes}), got shape "
                f"{y.shape}; give the last Dense layer {y.shape[1]} units or fix the labels"
            )
        return np.eye(classes, dtype=np.float32)[_class_indices(y, classes)]


@dataclass(frozen=True)
class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """:class:`CategoricalCrossentropy` for integer class labels only, kept as indices.

    The same formula (``label_smoothing`` included); with ``s = 0`` and logits it is
    ``mean_i(logsumexp(z_i) - z_i[y_i])``. Labels are a 1-D array (or a ``(batch, 1)`` column) of
    class indices in ``[0, classes)``, sent to the backends as ``int64`` without a one-hot copy.
    """

    kind: ClassVar[str] = "sparse_categorical_crossentropy"
    sparse: ClassVar[bool] = True

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        classes = _cross_entropy_classes(output_shape, "sparse categorical cross-entropy")
        return _class_indices(_numeric(y, "labels"), classes)


def _same_shape_targets(y: object, output_shape: Shape, what: str) -> np.ndarray:
    """Float targets of the model output's shape; ``(batch,)`` is accepted for one output."""
    y = _numeric(y, "targets")
    if y.ndim == 1 and tuple(output_shape) == (1,):
        y = y[:, None]
    if y.shape[1:] != tuple(output_shape):
        raise LabelError(
            f"{what} needs targets of shape (batch, {', '.join(map(str, output_shape))}) like the "
            f"model output, got {y.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise LabelError("targets contain NaN or infinite values; clean or drop those samples")
    return y.astype(np.float32)


@dataclass(frozen=True)
class BinaryCrossentropy(Loss):
    """Element-wise binary cross-entropy, mean over every element of the batch.

    ``from_logits=True`` (default): ``max(z, 0) - z*y + log(1 + exp(-|z|))`` (the stable form of
    ``-y log sigmoid(z) - (1-y) log(1 - sigmoid(z))``). ``from_logits=False``:
    ``-(y log(q) + (1-y) log(1-q))`` with ``q = clip(p, 1e-7, 1 - 1e-7)``. Targets lie in
    ``[0, 1]`` and have the output's shape.
    """

    kind: ClassVar[str] = "binary_crossentropy"
    from_logits: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_logits", check_bool(self.from_logits, "BinaryCrossentropy: from_logits"))

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        y = _same_shape_targets(y, output_shape, "binary cross-entropy")
        if np.any((y < 0) | (y > 1)):
            raise LabelError("binary cross-entropy targets must lie in [0, 1] (0/1 labels or "
                             f"probabilities); found values in [{y.min():g}, {y.max():g}]")
        return y


@dataclass(frozen=True)
class MeanSquaredError(Loss):
    """``mean((prediction - target)^2)`` over every element of the batch."""

    kind: ClassVar[str] = "mean_squared_error"

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        return _same_shape_targets(y, output_shape, "mean squared error")


@dataclass(frozen=True)
class MeanAbsoluteError(Loss):
    """``mean(|prediction - target|)`` over every element (gradient ``sign(x)``, 0 at 0)."""

    kind: ClassVar[str] = "mean_absolute_error"

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        return _same_shape_targets(y, output_shape, "mean absolute error")


@dataclass(frozen=True)
class Huber(Loss):
    """Huber loss of ``x = prediction - target``, mean over every element:
    ``0.5 x^2`` where ``|x| <= delta``, else ``delta (|x| - 0.5 delta)``."""

    kind: ClassVar[str] = "huber"
    delta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_float(self.delta, "Huber: delta", low=0.0, low_open=True))

    def check_targets(self, y: np.ndarray, output_shape: Shape) -> np.ndarray:
        return _same_shape_targets(y, output_shape, "Huber loss")


_BY_NAME: dict[str, type[Loss]] = {
    cls.kind: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                              BinaryCrossentropy, MeanSquaredError, MeanAbsoluteError, Huber)
}
_BY_NAME["mse"] = MeanSquaredError
_BY_NAME["mae"] = MeanAbsoluteError


def get_loss(loss: Loss | str) -> Loss:
    """A loss spec from a spec or its name (``"categorical_crossentropy"``, ``"mse"``, ...)
    with default settings."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _BY_NAME:
        return _BY_NAME[loss]()
    raise ConfigError(f"unknown loss {loss!r}; use one of {', '.join(sorted(_BY_NAME))} or a Loss")
