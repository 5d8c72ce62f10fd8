"""The JAX adapter against float64 numpy references of polyframe's canonical formulas (real JAX)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import polyframe
from polyframe import (
    SGD,
    Adam,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    MeanSquaredError,
    Sequential,
    SparseCategoricalCrossentropy,
)
from polyframe.backend import BuildOptions
from polyframe.optimizers import Optimizer

CE = SparseCategoricalCrossentropy()


def build(model, weights, loss=CE, optimizer=None, seed=0):
    backend = polyframe.get_backend("jax")
    return backend.build(model, weights, loss, optimizer or SGD(0.1), BuildOptions(seed=seed))


def random_weights(model: Sequential, seed: int = 1) -> dict[str, np.ndarray]:
    """Canonical-shaped weights with non-zero biases, so every parameter matters."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.5, s.shape).astype(np.float32) for k, s in model.param_specs()}


# -- float64 references ------------------------------------------------------------------------

def ref_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def ref_windows(xp: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int]):
    (kh, kw), (sh, sw) = kernel, strides
    for i in range((xp.shape[1] - kh) // sh + 1):
        for j in range((xp.shape[2] - kw) // sw + 1):
            yield i, j, xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]


def ref_conv_same(x, kernel, bias, strides):
    kh, kw = kernel.shape[:2]
    pads = [(0, 0), ref_same_pads(x.shape[1], kh, strides[0]),
            ref_same_pads(x.shape[2], kw, strides[1]), (0, 0)]
    xp = np.pad(x, pads)
    out = np.zeros((x.shape[0], -(-x.shape[1] // strides[0]), -(-x.shape[2] // strides[1]),
                    kernel.shape[3]))
    for i, j, patch in ref_windows(xp, (kh, kw), strides):
        out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, kernel)
    return out + bias


def ref_max_pool_same(x, pool, strides):
    pads = [(0, 0), ref_same_pads(x.shape[1], pool[0], strides[0]),
            ref_same_pads(x.shape[2], pool[1], strides[1]), (0, 0)]
    xp = np.pad(x, pads, constant_values=-np.inf)
    out = np.zeros((x.shape[0], -(-x.shape[1] // strides[0]), -(-x.shape[2] // strides[1]), x.shape[3]))
    for i, j, patch in ref_windows(xp, pool, strides):
        out[:, i, j, :] = patch.max(axis=(1, 2))
    return out


def ref_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_mlp_loss_and_grads(w, x, y):
    """Forward, sparse CE from logits and backprop of Dense(tanh) -> Dense(linear), float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.tanh(x @ w["dense.kernel"] + w["dense.bias"])
    z = h @ w["dense_1.kernel"] + w["dense_1.bias"]
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    loss = np.mean(lse - z[np.arange(len(y)), y])
    dz = ref_softmax(z)
    dz[np.arange(len(y)), y] -= 1
    dz /= len(y)
    da = (dz @ w["dense_1.kernel"].T) * (1 - h**2)
    grads = {"dense.kernel": x.T @ da, "dense.bias": da.sum(0),
             "dense_1.kernel": h.T @ dz, "dense_1.bias": dz.sum(0)}
    return loss, z, grads


# -- tests ---------------------------------------------------------------------------------------

@pytest.fixture
def mlp():
    model = Sequential([Dense(5, activation="tanh"), Dense(3)], input_shape=(4,))
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=6).astype(np.int64)
    return model, random_weights(model), x, y


def test_weights_after_build_are_bitwise_canonical(mlp):
    model, weights, x, y = mlp
    given = {k: v.copy() for k, v in weights.items()}
    executable = build(model, weights)
    out = executable.get_weights()
    assert list(out) == [k for k, _ in model.param_specs()]
    for key, value in out.items():
        assert value.dtype == np.float32 and value.tobytes() == given[key].tobytes()
    executable.train_step(executable.prepare_inputs(x), y)
    executable.train_step(executable.prepare_inputs(x), y)
    assert all(weights[k].tobytes() == given[k].tobytes() for k in given), "caller's arrays changed"
    assert executable.get_weights()["dense.kernel"].tobytes() != given["dense.kernel"].tobytes()


def test_conv_forward_matches_float64_reference():
    model = Sequential(
        [Conv2D(4, (4, 2), strides=2, padding="same", activation="tanh"),
         MaxPool2D(3, strides=2, padding="same"), Flatten(), Dense(5, activation="softmax")],
        input_shape=(7, 9, 3),
    )
    assert ref_same_pads(7, 4, 2) == (1, 2) and ref_same_pads(9, 2, 2) == (0, 1)
    assert ref_same_pads(4, 3, 2) == (0, 1)
    w = random_weights(model)
    w["conv2d.bias"] -= 2.0  # mostly negative activations: padding the pool with 0 would show
    x = np.random.default_rng(3).normal(size=(3, 7, 9, 3)).astype(np.float32)
    executable = build(model, w)

    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.tanh(ref_conv_same(x.astype(np.float64), w64["conv2d.kernel"], w64["conv2d.bias"], (2, 2)))
    h = ref_max_pool_same(h, (3, 3), (2, 2)).reshape(len(x), -1)
    expected = ref_softmax(h @ w64["dense.kernel"] + w64["dense.bias"])

    got = executable.predict(executable.prepare_inputs(x))
    assert got.shape == expected.shape == (3, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    _, eval_out = executable.eval_step(executable.prepare_inputs(x), np.array([0, 4, 2]))
    np.testing.assert_allclose(eval_out, expected, rtol=1e-5, atol=1e-6)


def ref_sgd(w, x, y, lr, momentum, steps):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    v = {k: np.zeros_like(p) for k, p in w.items()}
    losses = []
    for _ in range(steps):
        loss, _, g = ref_mlp_loss_and_grads(w, x, y)
        losses.append(loss)
        for k in w:
            v[k] = momentum * v[k] + g[k]
            w[k] = w[k] - lr * v[k]
    return w, losses


def ref_adam(w, x, y, lr, b1, b2, eps, steps, eps_inside_sqrt=False):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    m = {k: np.zeros_like(p) for k, p in w.items()}
    v = {k: np.zeros_like(p) for k, p in w.items()}
    losses = []
    for t in range(1, steps + 1):
        loss, _, g = ref_mlp_loss_and_grads(w, x, y)
        losses.append(loss)
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            denom = np.sqrt(v_hat + eps) if eps_inside_sqrt else np.sqrt(v_hat) + eps
            w[k] = w[k] - lr * m_hat / denom
    return w, losses


def run_steps(model, w, x, y, optimizer, steps):
    executable = build(model, w, optimizer=optimizer)
    xs = executable.prepare_inputs(x)
    results = [executable.train_step(xs, y) for _ in range(steps)]
    return executable.get_weights(), results


def assert_weights_close(got, expected):
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("steps", [1, 2])
def test_sgd_momentum_matches_formula(mlp, steps):
    model, w, x, y = mlp
    got, results = run_steps(model, w, x, y, SGD(learning_rate=0.3, momentum=0.9), steps)
    expected, losses = ref_sgd(w, x, y, 0.3, 0.9, steps)
    assert_weights_close(got, expected)
    np.testing.assert_allclose([r.loss for r in results], losses, rtol=1e-6)
    _, logits, _ = ref_mlp_loss_and_grads(w, x, y)
    np.testing.assert_allclose(results[0].outputs, logits, rtol=1e-5, atol=1e-6)


def test_adam_two_steps_match_formula(mlp):
    model, w, x, y = mlp
    spec = Adam(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=0.02)
    got, results = run_steps(model, w, x, y, spec, 2)
    expected, losses = ref_adam(w, x, y, 0.05, 0.8, 0.95, 0.02, 2)
    assert_weights_close(got, expected)
    np.testing.assert_allclose([r.loss for r in results], losses, rtol=1e-6)
    wrong, _ = ref_adam(w, x, y, 0.05, 0.8, 0.95, 0.02, 2, eps_inside_sqrt=True)
    assert max(np.abs(wrong[k] - expected[k]).max() for k in w) > 1e-4, "test cannot see eps placement"


def test_other_losses_match_formulas():
    model = Sequential([Dense(3, activation="softmax")], input_shape=(4,))
    w = random_weights(model)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    p = ref_softmax(x.astype(np.float64) @ w["dense.kernel"] + w["dense.bias"])
    y = np.array([0, 1, 2, 1, 0])
    prob_ce = build(model, w, loss=SparseCategoricalCrossentropy(from_logits=False))
    expected = np.mean(-np.log(np.clip(p[np.arange(5), y], 1e-7, 1 - 1e-7)))
    np.testing.assert_allclose(prob_ce.eval_step(x, y).loss, expected, rtol=1e-6)
    target = np.full((5, 3), 0.25, np.float32)
    mse = build(model, w, loss=MeanSquaredError())
    np.testing.assert_allclose(mse.eval_step(x, target).loss, np.mean((p - 0.25) ** 2), rtol=1e-6)


def test_dropout_is_inverted_seeded_and_training_only():
    model = Sequential([Dropout(0.25)], input_shape=(400,))
    x, y = np.ones((3, 400), np.float32), np.zeros((3, 400), np.float32)

    def masks(seed):
        executable = build(model, {}, loss=MeanSquaredError(), seed=seed)
        return [executable.train_step(x, y).outputs for _ in range(2)], executable.predict(x)

    (first, second), inference = masks(0)
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)}
    assert 0.15 < np.mean(first == 0) < 0.35
    assert not np.array_equal(first, second), "the key must advance every step"
    np.testing.assert_array_equal(inference, x)
    again, _ = masks(0)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(masks(1)[0][0], first)


def test_batches_of_different_sizes(mlp):
    model, w, x, y = mlp
    executable = build(model, w)
    assert executable.train_step(x[:4], y[:4]).outputs.shape == (4, 3)
    assert executable.train_step(x[:1], y[:1]).outputs.shape == (1, 3)
    assert executable.predict(x[:5]).shape == (5, 3)


def test_unknown_optimizer_is_a_config_error(mlp):
    class Lion(Optimizer):
        kind = "lion"

    model, w, _, _ = mlp
    with pytest.raises(polyframe.ConfigError, match="Lion"):
        build(model, w, optimizer=Lion())


def test_backend_is_discoverable_without_importing_jax():
    code = (
        "import sys, polyframe\n"
        "b = polyframe.get_backend('jax')\n"
        "assert type(b).__module__ == 'polyframe_jax' and b.priority == 20, b\n"
        "assert b.adapter_distribution == 'polyframe-jax' and b.framework_version()\n"
        "assert 'jax' not in sys.modules, 'listing backends imported jax'\n"
        "assert b.devices() and 'jax' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_trainer_fits_on_jax():
    model = Sequential([Dense(8, activation="relu"), Dense(2)], input_shape=(2,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    trainer = polyframe.Trainer(model, backend="jax", optimizer=Adam(0.05), seed=0)
    history = trainer.fit(x, y, epochs=5, batch_size=32, progress=False)
    assert history.history["loss"][-1] < history.history["loss"][0]
