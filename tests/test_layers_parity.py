"""Issue #3: the newer activations and layers compute the canonical semantics on every backend.

Each model runs on every backend against the float64 reference: forward outputs at rtol 1e-5 /
atol 1e-6, one SGD(lr=1) step (so the update is the gradient) at atol 1e-6. The reference's own
gradients are checked against central finite differences. Then the cases where frameworks'
defaults diverge: AvgPool "same" borders, Conv1D and dilated Conv2D "same" with stride 2 and an
even kernel, which channels each Conv2D group reads, channel-wise (log_)softmax on image and
sequence tensors, and BatchNorm's moving statistics.
"""

import numpy as np
import pytest

import polyframe as pf
from polyframe.activations import LEAKY_RELU_SLOPE
from polyframe.reference import ReferenceModel, ReferenceOptimizer

from conftest import check_reference_gradients, mse_trainer, regression_data

NEW_ACTIVATIONS = ("gelu", "silu", "leaky_relu", "softplus", "log_softmax")

MODELS = {
    **{act: pf.Sequential([pf.Dense(6, activation=act), pf.Dense(3)], input_shape=(4,))
       for act in NEW_ACTIVATIONS},
    "avg-pool": pf.Sequential([
        pf.Conv2D(3, 2, padding="same", activation="tanh"),
        pf.AvgPool2D(2),
        pf.AvgPool2D(3, strides=2, padding="same"),                   # partial border windows
        pf.Flatten(),
        pf.Dense(3),
    ], input_shape=(10, 7, 2)),
    "global-avg-pool": pf.Sequential([pf.Conv2D(3, 2), pf.GlobalAvgPool2D(), pf.Dense(3)],
                                     input_shape=(5, 4, 2)),
    "global-max-pool": pf.Sequential([pf.Conv2D(3, 2), pf.GlobalMaxPool2D(), pf.Dense(3)],
                                     input_shape=(5, 4, 2)),
    "conv1d": pf.Sequential([
        pf.Conv1D(4, 4, strides=2, padding="same", activation="tanh"),  # even kernel, stride 2
        pf.Conv1D(3, 3, dilation=2, padding="same", activation="softmax"),
        pf.Conv1D(2, 2, strides=2, dilation=2),
        pf.Flatten(),                                                   # channel-last order
        pf.Dense(3),
    ], input_shape=(11, 2)),
    "reshape": pf.Sequential([
        pf.Conv2D(4, 2), pf.Reshape((-1, 4)),                         # image -> sequence
        pf.Conv1D(3, 2), pf.Reshape((5, 1, 3)),                       # sequence -> image
        pf.Conv2D(2, 2, padding="same"), pf.Reshape((10,)),           # image -> vector
        pf.Dense(3),
    ], input_shape=(4, 3, 2)),
    "reshape-to-image-output": pf.Sequential([
        pf.Dense(24), pf.Reshape((2, 4, 3)), pf.Conv2D(2, 2, padding="same", activation="softmax"),
    ], input_shape=(5,)),
    "batch-norm-features": pf.Sequential([
        pf.Dense(5), pf.BatchNorm(), pf.Activation("relu"), pf.Dense(3), pf.BatchNorm(momentum=0.9),
    ], input_shape=(4,)),
    "batch-norm-image": pf.Sequential([
        pf.Conv2D(3, 2), pf.BatchNorm(epsilon=1e-5), pf.Flatten(), pf.Dense(3),
    ], input_shape=(5, 4, 2)),
    "conv2d-dilated-grouped": pf.Sequential([
        pf.Conv2D(6, 4, strides=2, padding="same", dilation=2, groups=2,    # even kernel, stride 2
                  activation="tanh"),
        pf.Conv2D(4, (2, 3), dilation=(2, 1), groups=2, padding="same"),
        pf.Conv2D(4, 3, groups=4),                                            # depthwise
        pf.Flatten(),
        pf.Dense(3),
    ], input_shape=(9, 8, 4)),
}

