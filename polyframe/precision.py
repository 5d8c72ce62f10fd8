"""Mixed precision: the ``precision`` option and the loss-scaling rule every backend follows.

``"float32"`` computes and stores everything in float32. ``"bf16-mixed"`` and ``"fp16-mixed"``
keep float32 master weights and optimizer state, and run the forward and backward passes of
the model's matmuls and convolutions in bfloat16 / float16; the loss, softmax / cross-entropy
and the update are float32. ``"fp16-mixed"`` multiplies the loss by a dynamic scale before the
backward pass and divides the gradients by it: a step whose gradients are not finite is skipped
and the scale halved; after :data:`GROWTH_INTERVAL` finite steps in a row it doubles (the rule
of ``torch.amp.GradScaler`` with its defaults).
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["PRECISIONS", "check_precision", "half_dtype_name", "INITIAL_SCALE", "GROWTH_INTERVAL",
           "GROWTH_FACTOR", "BACKOFF_FACTOR"]

PRECISIONS = ("float32", "bf16-mixed", "fp16-mixed")

INITIAL_SCALE = 2.0 ** 16
GROWTH_INTERVAL = 2000
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5


def check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                          f"got {precision!r}")
    return precision  # type: ignore[return-value]


def half_dtype_name(precision: str) -> str | None:
    """``"bfloat16"``, ``"float16"``, or ``None`` for float32."""
    return {"bf16-mixed": "bfloat16", "fp16-mixed": "float16"}.get(precision)
