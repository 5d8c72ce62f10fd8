"""Level 4, optimizers and schedules: one update and a 50-update sequence of every optimizer case
vs the float64 reference optimizer.

The model is a small MLP trained on single-sample batches with cross-entropy, so the batch
reduction of the loss (mean or sum) cannot matter: this level tests the update rule alone.
One update: weights rtol 1e-5, atol 1e-6. After 50 updates: rtol 1e-4, atol 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

import polyframe as pf
from polyframe.reference import ReferenceModel, ReferenceOptimizer

from polyframe_conformance import Checker, Tolerance
from polyframe_conformance.cases import OPTIMIZER_CASES, OptimizerCase, case_weights
from polyframe_conformance.harness import build

pytestmark = pytest.mark.pf_level("optimizers")

ONE = Tolerance(rtol=1e-5, atol=1e-6)
SEQUENCE = Tolerance(rtol=1e-4, atol=1e-5)
STEPS = 50
LOSS = pf.SparseCategoricalCrossentropy()


def _model() -> pf.Sequential:
    return pf.Sequential([pf.Dense(4, activation="tanh"), pf.Dense(3)], input_shape=(5,))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    return rng.normal(size=(STEPS, 5)).astype(np.float32), rng.integers(0, 3, STEPS).astype(np.int64)


@pytest.mark.parametrize("steps", [1, STEPS], ids=["one-update", f"{STEPS}-updates"])
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=lambda case: case.id)
def test_optimizer(pf_backend: str, pf_check: Checker, case: OptimizerCase, steps: int) -> None:
    model, (x, y) = _model(), _data()
    weights = case_weights(model, 5)
    reference = ReferenceModel(model, weights)
    ref_losses = ReferenceOptimizer(case.make()).train(
        reference, ((x[i:i + 1], y[i:i + 1]) for i in range(steps)), LOSS)
    executable = build(pf_backend, model, weights, loss=LOSS, optimizer=case.make())
    prepared = executable.prepare_inputs(x)
    losses = [executable.train_step(prepared[i:i + 1], y[i:i + 1]).loss for i in range(steps)]
    tolerance = ONE if steps == 1 else SEQUENCE
    pf_check.close("loss before each update", losses, ref_losses, tolerance)
    after = executable.get_weights()
    for key in weights:
        pf_check.close(f"weights {key} after {steps} update(s)", after[key], reference.weights[key], tolerance)
