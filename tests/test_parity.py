"""Every backend computes polyframe's canonical semantics: same weights, outputs, updates, losses.

Tolerances (float32 backends): forward outputs vs the float64 reference rtol 1e-5 / atol 1e-6;
one SGD step (lr 1, so the update is the gradient) vs the reference atol 1e-6; training losses
of the backends after each of 100 steps agree within 1e-3 relative, and each tracks the float64
reference trajectory within 1e-3 relative.
"""

import numpy as np
import pytest

import polyframe as pf
from polyframe.data import batch_indices
from polyframe.reference import ReferenceModel, ReferenceOptimizer

from conftest import max_relative, seed_cnn

TRICKY = pf.Sequential([
    pf.Conv2D(4, 4, strides=2, padding="same", activation="relu"),   # even kernel, stride 2
    pf.Conv2D(3, (2, 3), padding="same", activation="tanh"),          # asymmetric at stride 1
    pf.MaxPool2D(3, strides=2, padding="same"),
    pf.Flatten(),                                                     # channel-last order
    pf.Dense(7, activation="sigmoid"),
    pf.Activation("relu"),
    pf.Dense(5, activation="softmax"),
], input_shape=(11, 9, 2))


def _trainer(model, backend, **kwargs):
    return pf.Trainer(model, backend=backend, metrics=(), **kwargs)


def test_initial_weights_are_bitwise_identical_on_every_backend(all_backends, digits):
    model = seed_cnn(digits.input_shape)
    canonical = model.init_weights(123)
    for name in all_backends:
        weights = _trainer(model, name, seed=123).get_weights()
        assert list(weights) == list(canonical)
        for key in canonical:
            assert weights[key].dtype == np.float32
            np.testing.assert_array_equal(weights[key], canonical[key], err_msg=f"{name} {key}")


CHANNEL_SOFTMAX = pf.Sequential([
    pf.Conv2D(3, 3, padding="same", activation="softmax"),  # softmax over channels of an image
    pf.Activation("softmax"),
    pf.Flatten(),
    pf.Dense(4),
], input_shape=(5, 6, 2))


@pytest.mark.parametrize("model", [TRICKY, CHANNEL_SOFTMAX, pf.Sequential(
    [pf.Flatten(), pf.Dense(6, activation="tanh"), pf.Dense(3)], input_shape=(4, 3, 2))],
    ids=["conv-same-pool-flatten", "softmax-over-channels", "mlp"])
def test_forward_matches_float64_reference(backend, model):
    x = np.random.default_rng(0).normal(size=(6, *model.input_shape)).astype(np.float32)
    expected = ReferenceModel(model, model.init_weights(5)).forward(x)
    got = _trainer(model, backend, seed=5).predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_seed_cnn_forward_on_real_digits(backend, digits):
    model = seed_cnn(digits.input_shape)
    x = digits.x_test[:64]
    expected = ReferenceModel(model, model.init_weights(0)).forward(x)
    np.testing.assert_allclose(_trainer(model, backend).predict(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [pf.SparseCategoricalCrossentropy(from_logits=False), pf.MeanSquaredError()])
def test_one_sgd_step_applies_the_reference_gradient(backend, loss):
    model = TRICKY
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, *model.input_shape)).astype(np.float32)
    sparse = isinstance(loss, pf.SparseCategoricalCrossentropy)
    y = rng.integers(0, 5, 8) if sparse else rng.normal(size=(8, 5)).astype(np.float32)
    start = model.init_weights(9)
    ref_loss, grads, _ = ReferenceModel(model, start).loss_and_grads(x, y, loss)
    trainer = _trainer(model, backend, seed=9, loss=loss, optimizer=pf.SGD(learning_rate=1.0))
    history = trainer.fit(x, y, batch_size=8, shuffle=False, progress=False)
    assert history.step_losses[0] == pytest.approx(ref_loss, rel=1e-5)
    after = trainer.get_weights()
    for key, grad in grads.items():
        np.testing.assert_allclose(after[key], start[key] - grad, rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("optimizer", [pf.SGD(0.05, momentum=0.9), pf.Adam(0.01)], ids=["sgd-momentum", "adam"])
def test_optimizer_sequence_matches_reference(backend, optimizer):
    model = pf.Sequential([pf.Dense(4, activation="tanh"), pf.Dense(3)], input_shape=(5,))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    ref = ReferenceModel(model, model.init_weights(3))
    order = [i for e in range(5) for i in batch_indices(40, 8, seed=3, epoch=e, shuffle=True)]
    ReferenceOptimizer(optimizer).train(ref, ((x[i], y[i]) for i in order), pf.SparseCategoricalCrossentropy())
    trainer = _trainer(model, backend, seed=3, optimizer=optimizer)
    trainer.fit(x, y, epochs=5, batch_size=8, progress=False)
    for key, value in trainer.get_weights().items():
        np.testing.assert_allclose(value, ref.weights[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_100_step_losses_agree_across_backends_and_with_reference(all_backends, digits):
    """Issue #2, item 3: no dropout, same seed, real digits, batch 32, Adam(1e-3)."""
    model = seed_cnn(digits.input_shape)
    steps, batch = 100, 32
    curves = {}
    for name in all_backends:
        trainer = _trainer(model, name, seed=0, optimizer=pf.Adam(1e-3))
        epochs = -(-steps * batch // len(digits.x_train))
        curves[name] = np.array(trainer.fit(digits.x_train, digits.y_train, epochs=epochs,
                                            batch_size=batch, progress=False).step_losses[:steps])
    order = [i for e in range(epochs) for i in batch_indices(len(digits.x_train), batch, seed=0, epoch=e, shuffle=True)]
    ref = ReferenceModel(model, model.init_weights(0))
    reference = np.array(ReferenceOptimizer(pf.Adam(1e-3)).train(
        ref, ((digits.x_train[i], digits.y_train[i]) for i in order[:steps]), pf.SparseCategoricalCrossentropy()))
    assert reference[-1] < 0.5 * reference[0], "the reference run did not learn; the comparison would be vacuous"
    first = all_backends[0]
    for name in all_backends:
        assert max_relative(curves[name], curves[first]) < 1e-3, f"{name} vs {first}"
        assert max_relative(curves[name], reference) < 1e-3, f"{name} vs float64 reference"
