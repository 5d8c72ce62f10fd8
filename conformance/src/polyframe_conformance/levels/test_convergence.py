"""Level 6, convergence (slow): five seeds of a short real run per backend; the final test
accuracies must be statistically indistinguishable from the float64 reference's.

Run: scikit-learn's digits, MLP (Flatten, Dense 64 relu, Dense 10), Adam(2e-3), batches of 32,
3 epochs, seeds 0-4; accuracy on the held-out test split. Test: Welch's two-sample t-test of the
backend's five accuracies against the reference's five, two-sided; the level passes when
p >= 0.01, or when the means differ by at most 0.005 (half a percentage point, within which a
difference is immaterial even if the seed spread is nearly zero).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import polyframe as pf
from polyframe.reference import ReferenceModel, ReferenceOptimizer

from polyframe_conformance import Checker
from polyframe_conformance.harness import canonical_order, digits

pytestmark = [pytest.mark.pf_level("convergence"), pytest.mark.slow]

SEEDS, EPOCHS, BATCH = (0, 1, 2, 3, 4), 3, 32
ALPHA, IMMATERIAL = 0.01, 0.005


def _model() -> pf.Sequential:
    return pf.Sequential([pf.Flatten(), pf.Dense(64, activation="relu"), pf.Dense(10)],
                         input_shape=digits().input_shape)


def _optimizer() -> pf.Adam:
    return pf.Adam(2e-3)


@functools.cache
def _reference_accuracies() -> tuple[float, ...]:
    data, model, found = digits(), _model(), []
    for seed in SEEDS:
        ref = ReferenceModel(model, model.init_weights(seed))
        order = canonical_order(len(data.x_train), BATCH, seed, EPOCHS)
        ReferenceOptimizer(_optimizer()).train(
            ref, ((data.x_train[i], data.y_train[i]) for i in order), pf.SparseCategoricalCrossentropy())
        found.append(float(np.mean(ref.forward(data.x_test).argmax(axis=1) == data.y_test)))
    return tuple(found)


def welch_p_value(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); 1.0 / 0.0 when both samples are
    constant and equal / different."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


def test_convergence(pf_backend: str, pf_check: Checker) -> None:
    data, accuracies = digits(), []
    for seed in SEEDS:
        trainer = pf.Trainer(_model(), backend=pf_backend, seed=seed, optimizer=_optimizer())
        trainer.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=BATCH, progress=False)
        accuracies.append(trainer.evaluate(data.x_test, data.y_test)["accuracy"])
    reference = _reference_accuracies()
    assert min(reference) > 0.8, f"the reference run did not learn ({reference}); the test would be vacuous"
    mean, ref_mean = float(np.mean(accuracies)), float(np.mean(reference))
    difference = abs(mean - ref_mean)
    detail = f"accuracies {np.round(accuracies, 4).tolist()} vs reference {np.round(reference, 4).tolist()}"
    means = f"mean accuracy {mean:.4f} vs reference {ref_mean:.4f}"
    if difference <= IMMATERIAL:
        pf_check.bound(f"|difference of means| ({means})", difference, IMMATERIAL, detail=detail)
    else:
        p = welch_p_value(accuracies, reference)
        pf_check.bound(f"Welch t-test 1 - p ({means}; fails above 1 - alpha)", 1.0 - p, 1.0 - ALPHA,
                       detail=detail)
