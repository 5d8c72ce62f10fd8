"""The TensorFlow adapter against float64 numpy references of polyframe's formulas (real TF)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyframe as pf
from polyframe.backend import BuildOptions
from polyframe.optimizers import Optimizer
from polyframe_tensorflow import TensorFlowBackend

tf = pytest.importorskip("tensorflow")

Weights = dict[str, np.ndarray]


def build(model: pf.Sequential, weights: Weights, loss: pf.losses.Loss | None = None,
          optimizer: Optimizer | None = None, seed: int = 0):
    return TensorFlowBackend().build(model, weights, loss or pf.SparseCategoricalCrossentropy(),
                                     optimizer or pf.SGD(0.1), BuildOptions(seed=seed))


def random_weights(model: pf.Sequential, seed: int, scale: float = 0.5) -> Weights:
    rng = np.random.default_rng(seed)
    return {key: (scale * rng.standard_normal(spec.shape)).astype(np.float32)
            for key, spec in model.param_specs()}


# -- float64 numpy reference -------------------------------------------------------------------
def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x: np.ndarray, window: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    """``(N, outH, outW, C, kH, kW)`` views of the sliding windows of an NHWC array."""
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=(1, 2))
    return view[:, ::strides[0], ::strides[1]]


def pad_same(x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], value: float) -> np.ndarray:
    top_bottom = same_pads(x.shape[1], window[0], strides[0])
    left_right = same_pads(x.shape[2], window[1], strides[1])
    return np.pad(x, ((0, 0), top_bottom, left_right, (0, 0)), constant_values=value)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def conv_reference(x: np.ndarray, w: Weights, padding: str, activation: str) -> np.ndarray:
    kernel, strides = w["conv2d.kernel"].astype(np.float64), (2, 2)
    if padding == "same":
        x = pad_same(x, kernel.shape[:2], strides, 0.0)
    h = np.tanh(np.einsum("nijcab,abco->nijo", windows(x, kernel.shape[:2], strides), kernel)
                + w["conv2d.bias"])
    if padding == "same":
        h = pad_same(h, (2, 3), (2, 2), -np.inf)
    h = windows(h, (2, 3), (2, 2)).max(axis=(-2, -1))
    z = h.reshape(len(h), -1) @ w["dense.kernel"].astype(np.float64) + w["dense.bias"]
    return softmax(z) if activation == "softmax" else z


def conv_model(padding: str, activation: str) -> pf.Sequential:
    return pf.Sequential(
        [
            pf.Conv2D(3, (4, 2), strides=2, padding=padding, activation="tanh"),
            pf.MaxPool2D((2, 3), strides=2, padding=padding),
            pf.Flatten(),
            pf.Dense(5, activation=activation),
        ],
        input_shape=(9, 7, 2),
    )


# -- weights -----------------------------------------------------------------------------------
def test_weights_after_build_are_bitwise_the_canonical_ones() -> None:
    model = conv_model("same", "softmax")
    weights = random_weights(model, 1)
    weights["conv2d.bias"][:] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]
    executable = build(model, weights)

    got = executable.get_weights()
    assert list(got) == [key for key, _ in model.param_specs()]
    for key, array in weights.items():
        assert got[key].dtype == np.float32 and got[key].shape == array.shape
        assert got[key].tobytes() == array.tobytes(), key

    got["dense.kernel"][:] = 7.0
    assert executable.get_weights()["dense.kernel"].tobytes() == weights["dense.kernel"].tobytes()

    replacement = random_weights(model, 2)
    executable.set_weights(replacement)
    assert all(executable.get_weights()[k].tobytes() == v.tobytes() for k, v in replacement.items())


# -- forward -----------------------------------------------------------------------------------
def test_the_reference_exercises_odd_same_padding() -> None:
    assert same_pads(9, 4, 2) == (1, 2) and same_pads(7, 2, 2) == (0, 1)
    assert same_pads(5, 2, 2) == (0, 1) and same_pads(4, 3, 2) == (0, 1)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("activation", ["softmax", "linear"])
def test_conv_forward_matches_numpy(padding: str, activation: str) -> None:
    model = conv_model(padding, activation)
    weights = random_weights(model, 3)
    x = np.random.default_rng(4).standard_normal((6, 9, 7, 2)).astype(np.float32)
    executable = build(model, weights)

    expected = conv_reference(x.astype(np.float64), weights, padding, activation)
    np.testing.assert_allclose(executable.predict(executable.prepare_inputs(x)), expected,
                               rtol=1e-5, atol=1e-6)
    y = np.arange(6) % 5
    loss, outputs = executable.eval_step(x, y)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    ce = np.mean(np.log(np.exp(expected).sum(axis=1)) - expected[np.arange(6), y])
    assert loss == pytest.approx(ce, rel=1e-5, abs=1e-6)


# -- one optimizer step at a time --------------------------------------------------------------
def mlp(activation: str) -> pf.Sequential:
    return pf.Sequential([pf.Dense(4, activation="tanh"), pf.Dense(3, activation=activation)],
                         input_shape=(5,))


def mlp_loss_and_grads(w: Weights, x: np.ndarray, y: np.ndarray, loss: pf.losses.Loss,
                       activation: str) -> tuple[float, np.ndarray, Weights]:
    """Loss, outputs and gradients of Dense(4, tanh) -> Dense(3, activation), in float64."""
    h = np.tanh(x @ w["dense.kernel"] + w["dense.bias"])
    z = h @ w["dense_1.kernel"] + w["dense_1.bias"]
    out = softmax(z) if activation == "softmax" else z
    n = len(x)
    if isinstance(loss, pf.MeanSquaredError):
        value, dz = np.mean((out - y) ** 2), 2 * (out - y) / out.size
    else:
        onehot = np.eye(3)[y]
        if loss.from_logits:
            value = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), y])
        else:
            p = out[np.arange(n), y]
            assert np.all((p > 1e-7) & (p < 1 - 1e-7)), "the clip must be inactive here"
            value = np.mean(-np.log(p))
        dz = (softmax(z) - onehot) / n
    dh = (dz @ w["dense_1.kernel"].T) * (1 - h ** 2)
    grads = {"dense.kernel": x.T @ dh, "dense.bias": dh.sum(0),
             "dense_1.kernel": h.T @ dz, "dense_1.bias": dz.sum(0)}
    return float(value), out, grads


class ReferenceOptimizer:
    """polyframe's documented update rules in float64."""

    def __init__(self, spec: Optimizer) -> None:
        self.spec, self.t, self.slots = spec, 0, {}

    def step(self, w: Weights, g: Weights) -> Weights:
        s, self.t = self.spec, self.t + 1
        new = {}
        for k in w:
            if isinstance(s, pf.Adam):
                m, v = self.slots.get(k, (0.0, 0.0))
                m = s.beta_1 * m + (1 - s.beta_1) * g[k]
                v = s.beta_2 * v + (1 - s.beta_2) * g[k] ** 2
                self.slots[k] = (m, v)
                m_hat, v_hat = m / (1 - s.beta_1 ** self.t), v / (1 - s.beta_2 ** self.t)
                new[k] = w[k] - s.learning_rate * m_hat / (np.sqrt(v_hat) + s.epsilon)
            else:
                velocity = s.momentum * self.slots.get(k, 0.0) + g[k]
                self.slots[k] = velocity
                new[k] = w[k] - s.learning_rate * velocity
        return new


