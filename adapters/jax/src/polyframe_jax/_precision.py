"""Mixed precision on JAX: inside the jitted step the float32 params and inputs are cast to
bfloat16 for the forward pass (the cast's gradient brings the gradients back to float32 master
params and optimizer state), and the outputs and updated BatchNorm statistics are cast back to
float32 before the loss. Only ``"bf16-mixed"``: float16 would need loss scaling, written so far
for torch only."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from polyframe.errors import ConfigError

__all__ = ["compute_dtype", "to_compute", "to_float32"]


def compute_dtype(precision: str) -> jnp.dtype | None:
    """The forward pass's type: ``None`` for float32."""
    if precision == "float32":
        return None
    if precision == "bf16-mixed":
        return jnp.bfloat16
    raise ConfigError(f"precision={precision!r} is not supported on the jax backend; use "
                      "'bf16-mixed' or 'float32' (fp16-mixed with loss scaling is on torch)")


def to_compute(tree: object, dtype: jnp.dtype | None) -> object:
    """Floating arrays of ``tree`` in ``dtype`` (unchanged for float32)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def to_float32(tree: object) -> object:
    return jax.tree.map(lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
