"""The JAX side of training: polyframe's losses as jnp functions and its optimizers as optax
chains: ``clip`` (value), ``clip_by_global_norm``, then the optimizer.

optax's own transformations carry polyframe's formulas when configured so: ``adam`` and
``adamw`` with ``eps_root=0`` (epsilon after the square root; ``adamw`` adds ``wd * p`` before
the ``-lr`` scaling), ``sgd`` (``trace`` is torch's momentum buffer, Nesterov included) and
``scale_by_rms`` / ``scale_by_stddev`` with ``eps_in_sqrt=False`` and ``initial_scale=0``
then ``trace`` for RMSprop; ``clip_by_global_norm`` scales by
``clip_norm / norm`` when ``norm >= clip_norm``. A schedule is evaluated by optax from its own
update counter inside the jitted step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polyframe.errors import ConfigError
from polyframe.losses import (
    PROBABILITY_FLOOR,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from polyframe.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["_loss_fn", "_transformation"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _log_q(outputs: jax.Array, from_logits: bool) -> jax.Array:
    if from_logits:
        return jax.nn.log_softmax(outputs, axis=-1)
    return jnp.log(jnp.clip(outputs, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR))


def _cross_entropy(loss: CategoricalCrossentropy) -> LossFn:
    s, from_logits = loss.label_smoothing, loss.from_logits

    def sparse(outputs: jax.Array, y: jax.Array) -> jax.Array:
        if from_logits and not s:  # logsumexp(z) - z[y]: one fewer rounding than log_softmax
            picked = jnp.take_along_axis(outputs, y[:, None], axis=-1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(outputs, axis=-1) - picked)
        log_q = _log_q(outputs, from_logits)
        picked = jnp.take_along_axis(log_q, y[:, None], axis=-1)[:, 0]
        smoothed = s * jnp.mean(log_q, axis=-1) if s else 0.0
        return -jnp.mean((1.0 - s) * picked + smoothed)

    def dense(outputs: jax.Array, t: jax.Array) -> jax.Array:
        t = (1.0 - s) * t + s / outputs.shape[-1]
        return -jnp.mean(jnp.sum(t * _log_q(outputs, from_logits), axis=-1))

    return sparse if loss.sparse else dense


def _binary(from_logits: bool) -> LossFn:
    def from_logits_fn(z: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.maximum(z, 0.0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

    def from_probabilities(p: jax.Array, y: jax.Array) -> jax.Array:
        q = jnp.clip(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return -jnp.mean(y * jnp.log(q) + (1.0 - y) * jnp.log(1.0 - q))

    return from_logits_fn if from_logits else from_probabilities


def _huber(delta: float) -> LossFn:
    def huber(outputs: jax.Array, y: jax.Array) -> jax.Array:
        a = jnp.abs(outputs - y)
        return jnp.mean(jnp.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta)))

    return huber


def _loss_fn(loss: Loss) -> tuple[LossFn, type]:
    """The loss formula and the numpy dtype its targets are sent in."""
    if isinstance(loss, CategoricalCrossentropy):
        return _cross_entropy(loss), np.int32 if loss.sparse else np.float32
    if isinstance(loss, BinaryCrossentropy):
        return _binary(loss.from_logits), np.float32
    if isinstance(loss, MeanSquaredError):
        return (lambda z, y: jnp.mean(jnp.square(z - y))), np.float32
    if isinstance(loss, MeanAbsoluteError):
        return (lambda z, y: jnp.mean(jnp.abs(z - y))), np.float32
    if isinstance(loss, Huber):
        return _huber(loss.delta), np.float32
    raise ConfigError(
        f"the jax backend does not implement the loss {type(loss).__name__} ({loss.kind!r})"
    )


class _JaxOps:
    floor = staticmethod(jnp.floor)
    cos = staticmethod(jnp.cos)
    minimum = staticmethod(jnp.minimum)
    where = staticmethod(jnp.where)


def _learning_rate(spec: Optimizer) -> float | Callable[[jax.Array], jax.Array]:
    """A float, or optax's schedule callable of its update count (from 0), in float32."""
    if spec.constant_learning_rate is not None:
        return spec.constant_learning_rate
    schedule, ops = spec.schedule, _JaxOps()
    return lambda count: schedule.formula(jnp.asarray(count, jnp.float32), ops)


def _sgd(spec: SGD, lr: Any) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=spec.momentum or None, nesterov=spec.nesterov)


def _adam(spec: Adam, lr: Any) -> optax.GradientTransformation:
    return optax.adam(lr, b1=spec.beta_1, b2=spec.beta_2, eps=spec.epsilon, eps_root=0.0)


def _adamw(spec: AdamW, lr: Any) -> optax.GradientTransformation:
    return optax.adamw(lr, b1=spec.beta_1, b2=spec.beta_2, eps=spec.epsilon, eps_root=0.0,
                       weight_decay=spec.weight_decay)


def _rmsprop(spec: RMSprop, lr: Any) -> optax.GradientTransformation:
    """Chained here because ``optax.rmsprop`` scales by ``lr`` before its momentum ``trace``
    (Keras' order), which differs from polyframe's once the rate is scheduled."""
    scale = optax.scale_by_stddev if spec.centered else optax.scale_by_rms
    chain = [scale(decay=spec.rho, eps=spec.epsilon, initial_scale=0.0, eps_in_sqrt=False)]
    if spec.momentum:
        chain.append(optax.trace(decay=spec.momentum))
    return optax.chain(*chain, optax.scale_by_learning_rate(lr))


_OPTIMIZERS: dict[type[Optimizer], Callable[[Any, Any], optax.GradientTransformation]] = {
    SGD: _sgd,
    Adam: _adam,
    AdamW: _adamw,
    RMSprop: _rmsprop,
}


def _transformation(spec: Optimizer) -> optax.GradientTransformation:
    """Value clipping, global-norm clipping, then the optimizer with its learning rate."""
    build = _OPTIMIZERS.get(type(spec))
    if build is None:
        raise ConfigError(
            f"the jax backend does not implement the optimizer {type(spec).__name__} "
            f"({spec.kind!r}); use one of {', '.join(t.__name__ for t in _OPTIMIZERS)}"
        )
    chain = []
    if spec.clip_value is not None:
        chain.append(optax.clip(spec.clip_value))
    if spec.clip_norm is not None:
        chain.append(optax.clip_by_global_norm(spec.clip_norm))
    rate = _learning_rate(spec)
    if callable(rate):
        chain.append(build(spec, rate))
    else:  # a constant rate lives in the optimizer state: changing it needs no recompile
        chain.append(optax.inject_hyperparams(lambda learning_rate: build(spec, learning_rate))(
            learning_rate=rate))
    return optax.chain(*chain) if len(chain) > 1 else chain[0]
