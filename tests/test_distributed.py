"""Data-parallel training: batch slicing, 2 workers against 1 on real MNIST on every backend, a
worker dying mid-run, and the checks on the strategy options."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import polyframe as pf
from polyframe.checkpoint import latest_checkpoint, load_checkpoint
from polyframe.distributed import merge_outputs, slice_bounds, split_batch
from polyframe.errors import ConfigError, DistributedError

from conftest import max_relative, require, seed_cnn

STEPS = 100
BATCH = 32
TRAJECTORY_RELATIVE = 1e-3
"""The conformance trajectory level's bound on the per-step loss."""


def test_slice_bounds_are_contiguous_in_order_and_balanced():
    assert slice_bounds(32, 2) == [(0, 16), (16, 32)]
    assert slice_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert slice_bounds(1, 2) == [(0, 1), (1, 1)]
    x, y = np.arange(10).reshape(5, 2), np.arange(5)
    parts = split_batch((x, y), slice_bounds(5, 2))
    assert [p[1].tolist() for p in parts] == [[0, 1, 2], [3, 4]]
    assert np.array_equal(merge_outputs([p[0] for p in parts]), x)


@pytest.mark.parametrize("options, message", [
    ({"strategy": "ddp"}, "strategy must be one of"),
    ({"strategy": "data_parallel", "devices": 0}, "devices"),
    ({"devices": 2}, "need strategy='data_parallel'"),
    ({"strategy": "data_parallel", "devices": 2, "nodes": 2}, "torchrun"),
    ({"strategy": "data_parallel", "devices": 1_000_000}, r"more than this machine can run.*at most devices="),
    ({"precision": "float16"}, "precision must be one of"),
])
def test_bad_strategy_options_are_refused_before_any_worker_starts(options, message):
    model = seed_cnn((8, 8, 1))
    with pytest.raises(ConfigError, match=message):
        pf.Trainer(model, backend="torch", **options)


@pytest.fixture(scope="module")
def mnist_steps(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first ``STEPS`` global batches' worth of MNIST training rows (one epoch, unshuffled
    order drawn by the trainer)."""
    data = pf.datasets.mnist(mnist_dir)
    return data.x_train[:STEPS * BATCH], data.y_train[:STEPS * BATCH]


def _losses(trainer: pf.Trainer, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    history = trainer.fit(x, y, epochs=1, batch_size=BATCH, progress=False)
    return np.array(history.step_losses)


def test_two_workers_match_one_worker_with_the_same_global_batch(backend, mnist_steps):
    x, y = mnist_steps
    model = seed_cnn(x.shape[1:])
    single = pf.Trainer(model, backend=backend, optimizer=pf.Adam(1e-3), seed=0)
    parallel = pf.Trainer(model, backend=backend, optimizer=pf.Adam(1e-3), seed=0,
                          strategy="data_parallel", devices=2)
    try:
        assert len(parallel.executable.devices_used()) == 2
        one, two = _losses(single, x, y), _losses(parallel, x, y)
        assert len(one) == len(two) == STEPS
        assert two[-1] < 0.5 * two[0], "training did not learn; the comparison would be vacuous"
        assert max_relative(two, one) <= TRAJECTORY_RELATIVE
        for key, value in single.get_weights().items():
            np.testing.assert_allclose(parallel.get_weights()[key], value, rtol=1e-2, atol=1e-4,
                                       err_msg=key)
        assert parallel.evaluate(x[:512], y[:512])["accuracy"] == pytest.approx(
            single.evaluate(x[:512], y[:512])["accuracy"], abs=0.01)
    finally:
        parallel.executable.close()


class _KillWorker(pf.Callback):
    """Kills worker ``rank`` with SIGKILL after ``step`` batches of epoch ``epoch``."""

    def __init__(self, rank: int, epoch: int, step: int) -> None:
        self.rank, self.epoch, self.step = rank, epoch, step

    def on_batch_end(self, step: int, logs: dict) -> None:
        if self.trainer.epoch == self.epoch and step + 1 == self.step:
            os.kill(self.trainer.executable.worker_pids[self.rank], signal.SIGKILL)


@pytest.mark.parametrize("name, rank", [("torch", 1), ("jax", 0)])
def test_a_worker_dying_stops_the_job_with_a_clear_error_and_keeps_the_checkpoint(
        name, rank, digits, tmp_path, monkeypatch):
    require(name)
    monkeypatch.setenv("POLYFRAME_WORKER_TIMEOUT", "120")
    x, y = digits.x_train[:320], digits.y_train[:320]
    model = seed_cnn(digits.input_shape)
    trainer = pf.Trainer(model, backend=name, seed=0, strategy="data_parallel", devices=2)
    saved = {}

    class _Remember(pf.Callback):
        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            saved.update(self.trainer.get_weights())

    started = time.monotonic()
    with pytest.raises(DistributedError) as caught:
        trainer.fit(x, y, epochs=3, batch_size=32, progress=False, checkpoint_dir=str(tmp_path),
                    callbacks=[_Remember(), _KillWorker(rank, epoch=1, step=3)])
    assert time.monotonic() - started < 100, "the failure was detected only by a timeout"
    message = str(caught.value)
    assert f"worker {rank}" in message and "killed by signal 9" in message
    assert "resume" in message
    assert all(pid_gone(pid) for pid in trainer.executable.worker_pids)

    checkpoint = load_checkpoint(latest_checkpoint(tmp_path))
    assert checkpoint.epoch == 1
    for key, value in saved.items():
        np.testing.assert_array_equal(checkpoint.weights[key], value)
    resumed = pf.Trainer(model, backend=name, seed=0)
    history = resumed.fit(x, y, epochs=2, batch_size=32, progress=False, resume_from=str(tmp_path))
    assert resumed.epoch == 2 and np.isfinite(history.step_losses).all()
    with pytest.raises(DistributedError, match="stopped earlier"):
        trainer.predict(x[:4])


def pid_gone(pid: int) -> bool:
    """Whether process ``pid`` has exited and been reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_closed_data_parallel_trainer_says_its_workers_were_stopped():
    model = pf.Sequential([pf.Dense(3)], input_shape=(4,))
    trainer = pf.Trainer(model, backend="torch", strategy="data_parallel", devices=2)
    x = np.zeros((2, 4), np.float32)
    assert trainer.predict(x).shape == (2, 3)
    trainer.executable.close()
    with pytest.raises(DistributedError, match="workers were stopped.*build a new Trainer"):
        trainer.predict(x[:1])


def test_cli_says_data_parallel_and_that_resumed_data_differs(tmp_path, capsys):
    from polyframe.cli import main

    model = str(Path(__file__).parent / "checkpoint_files" / "mlp_dropout.py")
    wine = ["train", model, "--epochs", "1", "--batch-size", "64", "--backend", "torch"]
    assert main([*wine, "--data", "wine", "--checkpoint-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*wine, "--data", "breast_cancer", "--devices", "2", "--resume", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "backend torch (torch " in captured.out and "data-parallel on 2 workers" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polyframe: error: ")
    assert "different data" in err[0] and "layer was changed" not in err[0]


def test_a_worker_error_at_build_is_the_polyframe_error_it_raised(digits):
    require("tensorflow")
    model = pf.Sequential([pf.Conv2D(4, 3), pf.BatchNorm(), pf.Flatten(), pf.Dense(10)],
                          input_shape=digits.input_shape)
    with pytest.raises(ConfigError, match="does not support BatchNorm"):
        pf.Trainer(model, backend="tensorflow", strategy="data_parallel", devices=2)
