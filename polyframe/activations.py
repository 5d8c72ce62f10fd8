"""Activation names and their canonical formulas.

===========  =====================================================================
name         formula
===========  =====================================================================
linear       ``x``
relu         ``max(x, 0)``
tanh         ``tanh(x)``
sigmoid      ``1 / (1 + exp(-x))``
softmax      ``exp(x - max x) / sum exp(x - max x)`` over the last axis (channels)
log_softmax  ``x - max x - log(sum exp(x - max x))`` over the last axis (channels)
gelu         ``x / 2 * (1 + erf(x / sqrt 2))``: the exact erf form, not the tanh
             approximation (JAX's ``jax.nn.gelu`` defaults to the approximation)
silu         ``x * sigmoid(x)`` (also called swish)
leaky_relu   ``x`` if ``x > 0`` else ``LEAKY_RELU_SLOPE * x``, slope fixed at 0.01
             (PyTorch's and JAX's default; ``tf.nn.leaky_relu`` defaults to 0.2 and
             Keras' ``LeakyReLU`` to 0.3, so adapters pass the slope explicitly)
softplus     ``log(1 + exp(x))``
===========  =====================================================================
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["ACTIVATIONS", "CHANNEL_WISE", "LEAKY_RELU_SLOPE", "check_activation"]

ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "tanh", "sigmoid", "softmax", "log_softmax",
                                "gelu", "silu", "leaky_relu", "softplus")

LEAKY_RELU_SLOPE = 0.01
"""The negative slope of ``leaky_relu``: a canonical constant, the same on every backend."""

CHANNEL_WISE: frozenset[str] = frozenset({"softmax", "log_softmax"})
"""Activations that mix the elements of the last (channel) axis rather than act elementwise."""


def check_activation(name: str | None, where: str) -> str:
    """Return the canonical activation name for ``name`` (``None`` means ``"linear"``)."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(
            f"{where}: unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}"
        )
    return name
