"""The errors level's table: bad inputs and the polyframe error type each must raise, the same
on every backend. A row is ``ErrorCase(id, expected error type, action)``; ``action`` gets the
backend name and does the bad thing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import polyframe as pf
from polyframe.errors import PolyframeError
from polyframe.losses import Loss
from polyframe.optimizers import Optimizer

__all__ = ["ErrorCase", "ERROR_CASES"]


@dataclass(frozen=True)
class ErrorCase:
    id: str
    expected: type[PolyframeError]
    action: Callable[[str], object]


@dataclass(frozen=True)
class _UnknownLayer(pf.Layer):
    """A layer no backend implements (a third-party layer without an implementation)."""

    kind: ClassVar[str] = "conformance_unknown"


@dataclass(frozen=True)
class _UnknownLoss(Loss):
    kind: ClassVar[str] = "conformance_unknown_loss"

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(y, dtype=np.float32)


@dataclass(frozen=True)
class _UnknownOptimizer(Optimizer):
    kind: ClassVar[str] = "conformance_unknown_optimizer"


def _model() -> pf.Sequential:
    return pf.Sequential([pf.Dense(4, activation="relu"), pf.Dense(3)], input_shape=(5,))


def _data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _trainer(backend: str, **kwargs: object) -> pf.Trainer:
    return pf.Trainer(_model(), backend=backend, **kwargs)  # type: ignore[arg-type]


def _fit(backend: str, x: np.ndarray, y: np.ndarray, **kwargs: object) -> object:
    return _trainer(backend, **kwargs).fit(x, y, batch_size=4, progress=False)


def _with_bad_weight(backend: str, key: str, value: object) -> None:
    trainer = _trainer(backend)
    weights = trainer.get_weights()
    weights[key] = value
    trainer.set_weights(weights)


def _huge_inputs(backend: str) -> object:
    x, _ = _data()
    return _fit(backend, x * np.float32(1e30), np.zeros((8, 3), np.float32), loss="mse", metrics=())


ERROR_CASES: list[ErrorCase] = [
    ErrorCase("fit-wrong-input-shape", pf.ShapeError,
              lambda b: _fit(b, np.zeros((8, 4), np.float32), _data()[1])),
    ErrorCase("fit-labels-out-of-range", pf.LabelError,
              lambda b: _fit(b, _data()[0], np.full(8, 3))),
    ErrorCase("fit-fractional-labels", pf.LabelError,
              lambda b: _fit(b, _data()[0], np.full(8, 0.5))),
    ErrorCase("fit-nan-inputs", pf.DataError,
              lambda b: _fit(b, np.full((8, 5), np.nan, np.float32), _data()[1])),
    ErrorCase("fit-label-count-mismatch", pf.LabelError,
              lambda b: _fit(b, _data()[0], _data()[1][:5])),
    ErrorCase("predict-wrong-input-shape", pf.ShapeError,
              lambda b: _trainer(b).predict(np.zeros((3, 6), np.float32))),
    ErrorCase("evaluate-labels-out-of-range", pf.LabelError,
              lambda b: _trainer(b).evaluate(_data()[0], np.full(8, -1))),
    ErrorCase("set-weights-wrong-shape", pf.ShapeError,
              lambda b: _with_bad_weight(b, "dense.kernel", np.zeros((4, 5), np.float32))),
    ErrorCase("set-weights-non-finite", pf.ConfigError,
              lambda b: _with_bad_weight(b, "dense.kernel", np.full((5, 4), np.inf, np.float32))),
    ErrorCase("unsupported-layer", pf.ConfigError,
              lambda b: pf.Trainer(pf.Sequential([_UnknownLayer(), pf.Dense(3)], input_shape=(5,)),
                                   backend=b)),
    ErrorCase("unsupported-loss", pf.ConfigError, lambda b: _trainer(b, loss=_UnknownLoss(), metrics=())),
    ErrorCase("unsupported-optimizer", pf.ConfigError, lambda b: _trainer(b, optimizer=_UnknownOptimizer())),
    ErrorCase("non-finite-loss", pf.NonFiniteLossError, _huge_inputs),
]
