"""Metrics, computed once in the core from the model outputs every backend returns."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .errors import ConfigError

__all__ = ["Metric", "Accuracy", "Perplexity", "get_metric"]


class Metric(Protocol):
    """A running metric over an epoch: ``reset``, then ``update`` per batch, then ``result``."""

    name: str

    def reset(self) -> None: ...

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None: ...

    def result(self) -> float: ...


class Accuracy:
    """Fraction of samples whose arg-max output equals the label (or the arg-max of a one-hot
    or probability target of the output's shape)."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._count = 0

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        if y_true.ndim == y_pred.ndim:
            y_true = np.argmax(y_true, axis=-1)
        self._correct += int(np.count_nonzero(np.argmax(y_pred, axis=-1) == y_true))
        self._count += len(y_true)

    def result(self) -> float:
        return self._correct / self._count if self._count else float("nan")


class Perplexity:
    """``exp`` of the mean cross-entropy (in nats) between the labels and ``softmax(logits)``.

    Outputs are logits over the last axis; labels are integer ids or one-hot / probability
    targets of the output's shape. The cross-entropy is summed per sample in float64 with a
    stable log-softmax, so the result equals ``exp`` of polyframe's sparse cross-entropy loss
    (no label smoothing) over the same samples.
    """

    name = "perplexity"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._nats = 0.0
        self._count = 0

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        logits = np.asarray(y_pred, dtype=np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        if y_true.ndim == logits.ndim:
            self._nats -= float(np.sum(np.asarray(y_true, dtype=np.float64) * log_probs))
        else:
            labels = np.asarray(y_true, dtype=np.int64)[..., None]
            self._nats -= float(np.take_along_axis(log_probs, labels, axis=-1).sum())
        self._count += len(y_true)

    def result(self) -> float:
        return float(np.exp(self._nats / self._count)) if self._count else float("nan")


_BY_NAME = {"accuracy": Accuracy, "acc": Accuracy, "perplexity": Perplexity}


def get_metric(metric: Metric | str) -> Metric:
    """A fresh metric from a name (``"accuracy"``) or a metric object."""
    if isinstance(metric, str):
        if metric not in _BY_NAME:
            raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(_BY_NAME)}")
        return _BY_NAME[metric]()
    if all(hasattr(metric, a) for a in ("name", "reset", "update", "result")):
        return metric
    raise ConfigError(f"metric must be a name or have name/reset/update/result, got {metric!r}")
