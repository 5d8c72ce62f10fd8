"""The torch side of training: polyframe's losses and optimizers as torch functions and optimizers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polyframe.errors import ConfigError
from polyframe.losses import PROBABILITY_FLOOR, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from polyframe.optimizers import SGD, Adam, Optimizer

__all__ = ["_loss_function", "_optimizer"]


def _loss_function(loss: Loss):
    if isinstance(loss, SparseCategoricalCrossentropy):
        if loss.from_logits:
            return F.cross_entropy
        return lambda p, y: F.nll_loss(torch.log(p.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)), y)
    if isinstance(loss, MeanSquaredError):
        return F.mse_loss
    raise ConfigError(f"the torch backend does not support loss {type(loss).__name__}")


def _optimizer(spec: Optimizer, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if isinstance(spec, Adam):
        return torch.optim.Adam(params, lr=spec.learning_rate, betas=(spec.beta_1, spec.beta_2),
                                eps=spec.epsilon)
    if isinstance(spec, SGD):
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=spec.momentum)
    raise ConfigError(f"the torch backend does not support optimizer {type(spec).__name__}")
