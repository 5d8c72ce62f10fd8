"""Layer specs, shape inference and canonical initial weights (no framework involved)."""

import numpy as np
import pytest

import polyframe as pf
from polyframe.layers import same_padding, window_output_size


@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_padding_covers_every_output_and_puts_the_odd_pixel_last(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    out = window_output_size(size, kernel, stride, "same")
    assert out == -(-size // stride)
    assert 0 <= after - before <= 1
    # the last window must end exactly at the padded edge (or inside it when no padding is needed)
    assert (out - 1) * stride + kernel <= size + before + after
    assert before + after == max((out - 1) * stride + kernel - size, 0)


def test_seed_cnn_shapes_and_parameter_count():
    model = pf.Sequential([pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                           pf.Dense(128, activation="relu"), pf.Dense(10)], input_shape=(28, 28, 1))
    assert [n.output_shape for n in model.nodes] == [(26, 26, 32), (13, 13, 32), (5408,), (128,), (10,)]
    assert model.count_params() == (9 * 32 + 32) + (5408 * 128 + 128) + (128 * 10 + 10)
    assert [k for k, _ in model.param_specs()] == [
        "conv2d.kernel", "conv2d.bias", "dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias"]


def test_strided_same_conv_and_pool_shapes():
    model = pf.Sequential([pf.Conv2D(4, (4, 2), strides=2, padding="same"),
                           pf.MaxPool2D(3, strides=2, padding="same")], input_shape=(9, 7, 3))
    assert model.nodes[0].output_shape == (5, 4, 4)
    assert model.output_shape == (3, 2, 4)


def test_dense_fed_a_4d_tensor_names_the_layer_and_both_shapes():
    with pytest.raises(pf.ShapeError) as info:
        pf.Sequential([pf.Conv2D(8, 3), pf.Dense(10, name="head")], input_shape=(8, 8, 1))
    message = str(info.value)
    assert "'head'" in message and "(batch, 6, 6, 8)" in message and "2-D input" in message
    assert "Flatten" in message


def test_conv_fed_a_flat_tensor_is_a_shape_error():
    with pytest.raises(pf.ShapeError, match="4-D input"):
        pf.Sequential([pf.Conv2D(8, 3)], input_shape=(64,))


def test_valid_kernel_larger_than_input_is_a_shape_error():
    with pytest.raises(pf.ShapeError, match="padding='same'"):
        pf.Sequential([pf.Conv2D(8, 5)], input_shape=(4, 4, 1))


@pytest.mark.parametrize("make", [
    lambda: pf.Dense(0), lambda: pf.Dense(3, activation="swishy"), lambda: pf.Conv2D(4, 0),
    lambda: pf.Conv2D(4, 3, padding="full"), lambda: pf.Dropout(1.0), lambda: pf.MaxPool2D((2, 2, 2)),
    lambda: pf.Sequential([], input_shape=(3,)), lambda: pf.Sequential([pf.Dense(2)], input_shape=(0,)),
    lambda: pf.Sequential(["dense"], input_shape=(3,)), lambda: pf.Adam(learning_rate=-1.0),
    lambda: pf.SGD(momentum=1.5), lambda: pf.Dense(True), lambda: pf.Adam("0.01"),
    lambda: pf.SGD(1e39), lambda: pf.Conv2D(2, None), lambda: pf.Dropout("0.5"),
    lambda: pf.Adam(epsilon=float("inf")), lambda: pf.SparseCategoricalCrossentropy(from_logits="no"),
    lambda: pf.Dense(3, use_bias="no"), lambda: pf.Sequential(pf.Dense(2), input_shape=(3,)),
    lambda: pf.Sequential([pf.Dense(2)], input_shape="881"),
    lambda: pf.Sequential([pf.Dense(2)], input_shape=(8.7, 3)),
])
def test_invalid_specs_raise_config_errors(make):
    with pytest.raises(pf.ConfigError):
        make()


def test_duplicate_layer_names_are_rejected():
    with pytest.raises(pf.ConfigError, match="unique"):
        pf.Sequential([pf.Dense(2, name="a"), pf.Dense(2, name="a")], input_shape=(3,))


def test_initial_weights_depend_only_on_the_seed():
    model = pf.Sequential([pf.Conv2D(8, 3), pf.Flatten(), pf.Dense(5)], input_shape=(6, 6, 2))
    first, again, other = model.init_weights(7), model.init_weights(7), model.init_weights(8)
    for key in first:
        assert first[key].dtype == np.float32
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["conv2d.kernel"], other["conv2d.kernel"])


def test_glorot_uniform_limits_and_zero_biases():
    model = pf.Sequential([pf.Conv2D(64, 3), pf.Flatten(), pf.Dense(300)], input_shape=(5, 5, 16))
    weights = model.init_weights(0)
    conv_limit = np.sqrt(6.0 / (9 * 16 + 9 * 64))
    dense_limit = np.sqrt(6.0 / (3 * 3 * 64 + 300))
    for key, limit in (("conv2d.kernel", conv_limit), ("dense.kernel", dense_limit)):
        w = weights[key]
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.98 * limit  # thousands of draws reach close to the edge
        assert abs(float(w.std()) - limit / np.sqrt(3)) < 0.03 * limit  # std of U(-l, l)
    assert not weights["conv2d.bias"].any() and not weights["dense.bias"].any()


def test_check_weights_rejects_wrong_keys_and_shapes():
    model = pf.Sequential([pf.Dense(3)], input_shape=(4,))
    weights = model.init_weights(0)
    with pytest.raises(pf.ConfigError, match="missing"):
        model.check_weights({"dense.kernel": weights["dense.kernel"]})
    with pytest.raises(pf.ShapeError, match="dense.kernel"):
        model.check_weights({**weights, "dense.kernel": np.zeros((3, 4))})


def test_numpy_integers_are_accepted_where_ints_are():
    assert pf.Dense(np.int64(10)).units == 10
    assert pf.Conv2D(np.int32(4), (np.int64(3), 3)).kernel_size == (3, 3)