OPTIMIZER_CASES = [
    ("sgd-momentum", pf.SGD(0.1, momentum=0.9), pf.SparseCategoricalCrossentropy(), "linear"),
    ("sgd-probabilities", pf.SGD(0.2), pf.SparseCategoricalCrossentropy(from_logits=False), "softmax"),
    ("adam", pf.Adam(0.05, beta_1=0.8, beta_2=0.95, epsilon=1e-2), pf.SparseCategoricalCrossentropy(), "linear"),
    ("adam-mse", pf.Adam(0.01), pf.MeanSquaredError(), "linear"),
]


@pytest.mark.parametrize("optimizer, loss, activation", [c[1:] for c in OPTIMIZER_CASES],
                         ids=[c[0] for c in OPTIMIZER_CASES])
def test_two_optimizer_steps_match_the_documented_formulas(
        optimizer: Optimizer, loss: pf.losses.Loss, activation: str) -> None:
    model = mlp(activation)
    weights = random_weights(model, 5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    if isinstance(loss, pf.MeanSquaredError):
        y = rng.standard_normal((8, 3)).astype(np.float32)
    else:
        y = np.array([0, 1, 2, 0, 1, 2, 2, 1], dtype=np.int64)
    executable = build(model, weights, loss, optimizer)
    reference = ReferenceOptimizer(optimizer)
    w = {k: v.astype(np.float64) for k, v in weights.items()}

    for _ in range(2):
        expected_loss, expected_out, grads = mlp_loss_and_grads(w, x.astype(np.float64), y, loss, activation)
        result = executable.train_step(x, y)
        assert result.loss == pytest.approx(expected_loss, abs=1e-6)
        np.testing.assert_allclose(result.outputs, expected_out, atol=1e-6)
        w = reference.step(w, grads)
        got = executable.get_weights()
        for key in w:
            np.testing.assert_allclose(got[key], w[key], atol=1e-6, rtol=0, err_msg=key)


# -- steps, dropout, errors --------------------------------------------------------------------
def test_smaller_last_batch_and_inference_leave_weights_alone() -> None:
    model = conv_model("same", "linear")
    executable = build(model, random_weights(model, 7))
    x = np.random.default_rng(8).standard_normal((8, 9, 7, 2)).astype(np.float32)
    y = np.arange(8) % 5
    executable.train_step(x, y)
    loss, outputs = executable.train_step(x[:3], y[:3])
    assert outputs.shape == (3, 5) and np.isfinite(loss)

    before = executable.get_weights()
    _, outputs = executable.eval_step(x[:5], y[:5])
    np.testing.assert_array_equal(outputs, executable.predict(x[:5]))
    assert all(before[k].tobytes() == v.tobytes() for k, v in executable.get_weights().items())


def dropout_outputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = pf.Sequential([pf.Dense(32), pf.Dropout(0.5)], input_shape=(4,))
    executable = build(model, random_weights(model, 9), pf.MeanSquaredError(), pf.SGD(1e-3), seed=seed)
    x = np.random.default_rng(10).standard_normal((64, 4)).astype(np.float32)
    clean = executable.predict(x)
    return clean, executable.train_step(x, np.zeros((64, 32), np.float32)).outputs


def test_dropout_is_inverted_seeded_and_training_only() -> None:
    clean, dropped = dropout_outputs(seed=11)
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], 2 * clean[kept], rtol=1e-6)
    assert 0.4 < 1 - kept.mean() < 0.6
    np.testing.assert_array_equal(dropout_outputs(seed=11)[1], dropped)
    assert not np.array_equal(dropout_outputs(seed=12)[1], dropped)


