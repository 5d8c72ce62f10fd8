"""Level 7, determinism: the same seed twice, with the deterministic switch on, gives bitwise
identical runs: the batches the executable receives (which must also be polyframe.data's
documented order), every step's loss and outputs, and the final weights. The model has dropout,
so the backend's own RNG is covered too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import polyframe as pf
from polyframe.backend import StepResult

from polyframe_conformance import Checker
from polyframe_conformance.harness import canonical_order, digits

pytestmark = pytest.mark.pf_level("determinism")

SEED, SAMPLES, BATCH, EPOCHS = 7, 320, 32, 2


def _run(backend: str) -> tuple[list[tuple[Any, ...]], dict[str, np.ndarray], np.ndarray]:
    data = digits()
    model = pf.Sequential([pf.Conv2D(8, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                           pf.Dropout(0.3), pf.Dense(10)], input_shape=data.input_shape)
    trainer = pf.Trainer(model, backend=backend, seed=SEED, deterministic=True, optimizer=pf.Adam(1e-3))
    seen: list[tuple[Any, ...]] = []
    step = trainer.executable.train_step

    def observed_step(x: np.ndarray, y: np.ndarray) -> StepResult:
        result = step(x, y)
        seen.append((np.array(x), np.array(y), result.loss, np.array(result.outputs)))
        return result

    trainer.executable.train_step = observed_step  # type: ignore[method-assign]
    trainer.fit(data.x_train[:SAMPLES], data.y_train[:SAMPLES], epochs=EPOCHS, batch_size=BATCH,
                progress=False)
    return seen, trainer.get_weights(), trainer.executable.prepare_inputs(data.x_train[:SAMPLES])


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def test_same_seed_twice_is_bitwise_identical(pf_backend: str, pf_check: Checker) -> None:
    first, weights_1, prepared = _run(pf_backend)
    second, weights_2, _ = _run(pf_backend)
    labels = digits().y_train[:SAMPLES]
    order = list(canonical_order(SAMPLES, BATCH, SEED, EPOCHS))
    assert len(first) == len(order)
    pf_check.equal("inputs of each step vs polyframe.data order",
                   _joined([s[0] for s in first]), _joined([prepared[i] for i in order]))
    pf_check.equal("labels of each step vs polyframe.data order",
                   _joined([s[1] for s in first]), _joined([labels[i] for i in order]))
    pf_check.equal("inputs of each step, run 1 vs run 2",
                   _joined([s[0] for s in first]), _joined([s[0] for s in second]))
    pf_check.equal("per-step losses, run 1 vs run 2",
                   np.array([s[2] for s in first]), np.array([s[2] for s in second]))
    pf_check.equal("per-step outputs, run 1 vs run 2",
                   _joined([s[3] for s in first]), _joined([s[3] for s in second]))
    pf_check.equal("final weights, run 1 vs run 2",
                   _joined(list(weights_1.values())), _joined(list(weights_2.values())))
