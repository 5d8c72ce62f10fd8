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


@pytest.mark.parametrize("backend, precision", [("tensorflow", "bf16-mixed"), ("jax", "fp16-mixed")])
def test_a_precision_the_backend_lacks_is_refused_before_building(backend, precision):
    require(backend)
    with pytest.raises(ConfigError, match="not supported on the"):
        pf.Trainer(seed_cnn((8, 8, 1)), backend=backend, precision=precision)


@pytest.mark.parametrize("backend, precision", [("torch", "bf16-mixed"), ("torch", "fp16-mixed"),
                                                ("jax", "bf16-mixed")])
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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
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