MSE = pf.MeanSquaredError()


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_one_sgd_step_match_the_reference(backend, name):
    model = MODELS[name]
    x, y = regression_data(model, 6)
    start = model.init_weights(4)
    ref = ReferenceModel(model, start)
    trainer = mse_trainer(model, backend, seed=4, optimizer=pf.SGD(learning_rate=1.0))
    np.testing.assert_allclose(trainer.predict(x), ref.forward(x), rtol=1e-5, atol=1e-6)

    ref_loss, grads, _ = ref.loss_and_grads(x, y, MSE, update_state=True)
    history = trainer.fit(x, y, batch_size=len(x), shuffle=False, progress=False)
    assert history.step_losses[0] == pytest.approx(ref_loss, rel=1e-5)
    after = trainer.get_weights()
    assert list(after) == list(start)
    for key, value in after.items():
        expected = start[key] - grads[key] if key in grads else ref.weights[key]
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_gradients_match_finite_differences(name):
    model = MODELS[name]
    rng = np.random.default_rng(1)
    x, y = (a.astype(np.float64) for a in regression_data(model, n=3, seed=1))
    weights = {k: v + rng.normal(0, 0.1, v.shape) for k, v in model.init_weights(2).items()}
    ref = ReferenceModel(model, weights)
    grads = check_reference_gradients(ref, x, y, MSE, rng, samples=4)
    assert set(grads) == {k for k, s in model.param_specs() if s.trainable}


def test_activation_formulas_at_known_points():
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    ref = {a: ReferenceModel(pf.Sequential([pf.Activation(a)], input_shape=(4,)), {}).forward(x)
           for a in NEW_ACTIVATIONS}
    np.testing.assert_allclose(ref["gelu"], [[-0.04550026, -0.15426877, 0.34573123, 2.99595031]], atol=1e-8)
    np.testing.assert_allclose(ref["silu"], x / (1 + np.exp(-x)))
    np.testing.assert_allclose(ref["leaky_relu"], [[-2 * LEAKY_RELU_SLOPE, -0.5 * LEAKY_RELU_SLOPE, 0.5, 3.0]])
    np.testing.assert_allclose(ref["softplus"], np.log1p(np.exp(x)))
    np.testing.assert_allclose(ref["log_softmax"], x - np.log(np.exp(x).sum()))
    assert LEAKY_RELU_SLOPE == 0.01


# -- where frameworks' own rules diverge --------------------------------------------------------
def test_avg_pool_same_excludes_padding_from_the_count(backend):
    model = pf.Sequential([pf.Conv2D(1, 1, use_bias=False), pf.AvgPool2D(2, strides=2, padding="same")],
                          input_shape=(3, 3, 1))
    trainer = mse_trainer(model, backend)
    trainer.set_weights({"conv2d.kernel": np.ones((1, 1, 1, 1))})
    x = np.arange(18, dtype=np.float32).reshape(2, 3, 3, 1)
    out = trainer.predict(x)[..., 0]
    img = x[..., 0]
    expected = np.stack([
        [img[:, :2, :2].mean((1, 2)), img[:, :2, 2].mean(1)],
        [img[:, 2, :2].mean(1), img[:, 2, 2]],                        # one real element: itself
    ]).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_conv1d_same_with_stride_2_and_even_kernel_pads_the_odd_element_at_the_end(backend):
    model = pf.Sequential([pf.Conv1D(1, 4, strides=2, padding="same", use_bias=False)],
                          input_shape=(7, 1))
    trainer = mse_trainer(model, backend)
    trainer.set_weights({"conv1d.kernel": np.array([1.0, 10.0, 100.0, 1000.0]).reshape(4, 1, 1)})
    x = np.arange(1, 8, dtype=np.float32).reshape(1, 7, 1)
    padded = np.concatenate([[0.0], x.ravel(), [0.0, 0.0]])           # total 3: 1 before, 2 after
    expected = [padded[2 * t:2 * t + 4] @ [1.0, 10.0, 100.0, 1000.0] for t in range(4)]
    np.testing.assert_allclose(trainer.predict(x)[0, :, 0], expected, rtol=1e-6)


