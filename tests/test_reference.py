"""The float64 reference is itself checked against central finite differences."""

import numpy as np
import pytest

import polyframe as pf
import polyframe.reference
from polyframe.reference import ReferenceModel, ReferenceOptimizer

MODEL = pf.Sequential([
    pf.Conv2D(3, 4, strides=2, padding="same", activation="tanh"),
    pf.MaxPool2D(3, strides=2, padding="same"),
    pf.Flatten(),
    pf.Dense(5, activation="sigmoid"),
    pf.Dense(4, activation="softmax"),
], input_shape=(9, 7, 2))


@pytest.mark.parametrize("loss", [pf.SparseCategoricalCrossentropy(from_logits=False), pf.MeanSquaredError()])
def test_reference_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 9, 7, 2))
    y = np.array([0, 3, 1]) if isinstance(loss, pf.SparseCategoricalCrossentropy) else rng.normal(size=(3, 4))
    ref = ReferenceModel(MODEL, MODEL.init_weights(2))
    _, grads, grad_x = ref.loss_and_grads(x, y, loss)
    eps = 1e-6
    for key in grads:
        flat = ref.weights[key].reshape(-1)
        for i in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            flat[i] += eps
            plus = ref.loss_and_grads(x, y, loss)[0]
            flat[i] -= 2 * eps
            minus = ref.loss_and_grads(x, y, loss)[0]
            flat[i] += eps
            assert grads[key].reshape(-1)[i] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)
    probe = (1, 4, 3, 1)
    xp, xm = x.copy(), x.copy()
    xp[probe] += eps
    xm[probe] -= eps
    numeric = (ref.loss_and_grads(xp, y, loss)[0] - ref.loss_and_grads(xm, y, loss)[0]) / (2 * eps)
    assert grad_x[probe] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_reference_logit_cross_entropy_matches_its_definition():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    value, _ = pf.reference.reference_loss(pf.SparseCategoricalCrossentropy(), logits, np.array([2, 1]))
    expected = np.mean([np.log(np.exp(logits[0]).sum()) - 3.0, np.log(3.0)])
    assert value == pytest.approx(expected, rel=1e-12)


def test_reference_adam_bias_correction_makes_the_first_step_lr_sized():
    weights = {"w": np.array([1.0, -2.0])}
    opt = ReferenceOptimizer(pf.Adam(learning_rate=0.1, epsilon=1e-8))
    opt.update(weights, {"w": np.array([0.5, -3.0])})
    # step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)
    np.testing.assert_allclose(weights["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 3.0 / (3.0 + 1e-8)])
