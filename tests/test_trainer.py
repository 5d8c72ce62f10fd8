"""The training loop: history, evaluation, prediction, validation and its errors."""

import io

import numpy as np
import pytest

import polyframe as pf
from polyframe.callbacks import ProgressDisplay

from conftest import seed_cnn


def test_fit_evaluate_predict_and_history(backend, digits):
    model = seed_cnn(digits.input_shape, dropout=0.25)
    trainer = pf.Trainer(model, backend=backend, seed=1)
    history = trainer.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64,
                          validation_split=0.2, progress=False)
    assert history.epochs == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.step_losses) == 3 * -(-int(len(digits.x_train) * 0.8 + 0.5) // 64)
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = trainer.evaluate(digits.x_test, digits.y_test)
    outputs = trainer.predict(digits.x_test)
    assert outputs.shape == (len(digits.x_test), 10) and outputs.dtype == np.float32
    assert result["accuracy"] == pytest.approx(np.mean(outputs.argmax(1) == digits.y_test))
    assert 0.5 < result["accuracy"] <= 1.0
    # eval is deterministic (no dropout at inference)
    np.testing.assert_array_equal(outputs, trainer.predict(digits.x_test))


def test_fit_continues_epochs_and_validation_data(digits, backend):
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend=backend)
    trainer.fit(digits.x_train, digits.y_train, epochs=1, progress=False)
    history = trainer.fit(digits.x_train, digits.y_train, epochs=1, progress=False,
                          validation_data=(digits.x_test, digits.y_test))
    assert trainer.epoch == 2 and "val_accuracy" in history.history


def test_progress_prints_one_line_per_epoch_off_a_terminal(digits):
    stream = io.StringIO()
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend="torch")
    trainer.fit(digits.x_train[:200], digits.y_train[:200], epochs=2, progress=False,
                callbacks=[ProgressDisplay(stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "accuracy" in lines[1]
    assert "\r" not in stream.getvalue()


def test_progress_draws_a_live_bar_on_a_terminal(digits):
    stream = io.StringIO()
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend="torch")
    trainer.fit(digits.x_train[:200], digits.y_train[:200], epochs=1, batch_size=20, progress=False,
                callbacks=[ProgressDisplay(stream, live=True)])
    assert "\repoch 1/1 [" in stream.getvalue() and "10/10" in stream.getvalue()


def test_labels_outside_the_class_range(backend, digits):
    trainer = pf.Trainer(seed_cnn(digits.input_shape, num_classes=5), backend=backend)
    with pytest.raises(pf.LabelError, match=r"\[0, 5\)"):
        trainer.fit(digits.x_train, digits.y_train, progress=False)
    with pytest.raises(pf.LabelError, match="found -1"):
        trainer.evaluate(digits.x_test, np.full(len(digits.x_test), -1))


def test_wrongly_shaped_inputs_and_mismatched_lengths(digits):
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend="torch")
    with pytest.raises(pf.ShapeError, match=r"x\[\.\.\., None\]"):
        trainer.fit(digits.x_train[..., 0], digits.y_train, progress=False)
    with pytest.raises(pf.LabelError, match="samples"):
        trainer.fit(digits.x_train, digits.y_train[:-1], progress=False)
    with pytest.raises(pf.DataError, match="NaN"):
        trainer.predict(np.full((2, 8, 8, 1), np.nan))


def test_a_nan_loss_stops_training_with_a_clear_error(backend, digits):
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend=backend,
                         optimizer=pf.SGD(learning_rate=1e30))
    with pytest.raises(pf.NonFiniteLossError, match="learning rate"):
        trainer.fit(digits.x_train, digits.y_train, epochs=2, progress=False)


def test_unknown_backend_lists_the_registered_ones(all_backends):
    with pytest.raises(pf.BackendNotFoundError) as info:
        pf.Trainer(pf.Sequential([pf.Dense(2)], input_shape=(3,)), backend="mxnet")
    for name in all_backends:
        assert name in str(info.value)


def test_mse_regression_learns(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    trainer = pf.Trainer(pf.Sequential([pf.Dense(1)], input_shape=(3,)), loss="mse",
                         optimizer=pf.SGD(0.1, momentum=0.5), metrics=(), backend=backend)
    history = trainer.fit(x, y, epochs=20, batch_size=32, progress=False)
    assert history.history["loss"][-1] < 1e-4
    np.testing.assert_allclose(trainer.get_weights()["dense.kernel"][:, 0], [1.0, -2.0, 0.5], atol=1e-2)


def test_bad_trainer_arguments_are_polyframe_errors(digits):
    model = seed_cnn(digits.input_shape)
    with pytest.raises(pf.ConfigError, match="seed"):
        pf.Trainer(model, backend="torch", seed=2**64)
    with pytest.raises(pf.ConfigError, match="no trainable parameters"):
        pf.Trainer(pf.Sequential([pf.Flatten()], input_shape=(2, 2)), backend="torch")
    trainer = pf.Trainer(model, backend="torch")
    with pytest.raises(pf.LabelError, match="missing"):
        trainer.fit(digits.x_train, None, progress=False)
    with pytest.raises(pf.LabelError, match="numeric"):
        trainer.fit(digits.x_train, digits.y_train.astype(str), progress=False)
    with pytest.raises(pf.ConfigError, match="pair"):
        trainer.fit(digits.x_train, digits.y_train, validation_data=digits.x_test, progress=False)
    with pytest.raises(pf.ShapeError, match="validation inputs"):
        trainer.fit(digits.x_train, digits.y_train, progress=False,
                    validation_data=(digits.x_test[:, :4], digits.y_test))
    with pytest.raises(pf.ConfigError, match="Callback"):
        trainer.fit(digits.x_train, digits.y_train, callbacks=[object()], progress=False)
    with pytest.raises(pf.ConfigError, match="NaN"):
        trainer.set_weights({k: np.full_like(v, np.nan) for k, v in trainer.get_weights().items()})
    with pytest.raises(pf.DataError, match="float32 range"):
        trainer.predict(np.full((1, 8, 8, 1), 1e39))


def test_default_metrics_follow_the_loss_and_accuracy_reads_one_hot_targets(digits):
    model = seed_cnn(digits.input_shape)
    regression = pf.Trainer(model, backend="torch", loss="mse")
    assert regression.metrics == []
    one_hot = np.eye(10, dtype=np.float32)[digits.y_train]
    trainer = pf.Trainer(model, backend="torch", loss="mse", metrics="accuracy")
    history = trainer.fit(digits.x_train, one_hot, epochs=2, progress=False)
    assert 0.0 <= history.history["accuracy"][-1] <= 1.0
    outputs = trainer.predict(digits.x_test)
    expected = np.mean(outputs.argmax(1) == digits.y_test)
    assert trainer.evaluate(digits.x_test, np.eye(10)[digits.y_test])["accuracy"] == pytest.approx(expected)