def test_conv2d_same_with_dilation_stride_2_and_even_kernel_pads_the_extra_at_the_end(backend):
    model = pf.Sequential([pf.Conv2D(1, (1, 4), strides=(1, 2), padding="same", dilation=(1, 2),
                                     use_bias=False)], input_shape=(1, 8, 1))
    taps = np.array([1.0, 10.0, 100.0, 1000.0])
    trainer = mse_trainer(model, backend)
    trainer.set_weights({"conv2d.kernel": taps.reshape(1, 4, 1, 1)})
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 8, 1)
    padded = np.concatenate([[0.0] * 2, x.ravel(), [0.0] * 3])      # span 7, total 5: 2 before, 3 after
    expected = [padded[2 * t:2 * t + 7:2] @ taps for t in range(4)]
    np.testing.assert_allclose(trainer.predict(x)[0, 0, :, 0], expected, rtol=1e-6)


def test_conv2d_groups_read_contiguous_channel_slices(backend):
    model = pf.Sequential([pf.Conv2D(4, 1, groups=2, use_bias=False)], input_shape=(2, 3, 2))
    trainer = mse_trainer(model, backend)
    trainer.set_weights({"conv2d.kernel": np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)})
    x = np.random.default_rng(0).normal(size=(2, 2, 3, 2)).astype(np.float32)
    c0, c1 = x[..., 0], x[..., 1]                                   # filters 0-1 see channel 0 only
    expected = np.stack([c0, 2 * c0, 3 * c1, 4 * c1], axis=-1)
    np.testing.assert_allclose(trainer.predict(x), expected, rtol=1e-6)


@pytest.mark.parametrize("model", [
    pf.Sequential([pf.Conv2D(3, 1, activation="log_softmax"), pf.Activation("softmax")],
                  input_shape=(4, 5, 2)),
    pf.Sequential([pf.Conv1D(3, 2, activation="softmax"), pf.Activation("log_softmax")],
                  input_shape=(6, 2)),
], ids=["image", "sequence"])
def test_softmax_and_log_softmax_run_over_the_channels(backend, model):
    x, _ = regression_data(model, n=3)
    out = mse_trainer(model, backend, seed=2).predict(x)
    np.testing.assert_allclose(out, ReferenceModel(model, model.init_weights(2)).forward(x),
                               rtol=1e-5, atol=1e-6)
    normalised = np.exp(out) if model.layers[1].activation == "log_softmax" else out
    np.testing.assert_allclose(normalised.sum(axis=-1), 1.0, rtol=1e-6)


# -- BatchNorm ----------------------------------------------------------------------------------
BN = MODELS["batch-norm-image"]


