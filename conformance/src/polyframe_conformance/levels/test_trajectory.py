"""Level 5, training trajectory: 100 steps of full training (the trainer's loop) on scikit-learn's
digits with the seed CNN, Adam(1e-3), batches of 32, no dropout. The per-step loss must stay within
1e-3 relative of the float64 reference and of every other backend of the run that conforms."""

from __future__ import annotations

import numpy as np
import pytest

import polyframe as pf

from polyframe_conformance import Checker
from polyframe_conformance.harness import (TRAJECTORY_BATCH, TRAJECTORY_SEED, TRAJECTORY_STEPS, digits,
                                           reference_trajectory, trajectory_model)

pytestmark = pytest.mark.pf_level("trajectory")

RELATIVE = 1e-3
_CONFORMING: dict[str, np.ndarray] = {}
"""Trajectories of the backends of this run that matched the reference, for pairwise checks."""


class _StopAfter(pf.Callback):
    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    def on_batch_end(self, step: int, logs: dict) -> None:
        self.seen += 1
        if self.seen >= self.steps:
            self.trainer.stop_training = True


def _max_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_trajectory(pf_backend: str, pf_check: Checker) -> None:
    data = digits()
    reference = reference_trajectory()
    assert reference[-1] < 0.5 * reference[0], "the reference did not learn; the comparison would be vacuous"
    trainer = pf.Trainer(trajectory_model(), backend=pf_backend, seed=TRAJECTORY_SEED,
                         optimizer=pf.Adam(1e-3))
    epochs = -(-TRAJECTORY_STEPS * TRAJECTORY_BATCH // len(data.x_train))
    history = trainer.fit(data.x_train, data.y_train, epochs=epochs, batch_size=TRAJECTORY_BATCH,
                          callbacks=[_StopAfter(TRAJECTORY_STEPS)], progress=False)
    curve = np.array(history.step_losses[:TRAJECTORY_STEPS])
    assert len(curve) == TRAJECTORY_STEPS
    pf_check.bound("per-step loss vs float64 reference (max relative difference)",
                   _max_relative(curve, reference), RELATIVE)
    for other, other_curve in _CONFORMING.items():
        pf_check.bound(f"per-step loss vs {other} (max relative difference)",
                       _max_relative(curve, other_curve), RELATIVE)
    _CONFORMING[pf_backend] = curve
