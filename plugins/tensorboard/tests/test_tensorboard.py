"""The TensorBoard plugin's event files, read back with TensorBoard's own event reader."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import polyframe as pf
from polyframe_tensorboard import ENV_LOGDIR, TensorBoard


def _fit(tmp_path, callbacks=(), epochs=3):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 3)).astype(np.float32), rng.integers(0, 2, 24)
    model = pf.Sequential([pf.Dense(4, activation="tanh"), pf.Dense(2)], input_shape=(3,))
    trainer = pf.Trainer(model, optimizer=pf.SGD(0.1), backend="torch", seed=5)
    history = trainer.fit(x, y, epochs=epochs, batch_size=8, progress=False, callbacks=list(callbacks),
                          validation_data=(x[:8], y[:8]))
    return trainer, history


def _read(logdir) -> EventAccumulator:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return events


def test_event_files_hold_every_epoch_log_and_batch_loss(tmp_path):
    _, history = _fit(tmp_path, [TensorBoard(tmp_path / "run")])
    events = _read(tmp_path / "run")
    assert set(events.Tags()["scalars"]) == {"batch/loss", "epoch/learning_rate", *(
        f"epoch/{key}" for key in history.history)}
    for key, values in history.history.items():
        scalars = events.Scalars(f"epoch/{key}")
        assert [s.step for s in scalars] == [1, 2, 3]
        np.testing.assert_allclose([s.value for s in scalars], values, rtol=1e-6)
    batches = events.Scalars("batch/loss")
    assert [s.step for s in batches] == list(range(1, 10))
    np.testing.assert_allclose([s.value for s in batches], history.step_losses, rtol=1e-6)
    assert [s.value for s in events.Scalars("epoch/learning_rate")] == pytest.approx([0.1] * 3)


def test_the_hook_adds_the_logger_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_LOGDIR, str(tmp_path / "runs"))
    _, history = _fit(tmp_path, epochs=2)
    events = _read(tmp_path / "runs" / "torch-seed5")
    assert len(events.Scalars("epoch/loss")) == 2
    monkeypatch.delenv(ENV_LOGDIR)
    _fit(tmp_path / "off", epochs=1)
    assert not (tmp_path / "off").exists()


def test_bad_batch_every_is_refused():
    with pytest.raises(pf.ConfigError, match="batch_every"):
        TensorBoard("x", batch_every=-1)