def test_unknown_optimizer_and_loss_are_named() -> None:
    class RMSprop(Optimizer):
        kind = "rmsprop"

    class Hinge(pf.losses.Loss):
        kind = "hinge"

    model = mlp("linear")
    with pytest.raises(pf.ConfigError, match="RMSprop"):
        build(model, model.init_weights(0), optimizer=RMSprop())
    with pytest.raises(pf.ConfigError, match="Hinge"):
        build(model, model.init_weights(0), loss=Hinge())


def test_trainer_fits_on_tensorflow() -> None:
    model = mlp("linear")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    trainer = pf.Trainer(model, optimizer=pf.Adam(0.05), backend="tensorflow", seed=0)
    history = trainer.fit(x, y, epochs=3, batch_size=16, progress=False)
    assert history.history["loss"][-1] < history.history["loss"][0]


# -- discovery ---------------------------------------------------------------------------------
def test_registered_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="polyframe")
    assert any(p.name == "tensorflow" and p.value == "polyframe_tensorflow" for p in points), (
        "polyframe-tensorflow is not installed; run: pip install -e adapters/tensorflow --no-deps")
    backend = pf.get_backend("tensorflow")
    assert isinstance(backend, TensorFlowBackend)
    assert backend.framework_version() == tf.__version__
    assert any("CPU" in name for name in backend.devices())


def test_import_is_lazy_and_deterministic_mode_switches_tf_on() -> None:
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import polyframe as pf
        import polyframe_tensorflow
        pf.registered_backends()
        assert "tensorflow" not in sys.modules, "importing the adapter imported tensorflow"
        from polyframe.backend import BuildOptions
        model = pf.Sequential([pf.Dense(3)], input_shape=(4,))
        executable = pf.get_backend("tensorflow").build(
            model, model.init_weights(0), pf.MeanSquaredError(), pf.Adam(),
            BuildOptions(deterministic=True))
        executable.train_step(np.ones((2, 4), np.float32), np.ones((2, 3), np.float32))
        from tensorflow.python.framework import config
        assert config.is_op_determinism_enabled()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", "TensorFlow's start-up notices should be hidden"


def test_quiet_startup_drops_only_the_known_notices(capfd: pytest.CaptureFixture[str]) -> None:
    from polyframe_tensorflow._startup import quiet_startup

    with quiet_startup():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\nI0000 port.cc:153] oneDNN custom operations are on.\n"
                    b"a real error\n")
    assert capfd.readouterr().err == "a real error\n"
