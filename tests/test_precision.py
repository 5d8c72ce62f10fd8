"""Mixed precision: the option's checks, float32 master weights, fp16 loss scaling, and bf16-mixed
training reaching the float32 run's accuracy on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

import polyframe as pf
from polyframe.errors import ConfigError

from conftest import require, seed_cnn

BF16_ACCURACY_TOLERANCE = 0.02
"""bf16-mixed test accuracy may be at most this far (absolute) from the float32 run's."""


@pytest.mark.parametrize("backend, precision", [("tensorflow", "fp16-mixed"), ("jax", "fp16-mixed")])
def test_a_precision_the_backend_lacks_is_refused_before_building(backend, precision):
    require(backend)
    with pytest.raises(ConfigError, match="not supported on the"):
        pf.Trainer(seed_cnn((8, 8, 1)), backend=backend, precision=precision)


@pytest.mark.parametrize("backend, precision", [("torch", "bf16-mixed"), ("torch", "fp16-mixed"),
                                                ("jax", "bf16-mixed"), ("tensorflow", "bf16-mixed")])
def test_mixed_precision_keeps_float32_weights_and_learns(backend, precision, digits):
    require(backend)
    trainer = pf.Trainer(seed_cnn(digits.input_shape), backend=backend, precision=precision,
                         optimizer=pf.Adam(1e-3), seed=0)
    history = trainer.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, progress=False)
    assert all(w.dtype == np.float32 for w in trainer.get_weights().values())
    assert np.isfinite(history.step_losses).all()
    assert history.step_losses[-1] < 0.5 * history.step_losses[0]
    reference = pf.Trainer(seed_cnn(digits.input_shape), backend=backend, optimizer=pf.Adam(1e-3), seed=0)
    first = reference.fit(digits.x_train[:32], digits.y_train[:32], epochs=1, batch_size=32,
                          shuffle=False, progress=False).step_losses[0]
    half = pf.Trainer(seed_cnn(digits.input_shape), backend=backend, precision=precision,
                      optimizer=pf.Adam(1e-3), seed=0)
    assert half.fit(digits.x_train[:32], digits.y_train[:32], epochs=1, batch_size=32, shuffle=False,
                    progress=False).step_losses[0] == pytest.approx(first, rel=2e-2)


def test_fp16_loss_scale_halves_and_skips_a_step_with_overflowing_gradients():
    require("torch")
    import torch

    from polyframe_torch._precision import Precision
    from polyframe_torch._training import ClippedScheduledOptimizer

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = ClippedScheduledOptimizer(pf.SGD(0.1), [weight])
    scaler = Precision("fp16-mixed")
    start = scaler.scale
    scaler.backward_and_step((weight * 1e38).sum(), optimizer)
    assert scaler.scale == start / 2 and torch.equal(weight.detach(), torch.ones(3))
    optimizer.zero_grad()
    scaler.backward_and_step(weight.sum(), optimizer)
    assert torch.allclose(weight.detach(), torch.full((3,), 0.9))


def _layer_zoo() -> list[tuple[str, pf.Model, np.ndarray, np.ndarray, pf.SparseCategoricalCrossentropy]]:
    """Small models over the layers whose bf16 path casts differently (BatchNorm, pooling, grouped
    and dilated convolution, recurrences, embedding ids above bfloat16's exact integers, attention,
    LayerNorm, a softmax head), with inputs and labels."""
    rng = np.random.default_rng(0)
    cnn = pf.Sequential([pf.Conv2D(8, 3, padding="same", strides=2), pf.BatchNorm(),
                         pf.AvgPool2D(2, padding="same"), pf.Conv2D(8, 3, dilation=2, groups=2, padding="same"),
                         pf.Flatten(), pf.Dropout(0.2), pf.Dense(10, activation="softmax")], input_shape=(9, 9, 2))
    recurrent = pf.Sequential([pf.Conv1D(6, 3, padding="same"), pf.LSTM(8, return_sequences=True),
                               pf.GRU(8), pf.Dense(3)], input_shape=(7, 4))
    tokens = pf.Input((6,), dtype="int32")
    h = pf.Embedding(300, 8)(tokens)
    h = pf.LayerNorm()(pf.TransformerEncoderBlock(num_heads=2, key_dim=4, ff_dim=16, causal=True, dropout=0.1)(h))
    transformer = pf.Model(tokens, pf.Dense(5)(pf.Flatten()(h)))
    return [("cnn", cnn, rng.normal(size=(16, 9, 9, 2)), rng.integers(0, 10, 16), pf.SparseCategoricalCrossentropy()),
            ("recurrent", recurrent, rng.normal(size=(16, 7, 4)), rng.integers(0, 3, 16),
             pf.SparseCategoricalCrossentropy(from_logits=True)),
            ("transformer", transformer, rng.integers(0, 300, (16, 6)).astype(np.float32), rng.integers(0, 5, 16),
             pf.SparseCategoricalCrossentropy(from_logits=True))]


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
@pytest.mark.parametrize("index", range(3), ids=["cnn", "recurrent", "transformer"])
def test_bf16_mixed_computes_every_layer_in_bfloat16_close_to_float32(backend, index):
    require(backend)
    _, model, x, y, loss = _layer_zoo()[index]
    runs = {}
    for precision in ("float32", "bf16-mixed"):
        trainer = pf.Trainer(model, backend=backend, precision=precision, loss=loss,
                             optimizer=pf.Adam(1e-3), seed=0)
        runs[precision] = (trainer.predict(x), trainer.evaluate(x, y)["loss"],
                           trainer.fit(x, y, epochs=2, batch_size=8, progress=False).step_losses, trainer)
    (full, full_loss, _, _), (half, half_loss, steps, trainer) = runs["float32"], runs["bf16-mixed"]
    assert half.dtype == np.float32 and all(w.dtype == np.float32 for w in trainer.get_weights().values())
    assert not np.array_equal(half, full), "bf16-mixed gave float32's exact outputs: nothing ran in bfloat16"
    assert half_loss == pytest.approx(full_loss, rel=2e-2)
    assert np.isfinite(steps).all()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_bf16_mixed_reaches_the_float32_accuracy_on_mnist(backend, mnist_dir):
    require(backend)
    data = pf.datasets.mnist(mnist_dir)
    accuracy = {}
    for precision in ("float32", "bf16-mixed"):
        trainer = pf.Trainer(seed_cnn(data.input_shape), backend=backend, precision=precision,
                             optimizer=pf.Adam(1e-3), seed=0)
        trainer.fit(data.x_train, data.y_train, epochs=2, batch_size=64, progress=False)
        accuracy[precision] = trainer.evaluate(data.x_test, data.y_test)["accuracy"]
    print(f"{backend}: test accuracy {accuracy}")
    assert accuracy["float32"] > 0.93, "the float32 run did not learn; the comparison would be vacuous"
    assert abs(accuracy["bf16-mixed"] - accuracy["float32"]) <= BF16_ACCURACY_TOLERANCE
