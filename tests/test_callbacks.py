"""Callbacks: checkpoints (last / every N / best), early stopping, learning-rate changes at run
time on every backend, the CSV log, the NaN guard, custom and plugin-provided callbacks."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import polyframe as pf
from polyframe.checkpoint import list_checkpoints, load_checkpoint
from polyframe.monitoring import get_learning_rate

BACKENDS = ("torch", "tensorflow", "jax")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 2, 40)


def _trainer(backend: str = "torch", optimizer: pf.optimizers.Optimizer | None = None) -> pf.Trainer:
    model = pf.Sequential([pf.Dense(6, activation="relu"), pf.Dense(2)], input_shape=(4,))
    return pf.Trainer(model, optimizer=optimizer or pf.SGD(0.1), backend=backend, seed=2)


def test_model_checkpoint_last_every_and_best(data, tmp_path):
    trainer = _trainer()
    trainer.fit(*data, epochs=3, batch_size=8, progress=False, callbacks=[pf.ModelCheckpoint(
        tmp_path, every_n_steps=3, save_best=True, monitor="loss", keep=3)])
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-000000010", "ckpt-000000012", "ckpt-000000015"]
    best = list_checkpoints(tmp_path, "best")
    assert [p.name for p in best] == ["best-000000015"]  # SGD on this data: loss falls each epoch
    final = load_checkpoint(tmp_path)
    assert (final.epoch, final.step) == (3, 15)
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(final.weights[key], value)


def test_early_stopping_stops_after_patience_and_restores_best(data):
    stopper = pf.EarlyStopping("loss", mode="max", patience=2, restore_best_weights=True)
    first = _trainer()
    first.fit(*data, epochs=1, batch_size=8, progress=False)
    trainer = _trainer()
    history = trainer.fit(*data, epochs=10, batch_size=8, progress=False, callbacks=[stopper])
    assert len(history.history["loss"]) == 3 and stopper.stopped_epoch == 3
    for key, value in first.get_weights().items():  # "max" of a falling loss: epoch 1 was best
        np.testing.assert_array_equal(trainer.get_weights()[key], value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learning_rate_changes_at_run_time(backend, data):
    x, y = data
    reduced = _trainer(backend, pf.SGD(0.1, momentum=0.5))
    reduced.fit(x, y, epochs=3, batch_size=40, progress=False, callbacks=[
        pf.ReduceLROnPlateau("loss", mode="max", factor=0.5, patience=1)])
    assert get_learning_rate(reduced) == pytest.approx(0.1 * 0.5 ** 2)
    scheduled = _trainer(backend, pf.SGD(0.1, momentum=0.5))
    scheduled.fit(x, y, epochs=3, batch_size=40, progress=False, callbacks=[
        pf.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch < 2 else lr / 2)])
    assert get_learning_rate(scheduled) == pytest.approx(0.05)
    for key, value in scheduled.get_weights().items():  # rates 0.1, 0.1, 0.05 in both runs
        np.testing.assert_allclose(reduced.get_weights()[key], value, rtol=1e-6, atol=1e-7)
    fixed = _trainer(backend, pf.SGD(0.1, momentum=0.5))
    fixed.fit(x, y, epochs=3, batch_size=40, progress=False)
    assert not np.allclose(fixed.get_weights()["dense.kernel"], scheduled.get_weights()["dense.kernel"])


def test_learning_rate_of_a_schedule_cannot_be_set(data):
    trainer = _trainer(optimizer=pf.SGD(pf.StepDecay(0.1, 2, 0.5)))
    with pytest.raises(pf.ConfigError, match="schedule"):
        trainer.fit(*data, epochs=1, progress=False, callbacks=[pf.ReduceLROnPlateau("loss")])


def test_monitor_of_a_missing_key_is_a_clear_error(data):
    with pytest.raises(pf.ConfigError, match="monitors 'val_lost'.*accuracy"):
        _trainer().fit(*data, epochs=1, progress=False, validation_split=0.2,
                       callbacks=[pf.EarlyStopping("val_lost")])


@pytest.mark.parametrize("make", [lambda d: pf.EarlyStopping(), lambda d: pf.ReduceLROnPlateau(),
                                  lambda d: pf.ModelCheckpoint(d, save_best=True, monitor="val_accuracy")])
def test_a_validation_monitor_without_validation_data_is_refused_before_training(data, tmp_path, make):
    trainer = _trainer()
    before = trainer.get_weights()
    with pytest.raises(pf.ConfigError, match="no validation data"):
        trainer.fit(*data, epochs=1, progress=False, callbacks=[make(tmp_path / "ckpt")])
    assert trainer.progress.step == 0 and not list((tmp_path).glob("ckpt/*"))
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(value, before[key])


def test_csv_logger_writes_and_appends_one_row_per_epoch(data, tmp_path):
    path = tmp_path / "log.csv"
    trainer = _trainer()
    history = trainer.fit(*data, epochs=2, batch_size=8, progress=False, callbacks=[pf.CSVLogger(path)])
    trainer.fit(*data, epochs=1, batch_size=8, progress=False, callbacks=[pf.CSVLogger(path, append=True)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    assert float(rows[2][1]) == pytest.approx(history.history["loss"][1])



def test_csv_logger_leaves_an_old_log_alone_when_the_fit_fails_before_its_first_row(data, tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("epoch,loss\n1,0.5\n2,0.4\n")
    scheduled = _trainer(optimizer=pf.SGD(pf.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)))
    with pytest.raises(pf.ConfigError, match="ReduceLROnPlateau"):
        scheduled.fit(*data, epochs=1, batch_size=8, progress=False,
                      callbacks=[pf.CSVLogger(path), pf.ReduceLROnPlateau("loss")])
    assert path.read_text() == "epoch,loss\n1,0.5\n2,0.4\n"


@pytest.mark.parametrize("path", [5, None, "", True])
def test_csv_logger_needs_a_path(path):
    with pytest.raises(pf.ConfigError, match="CSVLogger needs a file path"):
        pf.CSVLogger(path)

def test_nan_guard_names_the_last_good_checkpoint(data, tmp_path):
    class Poison(pf.Callback):
        def on_batch_end(self, step: int, logs: dict) -> None:
            if self.trainer.progress.step == 3:
                self.trainer.executable.set_weights({k: np.full_like(v, np.nan)
                                                     for k, v in self.trainer.get_weights().items()})

    trainer = _trainer()
    with pytest.raises(pf.NonFiniteLossError, match="last good checkpoint is .*ckpt-000000003") as error:
        trainer.fit(*data, epochs=2, batch_size=8, progress=False,
                    callbacks=[pf.ModelCheckpoint(tmp_path, every_n_steps=1, keep=1), Poison()])
    good = load_checkpoint(str(error.value).split("checkpoint is ")[1].split(";")[0])
    assert good.step == 3 and all(np.isfinite(a).all() for a in good.weights.values())


class _Recorder(pf.Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_begin(self, logs: dict) -> None:
        self.events.append("train_begin")

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs: dict) -> None:
        self.events.append("train_end")


def test_custom_and_plugin_callbacks_receive_the_events(data):
    custom, provided = _Recorder(), _Recorder()

    class Plugin:
        @pf.hookimpl
        def polyframe_callbacks(self, trainer):
            return [provided] if trainer.seed == 2 else []

    plugin = Plugin()
    pf.plugins.register_plugin(plugin, "test-callbacks")
    try:
        _trainer().fit(*data, epochs=2, progress=False, callbacks=[custom])
    finally:
        pf.plugins.unregister_plugin(plugin)
    expected = ["train_begin", "epoch_end 0 ['accuracy', 'loss']", "epoch_end 1 ['accuracy', 'loss']",
                "train_end"]
    assert custom.events == provided.events == expected


def test_a_plugin_returning_a_non_callback_is_refused(data):
    class Plugin:
        @pf.hookimpl
        def polyframe_callbacks(self, trainer):
            return ["not a callback"]

    plugin = Plugin()
    pf.plugins.register_plugin(plugin, "test-bad-callbacks")
    try:
        with pytest.raises(pf.ConfigError, match="must be a polyframe.Callback"):
            _trainer().fit(*data, epochs=1, progress=False)
    finally:
        pf.plugins.unregister_plugin(plugin)
