"""Torch-specific layout handling: NCHW inside, canonical outside."""

import numpy as np
import pytest

import polyframe as pf
from polyframe.reference import ReferenceModel

torch = pytest.importorskip("torch")


def _predict(model, x, seed=0):
    return pf.Trainer(model, backend="torch", seed=seed, metrics=()).predict(x)


@pytest.mark.parametrize("layers", [
    [pf.Conv2D(3, 2), pf.Flatten(), pf.Dropout(0.5), pf.Activation("tanh"), pf.Dense(4)],  # rows permuted
    [pf.Conv2D(3, 2), pf.Flatten()],                                                       # activations permuted
    [pf.Conv2D(3, 2), pf.Flatten(), pf.Activation("relu")],
    [pf.Conv2D(3, 2, strides=2, padding="same")],                                          # NHWC output
], ids=["flatten-dense", "flatten-output", "flatten-activation-output", "conv-output"])
def test_outputs_are_in_canonical_layout(layers):
    model = pf.Sequential(layers, input_shape=(5, 4, 2))
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 2)).astype(np.float32)
    expected = ReferenceModel(model, model.init_weights(0)).forward(x)
    np.testing.assert_allclose(_predict(model, x), expected, rtol=1e-5, atol=1e-6)


def test_inputs_are_converted_to_nchw_once_per_dataset():
    model = pf.Sequential([pf.Conv2D(2, 1)], input_shape=(3, 4, 2))
    executable = pf.Trainer(model, backend="torch").executable
    x = np.arange(24, dtype=np.float32).reshape(1, 3, 4, 2)
    native = executable.prepare_inputs(x)
    assert native.shape == (1, 2, 3, 4) and native.flags.c_contiguous
    np.testing.assert_array_equal(native[0, 1], x[0, :, :, 1])


def test_dense_rows_after_flatten_round_trip_through_native_storage():
    model = pf.Sequential([pf.Conv2D(3, 2), pf.Flatten(), pf.Dense(4)], input_shape=(4, 4, 1))
    trainer = pf.Trainer(model, backend="torch", seed=3)
    native = trainer.executable.module.blocks[2].weight.detach().numpy()  # nn.Linear after Flatten
    canonical = model.init_weights(3)["dense.kernel"]
    assert not np.array_equal(native.T, canonical)  # stored permuted ...
    np.testing.assert_array_equal(trainer.get_weights()["dense.kernel"], canonical)  # ... exported canonical
    changed = {k: v + 1.0 for k, v in trainer.get_weights().items()}
    trainer.set_weights(changed)
    for key, value in trainer.get_weights().items():
        np.testing.assert_array_equal(value, changed[key])
