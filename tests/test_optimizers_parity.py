"""Every optimizer, with and without gradient clipping and under every schedule: one update and a
50-update sequence from identical weights and identical batches, on every backend, against the
float64 reference; schedule formulas; bad settings.

Tolerance: weights rtol 1e-4 / atol 1e-6 after 1 and after 50 updates. One float32 update agrees
with float64 to about 1e-7 relative; over 50 updates the gradient at each step is taken at
slightly different (rounded) weights and the differences accumulate: measured worst cases are
about 4e-5 relative / 2e-6 absolute (optax computes Adam's bias corrections ``1 - b^t`` in
float32, the other backends in float64). rtol 1e-4 keeps a 5x margin over that while a wrong
formula (epsilon placement, Nesterov, decay, a schedule off by one update) moves the weights by
1e-3 relative or more, which the ``..._is_detected`` tests check against the same tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import polyframe as pf
from polyframe.errors import ConfigError
from polyframe.reference import ReferenceModel, ReferenceOptimizer

STEPS, BATCH = 50, 8
MODEL = pf.Sequential([pf.Dense(6, activation="tanh"), pf.Dense(3)], input_shape=(5,))
LOSS = pf.SparseCategoricalCrossentropy()
RTOL, ATOL = 1e-4, 1e-6

OPTIMIZERS = {
    "sgd": pf.SGD(0.1),
    "sgd-momentum": pf.SGD(0.05, momentum=0.9),
    "sgd-nesterov": pf.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": pf.Adam(0.01),
    "adamw": pf.AdamW(0.01, weight_decay=0.1),
    "rmsprop": pf.RMSprop(0.005),
    "rmsprop-centered-momentum": pf.RMSprop(0.002, rho=0.8, momentum=0.5, centered=True),
}

SCHEDULES = {
    "constant": lambda lr: pf.Constant(lr),
    "step": lambda lr: pf.StepDecay(lr, step_size=3, gamma=0.7),
    "exponential": lambda lr: pf.ExponentialDecay(lr, decay_rate=0.5, decay_steps=20),
    "exponential-staircase": lambda lr: pf.ExponentialDecay(lr, 0.5, 7, staircase=True),
    "cosine-warmup": lambda lr: pf.CosineDecay(2 * lr, decay_steps=40, warmup_steps=10,
                                               initial=0.1 * lr, alpha=0.1),
}

VARIANTS = {
    "plain": {},
    "clip-norm": {"clip_norm": 0.05},
    "clip-value": {"clip_value": 0.02},
    "clip-both": {"clip_value": 0.05, "clip_norm": 0.08},
}


def _data(seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(STEPS * BATCH, *MODEL.input_shape)) * scale).astype(np.float32)
    return x, rng.integers(0, 3, STEPS * BATCH)


def _run_and_compare(backend: str, optimizer: pf.optimizers.Optimizer, model: pf.Sequential = MODEL,
                     loss: pf.losses.Loss = LOSS, data: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Train one update, compare; train the next 49, compare (both against the reference)."""
    x, y = _data() if data is None else data
    ref = ReferenceModel(model, model.init_weights(4))
    ref_optimizer = ReferenceOptimizer(optimizer)
    trainer = pf.Trainer(model, backend=backend, seed=4, loss=loss, optimizer=optimizer, metrics=())
    for start, stop in [(0, BATCH), (BATCH, len(x))]:
        ref_optimizer.train(ref, ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(start, stop, BATCH)), loss)
        trainer.fit(x[start:stop], y[start:stop], batch_size=BATCH, shuffle=False, progress=False)
        for key, value in trainer.get_weights().items():
            np.testing.assert_allclose(value, ref.weights[key], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{key} after {ref_optimizer.step} updates")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_with_clipping_matches_reference(backend, name, variant):
    _run_and_compare(backend, dataclasses.replace(OPTIMIZERS[name], **VARIANTS[variant]))


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_with_schedule_matches_reference(backend, name, schedule):
    spec = OPTIMIZERS[name]
    _run_and_compare(backend, dataclasses.replace(spec, learning_rate=SCHEDULES[schedule](spec.learning_rate)))


def test_clipping_is_active_in_the_parity_cases():
    x, y = _data()
    _, grads, _ = ReferenceModel(MODEL, MODEL.init_weights(4)).loss_and_grads(x[:BATCH], y[:BATCH], LOSS)
    flat = np.concatenate([g.ravel() for g in grads.values()])
    assert np.linalg.norm(flat) > 2 * VARIANTS["clip-norm"]["clip_norm"]
    assert 0 < np.mean(np.abs(flat) > VARIANTS["clip-value"]["clip_value"]) < 1


# -- epsilon placement: gradients as small as epsilon -------------------------------------------
TINY = pf.Sequential([pf.Dense(3, use_bias=False)], input_shape=(5,))


def _tiny_data() -> tuple[np.ndarray, np.ndarray]:
    """Inputs of 1e-7 make every kernel gradient about 1e-8, the size of Adam's epsilon."""
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(STEPS * BATCH, 5)) * 1e-7).astype(np.float32)
    return x, rng.normal(size=(STEPS * BATCH, 3)).astype(np.float32)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop"])
