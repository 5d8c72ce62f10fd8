"""Mixed precision on TensorFlow: float32 ``tf.Variable`` s (master weights, updated in float32
by polyframe's optimizer) read through :func:`cast_like`, so that a layer whose inputs are
bfloat16 computes its matmuls, convolutions and recurrences in bfloat16; the cast's gradient
brings the gradients back to float32. Each layer's floating inputs are cast to the compute type
on entry (:func:`computing_in`); the network's outputs are cast back to float32 before the loss.

Kept in float32 inside a bfloat16 network: the embedding lookup (its ids stay exact), BatchNorm
and LayerNorm statistics and normalisation, the softmax of attention weights and the
``softmax`` / ``log_softmax`` activations, the loss and the optimizer. Only ``"bf16-mixed"``:
float16 would need loss scaling, written so far for torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyframe.errors import ConfigError

from ._startup import quiet_startup

with quiet_startup():
    import tensorflow as tf

__all__ = ["compute_dtype", "cast_like", "computing_in"]


def compute_dtype(precision: str) -> tf.DType:
    """The forward pass's type for ``precision``."""
    if precision == "float32":
        return tf.float32
    if precision == "bf16-mixed":
        return tf.bfloat16
    raise ConfigError(f"precision={precision!r} is not supported on the tensorflow backend; use "
                      "'bf16-mixed' or 'float32' (fp16-mixed with loss scaling is on torch)")


def cast_like(variable: tf.Variable | tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``variable`` read in ``x``'s type (the variable itself when the types agree)."""
    return variable if variable.dtype == x.dtype else tf.cast(variable, x.dtype)


def _cast_floats(value: Any, dtype: tf.DType) -> Any:
    if isinstance(value, (list, tuple)):
        return [_cast_floats(v, dtype) for v in value]
    return tf.cast(value, dtype) if value.dtype.is_floating else value


def computing_in(dtype: tf.DType, layer: Callable[[Any, bool], Any]) -> Callable[[Any, bool], Any]:
    """``layer`` with its floating inputs (one tensor or a list) cast to ``dtype`` first."""
    return lambda x, training: layer(_cast_floats(x, dtype), training)
