"""The torch side of training: polyframe's losses as torch functions, its optimizers as
``torch.optim`` optimizers behind gradient clipping and a learning-rate schedule.

``torch.optim``'s formulas are polyframe's: SGD (``nesterov`` adds ``momentum * v`` to ``g``),
Adam and AdamW (epsilon after the square root; AdamW multiplies ``p`` by ``1 - lr * wd`` first),
RMSprop (``alpha`` is polyframe's ``rho``, epsilon after the square root). Global-norm clipping
is written here, since ``clip_grad_norm_`` divides by ``norm + 1e-6``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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

__all__ = ["_loss_function", "_optimizer", "ClippedScheduledOptimizer"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _log_clipped(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR))


def _cross_entropy(loss: CategoricalCrossentropy) -> LossFn:
    s = loss.label_smoothing
    if loss.from_logits:
        return lambda z, y: F.cross_entropy(z, y, label_smoothing=s)
    if loss.sparse:
        def sparse(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            log_q = _log_clipped(p)
            picked = log_q.gather(1, y[:, None])[:, 0]
            return -((1 - s) * picked + s * log_q.mean(dim=1)).mean()
        return sparse

    def dense(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = (1 - s) * t + s / t.shape[1]
        return -(t * _log_clipped(p)).sum(dim=1).mean()
    return dense


def _binary_from_probabilities(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    q = p.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return -(y * torch.log(q) + (1 - y) * torch.log(1 - q)).mean()


def _loss_function(loss: Loss) -> LossFn:
    if isinstance(loss, CategoricalCrossentropy):
        return _cross_entropy(loss)
    if isinstance(loss, BinaryCrossentropy):
        return F.binary_cross_entropy_with_logits if loss.from_logits else _binary_from_probabilities
    if isinstance(loss, MeanSquaredError):
        return F.mse_loss
    if isinstance(loss, MeanAbsoluteError):
        return F.l1_loss
    if isinstance(loss, Huber):
        delta = loss.delta
        return lambda z, y: F.huber_loss(z, y, delta=delta)
    raise ConfigError(f"the torch backend does not support loss {type(loss).__name__} ({loss.kind!r})")


def _native(spec: Optimizer, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if isinstance(spec, SGD):
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, nesterov=spec.nesterov)
    if isinstance(spec, Adam):
        return torch.optim.Adam(params, lr=lr, betas=(spec.beta_1, spec.beta_2), eps=spec.epsilon)
    if isinstance(spec, AdamW):
        return torch.optim.AdamW(params, lr=lr, betas=(spec.beta_1, spec.beta_2), eps=spec.epsilon,
                                 weight_decay=spec.weight_decay)
    if isinstance(spec, RMSprop):
        return torch.optim.RMSprop(params, lr=lr, alpha=spec.rho, eps=spec.epsilon,
                                   momentum=spec.momentum, centered=spec.centered)
    raise ConfigError(f"the torch backend does not support optimizer {type(spec).__name__} "
                      f"({spec.kind!r})")


class ClippedScheduledOptimizer:
    """A ``torch.optim`` optimizer whose :meth:`step` first clips the gradients (value, then
    global norm) and sets the learning rate of this update, ``schedule(updates so far)``."""

    def __init__(self, spec: Optimizer, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.spec = spec
        self._scheduled = spec.constant_learning_rate is None
        self.updates = 0
        self.native = _native(spec, self.params, spec.schedule(0))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.native.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def _clip(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.spec.clip_value is not None:
            for g in grads:
                g.clamp_(-self.spec.clip_value, self.spec.clip_value)
        if self.spec.clip_norm is not None and grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            scale = self.spec.clip_norm / norm.clamp(min=self.spec.clip_norm)
            for g in grads:
                g.mul_(scale)

    def step(self) -> None:
        self._clip()
        if self._scheduled:
            lr = self.spec.schedule(self.updates)
            for group in self.native.param_groups:
                group["lr"] = lr
        self.native.step()
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"native": self.native.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.native.load_state_dict(state["native"])
        self.updates = int(state["updates"])


def _optimizer(spec: Optimizer, params: list[nn.Parameter]) -> ClippedScheduledOptimizer:
    return ClippedScheduledOptimizer(spec, params)
