"""The benchmark baselines train the same model as polyframe: same weights, batches and losses.

Hand-written native loops must follow polyframe's Trainer on the same framework (losses within
1e-4 relative over 30 steps, predictions within 1e-4 / 1e-5 afterwards) and the float64 reference
on models with uneven "same" padding, probabilities and regression outputs. Keras runs in one
subprocess per Keras backend; its first loss (before any update) must equal polyframe's.
"""

try:
    import torch  # noqa: F401  (torch must load before tensorflow in one process)
except ImportError:
    pass

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import polyframe as pf
from polyframe.bench.keras_baseline import keras_available, train_keras
from polyframe.bench.native import FRAMEWORKS, train_native
from polyframe.data import batch_indices
from polyframe.layers import Layer
from polyframe.losses import Loss
from polyframe.optimizers import Optimizer
from polyframe.reference import ReferenceModel, ReferenceOptimizer

from conftest import ROOT, max_relative, require, seed_cnn

STEPS, BATCH = 30, 32


def _order(n: int) -> list[np.ndarray]:
    return list(batch_indices(n, BATCH, seed=0, epoch=0, shuffle=True))


def _reference_losses(model, weights, loss, optimizer, x, y, order) -> list[float]:
    ref = ReferenceModel(model, {k: v.astype(np.float64) for k, v in weights.items()})
    return ReferenceOptimizer(optimizer).train(ref, [(x[i].astype(np.float64), y[i]) for i in order], loss)


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return request.param


def test_native_loop_follows_the_trainer_on_the_same_framework(framework, digits):
    model = seed_cnn(digits.input_shape)
    x, y = digits.x_train[:STEPS * BATCH], digits.y_train[:STEPS * BATCH]
    trainer = pf.Trainer(model, optimizer=pf.Adam(1e-3), backend=framework, seed=0)
    expected = trainer.fit(x, y, batch_size=BATCH, progress=False).step_losses
    steps = []
    run = train_native(framework, model, model.init_weights(0), pf.SparseCategoricalCrossentropy(),
                       pf.Adam(1e-3), x, y, _order(len(x)), lambda: steps.append(1))
    assert len(run.losses) == len(steps) == len(expected) == STEPS
    assert max_relative(run.losses, expected) < 1e-4
    np.testing.assert_allclose(run.predict(digits.x_test), trainer.predict(digits.x_test),
                               rtol=1e-4, atol=1e-5)


TRICKY = pf.Sequential([
    pf.Conv2D(4, 4, strides=2, padding="same", activation="relu"),  # even kernel, stride 2
    pf.Conv2D(3, (2, 3), padding="same"),                           # uneven pad rows, even cols
    pf.Activation("softmax"),                                       # over channels of an image
    pf.MaxPool2D(3, strides=2, padding="same"),                     # uneven -inf pad
    pf.Flatten(),
    pf.Dense(16, activation="tanh"),
    pf.Dense(10),
], input_shape=(8, 8, 1))