def test_batch_norm_uses_batch_statistics_in_training_and_moving_ones_in_inference(backend):
    x, y = regression_data(BN, n=8, seed=3)
    weights = BN.init_weights(0)
    weights["batch_norm.moving_mean"] = np.array([0.3, -0.2, 0.1], np.float32)
    weights["batch_norm.moving_variance"] = np.array([2.0, 0.5, 1.5], np.float32)
    ref = ReferenceModel(BN, weights)
    trainer = mse_trainer(BN, backend, optimizer=pf.SGD(1e-9))
    trainer.set_weights(weights)
    native = trainer.executable.prepare_inputs(x)
    inference = trainer.executable.predict(native)
    training = trainer.executable.train_step(native, y).outputs
    np.testing.assert_allclose(inference, ref.forward(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(training, ref.forward(x, training=True), rtol=1e-5, atol=1e-6)
    assert np.abs(training - inference).max() > 1e-2


def test_batch_norm_moving_statistics_after_3_steps_match_the_reference(backend):
    x, y = regression_data(BN, n=24, seed=5)
    ref = ReferenceModel(BN, BN.init_weights(7))
    ReferenceOptimizer(pf.SGD(0.1, momentum=0.5)).train(
        ref, ((x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)), MSE)
    trainer = mse_trainer(BN, backend, seed=7, optimizer=pf.SGD(0.1, momentum=0.5))
    trainer.fit(x, y, batch_size=8, shuffle=False, progress=False)
    after = trainer.get_weights()
    for key in ("batch_norm.moving_mean", "batch_norm.moving_variance"):
        assert not np.allclose(after[key], BN.init_weights(7)[key])
    for key, value in after.items():
        np.testing.assert_allclose(value, ref.weights[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_batch_norm_state_is_non_trainable_and_round_trips(backend):
    specs = dict(BN.param_specs())
    assert [k for k, s in specs.items() if not s.trainable] == [
        "batch_norm.moving_mean", "batch_norm.moving_variance"]
    init = BN.init_weights(0)
    np.testing.assert_array_equal(init["batch_norm.moving_variance"], 1.0)
    np.testing.assert_array_equal(init["batch_norm.gamma"], 1.0)
    trainer = mse_trainer(BN, backend)
    changed = {k: v + 0.5 for k, v in trainer.get_weights().items()}
    trainer.set_weights(changed)
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(value, changed[key], err_msg=key)


# -- shapes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, input_shape, needle", [
    (pf.AvgPool2D(2), (4, 3), "(batch, 4, 3)"),
    (pf.GlobalAvgPool2D(name="gap"), (8,), "'gap'"),
    (pf.GlobalMaxPool2D(), (8,), "GlobalMaxPool2D"),
    (pf.Conv1D(2, 5, dilation=2), (8, 1), "(batch, 8, 1)"),
    (pf.Conv1D(2, 3), (8, 4, 1), "(batch, length, channels)"),
    (pf.Reshape((5, 3)), (4, 4), "16 elements"),
    (pf.Reshape((-1, 3)), (4, 4), "(batch, -1, 3)"),
    (pf.Conv2D(4, 3, groups=2), (6, 6, 3), "divisible by groups=2"),
    (pf.Conv2D(2, 3, dilation=3), (6, 6, 1), "height >= 7"),
])
def test_shape_errors_name_the_layer_and_the_shapes(layer, input_shape, needle):
    with pytest.raises(pf.ShapeError, match=type(layer).__name__) as caught:
        pf.Sequential([layer], input_shape=input_shape)
    assert needle in str(caught.value)


def test_output_shapes():
    assert pf.Sequential([pf.Conv1D(4, 4, strides=2, padding="same")], input_shape=(7, 2)).output_shape == (4, 4)
    assert pf.Sequential([pf.Conv1D(4, 3, dilation=2)], input_shape=(7, 2)).output_shape == (3, 4)
    assert pf.Sequential([pf.AvgPool2D(3, strides=2, padding="same")], input_shape=(7, 4, 2)).output_shape == (4, 2, 2)
    assert pf.Sequential([pf.Reshape((-1, 2))], input_shape=(3, 4)).output_shape == (6, 2)
    assert pf.Sequential([pf.GlobalMaxPool2D()], input_shape=(3, 4, 5)).output_shape == (5,)
    assert pf.Sequential([pf.Conv2D(4, 3, dilation=(2, 1))], input_shape=(7, 7, 2)).output_shape == (3, 5, 4)
    assert pf.Sequential([pf.Conv2D(4, 4, strides=2, padding="same", dilation=2, groups=2)],
                         input_shape=(9, 8, 2)).output_shape == (5, 4, 4)
    assert dict(pf.Sequential([pf.Conv2D(6, 3, groups=3)], input_shape=(5, 5, 3)).param_specs()
                )["conv2d.kernel"].shape == (3, 3, 1, 6)
