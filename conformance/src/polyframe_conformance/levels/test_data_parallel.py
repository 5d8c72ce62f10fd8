"""Level 9, data-parallel: 100 steps of the seed CNN, Adam(1e-3), global batches of 32, trained
with ``strategy="data_parallel", devices=2`` (each worker takes 16 contiguous rows of every
batch) must follow the same backend's single-worker run: per-step loss within 1e-3 relative,
the same trajectory bound as level 5. Data: real MNIST from ``$POLYFRAME_MNIST_DIR`` (its 10,000
images split 8,000 / 2,000); where that is not set or holds no MNIST, scikit-learn's digits,
and the observation says so. A backend without a data-parallel engine is skipped."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import polyframe as pf
from polyframe.errors import DataError

from polyframe_conformance import Checker
from polyframe_conformance.cases import seed_cnn
from polyframe_conformance.harness import TRAJECTORY_BATCH, TRAJECTORY_SEED, TRAJECTORY_STEPS, digits

pytestmark = pytest.mark.pf_level("data-parallel")

RELATIVE = 1e-3
WORKERS = 2
ENV_MNIST = "POLYFRAME_MNIST_DIR"


@functools.cache
def _data() -> tuple[str, np.ndarray, np.ndarray]:
    """``(name, x, y)``: the first 100 global batches of MNIST, else of digits (cycled)."""
    rows = TRAJECTORY_STEPS * TRAJECTORY_BATCH
    try:
        split, name = pf.datasets.mnist(os.environ[ENV_MNIST]), "MNIST"
    except (KeyError, DataError):
        split, name = digits(), f"digits (no MNIST: set ${ENV_MNIST})"
    index = np.arange(rows) % len(split.x_train)
    return name, split.x_train[index], split.y_train[index]


def _curve(trainer: pf.Trainer, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    history = trainer.fit(x, y, epochs=1, batch_size=TRAJECTORY_BATCH, progress=False)
    return np.array(history.step_losses)


def test_two_workers_follow_one(pf_backend: str, pf_check: Checker) -> None:
    if pf.get_backend(pf_backend).distributed is None:
        pytest.skip(f"backend {pf_backend!r} declares no data-parallel engine")
    name, x, y = _data()
    model = seed_cnn(x.shape[1:])
    options = dict(backend=pf_backend, seed=TRAJECTORY_SEED, optimizer=pf.Adam(1e-3))
    single = _curve(pf.Trainer(model, **options), x, y)
    trainer = pf.Trainer(model, strategy="data_parallel", devices=WORKERS, **options)
    try:
        used = trainer.executable.devices_used()
        assert len(used) == WORKERS, f"the data-parallel job trains on {used}, not {WORKERS} devices"
        parallel = _curve(trainer, x, y)
    finally:
        trainer.executable.close()
    assert len(parallel) == len(single) == TRAJECTORY_STEPS
    assert single[-1] < 0.5 * single[0], "the single-worker run did not learn; the comparison would be vacuous"
    pf_check.bound(f"per-step loss, {WORKERS} workers vs 1, on {name} (max relative difference)",
                   float(np.max(np.abs(parallel - single) / np.abs(single))), RELATIVE)
