"""The JAX side of training: polyframe's losses as jnp functions and its optimizers as optax chains."""

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
    Loss,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from polyframe.optimizers import SGD, Adam, Optimizer

__all__ = ["_loss_fn", "_transformation"]


def _sparse_ce_logits(outputs: jax.Array, y: jax.Array) -> jax.Array:
    picked = jnp.take_along_axis(outputs, y[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(outputs, axis=-1) - picked)


def _sparse_ce_probabilities(outputs: jax.Array, y: jax.Array) -> jax.Array:
    picked = jnp.take_along_axis(outputs, y[:, None], axis=-1)[:, 0]
    return jnp.mean(-jnp.log(jnp.clip(picked, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)))


def _mean_squared_error(outputs: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(outputs - y))


def _loss_fn(loss: Loss) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], type]:
    """The loss formula and the numpy dtype its targets are sent in."""
    if type(loss) is SparseCategoricalCrossentropy:
        return (_sparse_ce_logits if loss.from_logits else _sparse_ce_probabilities), np.int32
    if type(loss) is MeanSquaredError:
        return _mean_squared_error, np.float32
    raise ConfigError(
        f"the jax backend does not implement the loss {type(loss).__name__} "
        f"({loss.kind!r}); use SparseCategoricalCrossentropy or MeanSquaredError"
    )


def _sgd(spec: SGD) -> optax.GradientTransformation:
    """``v = momentum*v + g; p -= lr*v``: optax's ``trace`` followed by ``-lr`` scaling."""
    return optax.sgd(spec.learning_rate, momentum=spec.momentum or None)


def _adam(spec: Adam) -> optax.GradientTransformation:
    """``eps`` added to ``sqrt`` of the bias-corrected second moment (``eps_root=0``)."""
    return optax.adam(
        spec.learning_rate, b1=spec.beta_1, b2=spec.beta_2, eps=spec.epsilon, eps_root=0.0
    )


_OPTIMIZERS: dict[type[Optimizer], Callable[[Any], optax.GradientTransformation]] = {
    SGD: _sgd,
    Adam: _adam,
}


def _transformation(spec: Optimizer) -> optax.GradientTransformation:
    try:
        return _OPTIMIZERS[type(spec)](spec)
    except KeyError:
        raise ConfigError(
            f"the jax backend does not implement the optimizer {type(spec).__name__} "
            f"({spec.kind!r}); use polyframe.SGD or polyframe.Adam"
        ) from None