def test_native_loops_agree_on_same_padding_stride_and_momentum(digits):
    for name in FRAMEWORKS:
        require(name)
    x, y = digits.x_train[:10 * BATCH], digits.y_train[:10 * BATCH]
    args = (TRICKY, TRICKY.init_weights(3), pf.SparseCategoricalCrossentropy(), pf.SGD(0.1, momentum=0.9),
            x, y, _order(len(x)), lambda: None)
    runs = {name: train_native(name, *args) for name in FRAMEWORKS}
    reference = _reference_losses(*args[:-1])
    for name, run in runs.items():
        assert max_relative(run.losses, runs["torch"].losses) < 1e-4, name
        assert max_relative(run.losses, reference) < 1e-4, name
    outputs = {name: run.predict(digits.x_test[:64]) for name, run in runs.items()}
    for name, out in outputs.items():
        np.testing.assert_allclose(out, outputs["torch"], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("model, loss, optimizer", [
    (pf.Sequential([pf.Flatten(), pf.Dense(12, activation="sigmoid"),
                    pf.Dense(10, activation="softmax")], input_shape=(8, 8, 1)),
     pf.SparseCategoricalCrossentropy(from_logits=False), pf.Adam(0.01)),
    (pf.Sequential([pf.Conv2D(2, 3, padding="same", use_bias=False, activation="tanh")],
                   input_shape=(8, 8, 1)),
     pf.MeanSquaredError(), pf.SGD(0.5)),
], ids=["probabilities-adam", "image-output-mse-sgd"])
def test_native_loops_follow_the_reference(framework, digits, model, loss, optimizer):
    x = digits.x_train[:5 * BATCH]
    sparse = isinstance(loss, pf.SparseCategoricalCrossentropy)
    y = digits.y_train[:len(x)] if sparse else x[..., [0, 0]] ** 2
    args = (model, model.init_weights(7), loss, optimizer, x, y, _order(len(x)))
    run = train_native(framework, *args, lambda: None)
    assert max_relative(run.losses, _reference_losses(*args)) < 1e-4


def test_dropout_trains_and_is_off_at_inference(framework, digits):
    model = pf.Sequential([pf.Flatten(), pf.Dense(32, activation="relu"), pf.Dropout(0.5), pf.Dense(10)],
                          input_shape=(8, 8, 1))
    x, y = digits.x_train[:4 * BATCH], digits.y_train[:4 * BATCH]
    run = train_native(framework, model, model.init_weights(0), pf.SparseCategoricalCrossentropy(),
                       pf.Adam(0.01), x, y, _order(len(x)), lambda: None)
    assert np.all(np.isfinite(run.losses))
    np.testing.assert_array_equal(run.predict(digits.x_test[:16]), run.predict(digits.x_test[:16]))


# -- Keras, one subprocess per Keras backend --------------------------------------------------
KERAS_STEPS = 20
KERAS_SCRIPT = f"""
import json
import polyframe as pf
from polyframe.bench.keras_baseline import keras_backend, train_keras
from polyframe.data import batch_indices
data = pf.datasets.digits()
x, y = data.x_train[:{KERAS_STEPS * BATCH}], data.y_train[:{KERAS_STEPS * BATCH}]
model = pf.Sequential([pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                       pf.Dense(128, activation="relu"), pf.Dense(10)], input_shape=data.input_shape)
order = list(batch_indices(len(x), {BATCH}, seed=0, epoch=0, shuffle=True))
run = train_keras(model, model.init_weights(0), pf.SparseCategoricalCrossentropy(), pf.Adam(1e-3),
                  x, y, order, lambda: None)
print(json.dumps({{"backend": keras_backend(), "losses": run.losses,
                  "outputs": run.predict(data.x_test[:4]).tolist()}}))
"""
KERAS_BACKENDS = ("jax", "tensorflow", "torch")


@pytest.fixture(scope="module")
def keras_runs() -> Iterator[dict[str, subprocess.Popen]]:
    """All Keras backends' runs, started together so that they overlap."""
    if not keras_available():
        pytest.skip("keras is not installed")
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    runs = {}
    for name in KERAS_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            env = {**os.environ, "KERAS_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "2"}
            runs[name] = subprocess.Popen([sys.executable, "-c", KERAS_SCRIPT], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield runs
    for proc in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("keras_backend", KERAS_BACKENDS)
def test_keras_baseline_starts_from_polyframes_loss_and_learns(keras_runs, keras_backend, digits):
    if keras_backend not in keras_runs:
        pytest.skip(f"{keras_backend} is not installed")
    out, err = keras_runs[keras_backend].communicate(timeout=300)
    assert keras_runs[keras_backend].returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    losses = result["losses"]
    model = seed_cnn(digits.input_shape)
    first = _order(KERAS_STEPS * BATCH)[0]
    expected = ReferenceModel(model, model.init_weights(0)).loss_and_grads(
        digits.x_train[first], digits.y_train[first], pf.SparseCategoricalCrossentropy())[0]
    assert result["backend"] == keras_backend
    assert len(losses) == KERAS_STEPS
    assert losses[0] == pytest.approx(expected, rel=1e-4)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05
    assert np.array(result["outputs"]).shape == (4, 10)


# -- unsupported input -----------------------------------------------------------------------
class Custom(Layer):
    kind = "custom"


class CustomLoss(Loss):
    pass


class CustomOptimizer(Optimizer):
    pass


@pytest.mark.parametrize("framework, model, loss, optimizer, named", [
    ("mxnet", seed_cnn((8, 8, 1)), pf.SparseCategoricalCrossentropy(), pf.Adam(), "mxnet"),
    ("torch", pf.Sequential([pf.Flatten(), Custom()], input_shape=(8, 8, 1)), pf.MeanSquaredError(),
     pf.Adam(), "Custom"),
    ("jax", seed_cnn((8, 8, 1)), CustomLoss(), pf.Adam(), "CustomLoss"),
    ("tensorflow", seed_cnn((8, 8, 1)), pf.SparseCategoricalCrossentropy(), CustomOptimizer(),
     "CustomOptimizer"),
])
def test_unsupported_input_raises_config_error(framework, model, loss, optimizer, named):
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int64)
    weights = model.init_weights(0)
    with pytest.raises(pf.ConfigError, match=named):
        train_native(framework, model, weights, loss, optimizer, x, y, [np.arange(4)], lambda: None)
    if framework != "mxnet":
        with pytest.raises(pf.ConfigError, match=named):
            train_keras(model, weights, loss, optimizer, x, y, [np.arange(4)], lambda: None)