def test_epsilon_placement_with_gradients_the_size_of_epsilon(backend, name):
    _run_and_compare(backend, OPTIMIZERS[name], model=TINY, loss=pf.MeanSquaredError(), data=_tiny_data())


def _reference_weights(optimizer, model=TINY, loss=None, data=None) -> dict[str, np.ndarray]:
    x, y = _tiny_data() if data is None else data
    ref = ReferenceModel(model, model.init_weights(4))
    ReferenceOptimizer(optimizer).train(ref, ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)),
                                        loss or pf.MeanSquaredError())
    return ref.weights


def _differs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return any(not np.allclose(a[k], b[k], rtol=RTOL, atol=ATOL) for k in a)


def test_wrong_epsilon_placement_or_size_is_detected():
    """The parity cases above would fail for Keras' epsilon-hat Adam or a 1e-7 epsilon."""
    canonical = _reference_weights(pf.Adam(0.01))
    assert _differs(canonical, _reference_weights(pf.Adam(0.01, epsilon=1e-7)))
    x, y = _tiny_data()
    w = TINY.init_weights(4)[next(iter(TINY.init_weights(4)))].astype(np.float64)
    m = v = np.zeros_like(w)
    for t, i in enumerate(range(0, len(x), BATCH), start=1):
        g = x[i:i + BATCH].T @ (2 * (x[i:i + BATCH] @ w - y[i:i + BATCH]) / y[i:i + BATCH].size)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        lr_t = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w = w - lr_t * m / (np.sqrt(v) + 1e-8)
    assert _differs(canonical, {next(iter(canonical)): w})


def test_nesterov_decay_and_schedule_offsets_are_detected():
    x, y = _data()
    run = lambda spec: _reference_weights(spec, model=MODEL, loss=LOSS, data=(x, y))  # noqa: E731
    assert _differs(run(pf.SGD(0.05, momentum=0.9)), run(pf.SGD(0.05, momentum=0.9, nesterov=True)))
    assert _differs(run(pf.Adam(0.01)), run(pf.AdamW(0.01, weight_decay=0.1)))
    step = pf.StepDecay(0.1, step_size=3, gamma=0.7)
    shifted = pf.StepDecay(0.1 * 0.7 ** (1 / 3), step_size=3, gamma=0.7)
    assert _differs(run(pf.SGD(step)), run(pf.SGD(shifted)))


# -- schedule formulas and bad settings ---------------------------------------------------------
def test_schedule_formulas():
    step = pf.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [step(t) for t in (0, 2, 3, 6)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert pf.ExponentialDecay(1.0, 0.5, 4)(2) == pytest.approx(0.5 ** 0.5)
    assert pf.ExponentialDecay(1.0, 0.5, 4, staircase=True)(7) == pytest.approx(0.5)
    cosine = pf.CosineDecay(1.0, decay_steps=12, warmup_steps=4, initial=0.2, alpha=0.1)
    assert cosine(0) == pytest.approx(0.2)
    assert cosine(2) == pytest.approx(0.6)
    assert cosine(4) == pytest.approx(1.0)
    assert cosine(8) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine(12) == cosine(100) == pytest.approx(0.1)
    assert pf.Constant(0.3)(1000) == 0.3
    assert pf.SGD(step).schedule is step and pf.SGD(0.2).schedule == pf.Constant(0.2)


@pytest.mark.parametrize("make, message", [
    (lambda: pf.AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: pf.Adam(clip_norm=0.0), "clip_norm"),
    (lambda: pf.SGD(clip_norm=-1.0), "clip_norm"),
    (lambda: pf.RMSprop(clip_value=0), "clip_value"),
    (lambda: pf.SGD(0.1, nesterov=True), "nesterov=True needs a momentum"),
    (lambda: pf.RMSprop(rho=1.0), "rho"),
    (lambda: pf.Adam(learning_rate="0.1"), "learning_rate"),
    (lambda: pf.CosineDecay(0.1, decay_steps=10, warmup_steps=11), "warmup_steps"),
    (lambda: pf.CosineDecay(0.1, decay_steps=10, warmup_steps=10), "warmup_steps"),
    (lambda: pf.StepDecay(0.1, step_size=0), "step_size"),
    (lambda: pf.ExponentialDecay(0.1, decay_rate=1.5, decay_steps=10), "decay_rate"),
    (lambda: pf.Constant(-1.0), "value"),
    (lambda: pf.StepDecay(0.1, 2)(-1), "step"),
    (lambda: pf.optimizers.get_optimizer("adagrad"), "unknown optimizer"),
])
def test_bad_optimizer_and_schedule_settings_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_named_optimizers_and_positional_momentum():
    assert type(pf.optimizers.get_optimizer("adamw")) is pf.AdamW
    assert type(pf.optimizers.get_optimizer("rmsprop")) is pf.RMSprop
    assert pf.SGD(0.1, 0.9).momentum == 0.9
    assert pf.AdamW().weight_decay == 0.01 and pf.RMSprop().epsilon == 1e-8
    assert not isinstance(pf.AdamW(), pf.Adam)
