"""The float64 reference of polyframe's losses, gradient clipping, schedules and optimizers.

Each formula is the one documented in :mod:`polyframe.losses`, :mod:`polyframe.optimizers` and
:mod:`polyframe.schedules`, written in numpy independently of every framework;
:mod:`polyframe.reference` re-exports :func:`reference_loss` and :class:`ReferenceOptimizer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError
from .losses import (
    PROBABILITY_FLOOR,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

if TYPE_CHECKING:
    from .reference import ReferenceModel

__all__ = ["reference_loss", "ReferenceOptimizer", "clip_gradients"]

Array = np.ndarray


def _log_probabilities(loss: CategoricalCrossentropy, outputs: Array) -> tuple[Array, Array]:
    """``log q`` and ``d(-t . log q)/d outputs`` as a function of the target rows ``t``."""
    if loss.from_logits:
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        log_q = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return log_q, np.exp(log_q)
    clipped = np.clip(outputs, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    inside = (outputs > PROBABILITY_FLOOR) & (outputs < 1 - PROBABILITY_FLOOR)
    return np.log(clipped), np.where(inside, 1.0 / clipped, 0.0)


def _cross_entropy(loss: CategoricalCrossentropy, outputs: Array, y: Array) -> tuple[float, Array]:
    n, classes = outputs.shape
    targets = np.eye(classes)[y] if loss.sparse else np.asarray(y, dtype=np.float64)
    s = loss.label_smoothing
    targets = (1.0 - s) * targets + s / classes
    log_q, d = _log_probabilities(loss, outputs)
    value = float(np.mean(-(targets * log_q).sum(axis=-1)))
    if loss.from_logits:
        grad = d * targets.sum(axis=-1, keepdims=True) - targets
    else:
        grad = -targets * d
    return value, grad / n


def _binary_cross_entropy(loss: BinaryCrossentropy, z: Array, y: Array) -> tuple[float, Array]:
    if loss.from_logits:
        value = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return float(np.mean(value)), (1.0 / (1.0 + np.exp(-z)) - y) / z.size
    q = np.clip(z, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    inside = (z > PROBABILITY_FLOOR) & (z < 1 - PROBABILITY_FLOOR)
    value = -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))
    grad = np.where(inside, -(y / q - (1.0 - y) / (1.0 - q)), 0.0)
    return float(np.mean(value)), grad / z.size


def reference_loss(loss: Loss, outputs: Array, y: Array) -> tuple[float, Array]:
    """Loss value and its gradient with respect to ``outputs``.

    ``y`` is checked and made canonical with ``loss.check_targets`` first, exactly as the
    trainer does before a backend sees it.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    y = loss.check_targets(y, outputs.shape[1:])
    if isinstance(loss, CategoricalCrossentropy):
        return _cross_entropy(loss, outputs, y)
    if isinstance(loss, BinaryCrossentropy):
        return _binary_cross_entropy(loss, outputs, y.astype(np.float64))
    x = outputs - y.astype(np.float64)
    if isinstance(loss, MeanSquaredError):
        return float(np.mean(x * x)), 2.0 * x / x.size
    if isinstance(loss, MeanAbsoluteError):
        return float(np.mean(np.abs(x))), np.sign(x) / x.size
    if isinstance(loss, Huber):
        small = np.abs(x) <= loss.delta
        value = np.where(small, 0.5 * x * x, loss.delta * (np.abs(x) - 0.5 * loss.delta))
        return float(np.mean(value)), np.where(small, x, loss.delta * np.sign(x)) / x.size
    raise ConfigError(f"the reference does not implement loss {type(loss).__name__}")


def clip_gradients(spec: Optimizer, grads: dict[str, Array]) -> dict[str, Array]:
    """``clip_value`` element-wise, then ``g * clip_norm / max(global norm, clip_norm)``."""
    if spec.clip_value is not None:
        grads = {k: np.clip(g, -spec.clip_value, spec.clip_value) for k, g in grads.items()}
    if spec.clip_norm is not None:
        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        scale = spec.clip_norm / max(norm, spec.clip_norm)
        grads = {k: g * scale for k, g in grads.items()}
    return grads


class ReferenceOptimizer:
    """Float64 updates with the documented formulas, applied in place to a weight dict."""

    def __init__(self, spec: Optimizer) -> None:
        if not isinstance(spec, (SGD, Adam, AdamW, RMSprop)):
            raise ConfigError(f"the reference does not implement optimizer {type(spec).__name__}")
        self.spec = spec
        self.step = 0
        """Updates applied so far; the next one uses ``spec.schedule(step)``."""
        self.slots: dict[str, dict[str, Array]] = {}

    def learning_rate(self) -> float:
        """The learning rate of the next update."""
        return self.spec.schedule(self.step)

    def update(self, weights: dict[str, Array], grads: dict[str, Array]) -> None:
        spec, lr = self.spec, self.learning_rate()
        self.step += 1
        for key, g in clip_gradients(spec, grads).items():
            slots = self.slots.setdefault(key, {})
            weights[key] -= lr * self._direction(g, weights[key], slots)

    def _direction(self, g: Array, p: Array, slots: dict[str, Array]) -> Array:
        """What the update subtracts, divided by ``lr``; updates ``slots`` in place."""
        spec, t = self.spec, self.step
        zeros = np.zeros_like(g)
        if isinstance(spec, SGD):
            if not spec.momentum:
                return g
            v = slots["velocity"] = spec.momentum * slots.get("velocity", zeros) + g
            return g + spec.momentum * v if spec.nesterov else v
        if isinstance(spec, (Adam, AdamW)):
            m = slots["m"] = spec.beta_1 * slots.get("m", zeros) + (1 - spec.beta_1) * g
            v = slots["v"] = spec.beta_2 * slots.get("v", zeros) + (1 - spec.beta_2) * g * g
            step = (m / (1 - spec.beta_1 ** t)) / (np.sqrt(v / (1 - spec.beta_2 ** t)) + spec.epsilon)
            return step + spec.weight_decay * p if isinstance(spec, AdamW) else step
        s = slots["square"] = spec.rho * slots.get("square", zeros) + (1 - spec.rho) * g * g
        if spec.centered:
            a = slots["average"] = spec.rho * slots.get("average", zeros) + (1 - spec.rho) * g
            s = s - a * a
        scaled = g / (np.sqrt(s) + spec.epsilon)
        if not spec.momentum:
            return scaled
        b = slots["momentum"] = spec.momentum * slots.get("momentum", zeros) + scaled
        return b

    def train(self, model: ReferenceModel, batches: Iterable[tuple[Array, Array]], loss: Loss) -> list[float]:
        """Run one step per ``(x, y)`` batch; returns the loss before each update."""
        losses = []
        for x, y in batches:
            value, grads, _ = model.loss_and_grads(x, y, loss, update_state=True)
            self.update(model.weights, grads)
            losses.append(value)
        return losses
