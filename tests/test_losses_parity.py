"""Every loss: value and gradient with respect to the model outputs, on every backend and in the
float64 reference; label checks before any framework runs.

How a backend's output gradient is read: the model is one bias-free Dense layer fed the identity
matrix, so its outputs are its kernel ``Z`` exactly and ``dL/dkernel = I^T dL/dZ = dL/dZ``. One
SGD step with learning rate ``LR`` gives ``dL/dZ = (Z - Z_after) / LR``; ``LR`` is large enough
that ``LR * dL/dZ`` dwarfs ``Z``, so float32 rounding of the subtraction costs about 1e-7
relative. Tolerances are the project's float32 ones: loss values rtol 1e-5 / atol 1e-6,
gradients rtol 1e-4 / atol 1e-6 (against the reference; so also between backends within twice
that).
"""

from __future__ import annotations

import numpy as np
import pytest

import polyframe as pf
from polyframe.errors import ConfigError, LabelError
from polyframe.reference import reference_loss

BATCH, WIDTH, LR = 6, 4, 1e4


def _outputs(kind: str, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(scale=2.0, size=(BATCH, WIDTH))
    if kind == "probabilities":
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    if kind == "sigmoid":
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return z.astype(np.float32)


def _targets(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "indices":
        return rng.integers(0, WIDTH, BATCH)
    if kind == "one_hot":
        return np.eye(WIDTH, dtype=np.float32)[rng.integers(0, WIDTH, BATCH)]
    if kind == "soft":
        p = rng.random((BATCH, WIDTH)) + 0.1
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    if kind == "binary":
        return rng.integers(0, 2, (BATCH, WIDTH)).astype(np.float32)
    return rng.normal(scale=1.5, size=(BATCH, WIDTH)).astype(np.float32)


CASES = {
    "cce-logits-indices": (pf.CategoricalCrossentropy(), "logits", "indices"),
    "cce-logits-one-hot": (pf.CategoricalCrossentropy(), "logits", "one_hot"),
    "cce-logits-soft": (pf.CategoricalCrossentropy(), "logits", "soft"),
    "cce-smoothing-indices": (pf.CategoricalCrossentropy(label_smoothing=0.2), "logits", "indices"),
    "cce-smoothing-one-hot": (pf.CategoricalCrossentropy(label_smoothing=0.2), "logits", "one_hot"),
    "cce-probabilities-smoothing": (pf.CategoricalCrossentropy(from_logits=False, label_smoothing=0.1),
                                    "probabilities", "one_hot"),
    "sparse-logits": (pf.SparseCategoricalCrossentropy(), "logits", "indices"),
    "sparse-smoothing": (pf.SparseCategoricalCrossentropy(label_smoothing=0.3), "logits", "indices"),
    "sparse-probabilities-smoothing": (pf.SparseCategoricalCrossentropy(from_logits=False, label_smoothing=0.1),
                                       "probabilities", "indices"),
    "bce-logits": (pf.BinaryCrossentropy(), "logits", "binary"),
    "bce-logits-soft": (pf.BinaryCrossentropy(), "logits", "soft"),
    "bce-probabilities": (pf.BinaryCrossentropy(from_logits=False), "sigmoid", "binary"),
    "mse": (pf.MeanSquaredError(), "logits", "regression"),
    "mae": (pf.MeanAbsoluteError(), "logits", "regression"),
    "huber": (pf.Huber(), "logits", "regression"),
    "huber-delta-0.5": (pf.Huber(delta=0.5), "logits", "regression"),
}


def _case(name: str) -> tuple[pf.losses.Loss, np.ndarray, np.ndarray]:
    loss, output_kind, target_kind = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    return loss, _outputs(output_kind, rng), _targets(target_kind, rng)


IDENTITY = pf.Sequential([pf.Dense(WIDTH, use_bias=False)], input_shape=(BATCH,))
KERNEL = next(iter(IDENTITY.init_weights(0)))


def _backend_loss_and_grad(backend: str, loss: pf.losses.Loss, z: np.ndarray,
                           y: np.ndarray) -> tuple[float, np.ndarray]:
    trainer = pf.Trainer(IDENTITY, backend=backend, loss=loss, metrics=(),
                         optimizer=pf.SGD(learning_rate=LR))
    trainer.set_weights({KERNEL: z})
    np.testing.assert_array_equal(trainer.predict(np.eye(BATCH, dtype=np.float32)), z)
    history = trainer.fit(np.eye(BATCH, dtype=np.float32), y, batch_size=BATCH, shuffle=False,
                          progress=False)
    after = trainer.get_weights()[KERNEL].astype(np.float64)
    return history.step_losses[0], (z.astype(np.float64) - after) / LR


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_value_and_output_gradient_match_reference(backend, name):
    loss, z, y = _case(name)
    expected, expected_grad = reference_loss(loss, z, y)
    value, grad = _backend_loss_and_grad(backend, loss, z, y)
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_loss_gradient_matches_finite_differences(name):
    loss, z, y = _case(name)
    z = z.astype(np.float64)
    _, grad = reference_loss(loss, z, y)
    numeric = np.empty_like(z)
    for index in np.ndindex(z.shape):
        step = np.zeros_like(z)
        step[index] = 1e-7
        numeric[index] = (reference_loss(loss, z + step, y)[0] - reference_loss(loss, z - step, y)[0]) / 2e-7
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_reference_cross_entropy_forms_agree_and_smoothing_is_the_documented_mix():
    rng = np.random.default_rng(7)
    z, labels = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    one_hot = np.eye(3)[labels]
    plain = reference_loss(pf.SparseCategoricalCrossentropy(), z, labels)
    for loss, y in [(pf.CategoricalCrossentropy(), labels), (pf.CategoricalCrossentropy(), one_hot)]:
        value, grad = reference_loss(loss, z, y)
        assert value == pytest.approx(plain[0], rel=1e-12)
        np.testing.assert_allclose(grad, plain[1], rtol=1e-12)
    s = 0.3
    log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    uniform = float(np.mean(-log_q.mean(axis=1)))
    smoothed = reference_loss(pf.CategoricalCrossentropy(label_smoothing=s), z, labels)[0]
    assert smoothed == pytest.approx((1 - s) * plain[0] + s * uniform, rel=1e-12)
    assert smoothed == pytest.approx(reference_loss(pf.SparseCategoricalCrossentropy(label_smoothing=s), z, labels)[0])


def test_huber_covers_both_branches_and_bce_matches_the_naive_form():
    _, z, y = _case("huber")
    assert np.any(np.abs(z - y) <= 1.0) and np.any(np.abs(z - y) > 1.0)
    loss, z, y = _case("bce-logits")
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    naive = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    assert reference_loss(loss, z, y)[0] == pytest.approx(naive, rel=1e-9)


def test_one_hot_and_integer_labels_train_identically(backend):
    _, z, _ = _case("cce-logits-indices")
    labels = np.random.default_rng(3).integers(0, WIDTH, BATCH)
    from_indices = _backend_loss_and_grad(backend, pf.CategoricalCrossentropy(), z, labels)
    from_one_hot = _backend_loss_and_grad(backend, pf.CategoricalCrossentropy(), z, np.eye(WIDTH)[labels])
    assert from_indices[0] == pytest.approx(from_one_hot[0], rel=1e-6)
    np.testing.assert_allclose(from_indices[1], from_one_hot[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make, message", [
    (lambda: pf.CategoricalCrossentropy(label_smoothing=-0.1), "label_smoothing"),
    (lambda: pf.CategoricalCrossentropy(label_smoothing=1.0), "label_smoothing"),
    (lambda: pf.SparseCategoricalCrossentropy(label_smoothing=-0.5), "label_smoothing"),
    (lambda: pf.Huber(delta=0.0), "delta"),
    (lambda: pf.BinaryCrossentropy(from_logits="yes"), "from_logits"),
    (lambda: pf.losses.get_loss("cross_entropy"), "unknown loss"),
])
def test_bad_loss_settings_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("loss, y, message", [
    (pf.CategoricalCrossentropy(), np.eye(5)[[0, 1]], "one column per model output"),
    (pf.CategoricalCrossentropy(), np.array([[0.5, 0.6, 0, 0], [1, 0, 0, 0]]), "sum to 1"),
    (pf.CategoricalCrossentropy(), np.array([[2.0, -1, 0, 0], [1, 0, 0, 0]]), r"lie in \[0, 1\]"),
    (pf.CategoricalCrossentropy(), np.array([0, 4]), r"in \[0, 4\)"),
    (pf.SparseCategoricalCrossentropy(), np.eye(4)[[0, 1]], "1-D array of class indices"),
    (pf.BinaryCrossentropy(), np.array([[0, 1, 2, 0], [1, 0, 0, 1]]), r"in \[0, 1\]"),
    (pf.BinaryCrossentropy(), np.zeros((2, 3)), "like the model output"),
    (pf.MeanAbsoluteError(), np.array([[0, np.nan, 0, 0], [0, 0, 0, 0]]), "NaN"),
])
def test_bad_labels_raise_label_error(loss, y, message):
    with pytest.raises(LabelError, match=message):
        loss.check_targets(y, (WIDTH,))


def test_cross_entropy_needs_several_classes_and_names_resolve():
    with pytest.raises(LabelError, match="at least 2 classes"):
        pf.CategoricalCrossentropy().check_targets(np.zeros(3, int), (1,))
    for name, cls in [("categorical_crossentropy", pf.CategoricalCrossentropy),
                      ("sparse_categorical_crossentropy", pf.SparseCategoricalCrossentropy),
                      ("binary_crossentropy", pf.BinaryCrossentropy), ("mae", pf.MeanAbsoluteError),
                      ("mean_absolute_error", pf.MeanAbsoluteError), ("huber", pf.Huber),
                      ("mse", pf.MeanSquaredError)]:
        assert type(pf.losses.get_loss(name)) is cls


def test_bad_labels_stop_fit_before_any_update(backend):
    trainer = pf.Trainer(IDENTITY, backend=backend, loss=pf.BinaryCrossentropy(), metrics=())
    before = trainer.get_weights()
    with pytest.raises(LabelError):
        trainer.fit(np.eye(BATCH, dtype=np.float32), np.full((BATCH, WIDTH), 1.5), progress=False)
    np.testing.assert_array_equal(trainer.get_weights()[KERNEL], before[KERNEL])
