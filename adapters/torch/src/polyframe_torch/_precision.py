"""Mixed precision on torch: ``torch.autocast`` (bfloat16 / float16) around the forward pass,
float32 parameters and optimizer state, and polyframe's dynamic loss scaling for float16
(:mod:`polyframe.precision`) written here because the optimizer is polyframe's own wrapper."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from polyframe.precision import BACKOFF_FACTOR, GROWTH_FACTOR, GROWTH_INTERVAL, INITIAL_SCALE, half_dtype_name

from ._training import ClippedScheduledOptimizer

__all__ = ["Precision"]


class Precision:
    """The compute type of one executable and, for float16, its loss scale."""

    def __init__(self, precision: str, device_type: str = "cpu") -> None:
        name = half_dtype_name(precision)
        self.dtype = None if name is None else getattr(torch, name)
        self.device_type = device_type
        self.scaled = precision == "fp16-mixed"
        self.scale = INITIAL_SCALE
        self.good_steps = 0

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def backward_and_step(self, objective: torch.Tensor, optimizer: ClippedScheduledOptimizer) -> None:
        """Backpropagate ``objective`` and update; with loss scaling, skip a step whose gradients
        are not finite and adjust the scale."""
        if not self.scaled:
            objective.backward()
            optimizer.step()
            return
        (objective * self.scale).backward()
        grads = [p.grad for p in optimizer.params if p.grad is not None]
        with torch.no_grad():
            finite = all(bool(torch.isfinite(g).all()) for g in grads)
            if finite:
                for g in grads:
                    g.div_(self.scale)
        if not finite:
            self.scale *= BACKOFF_FACTOR
            self.good_steps = 0
            return
        optimizer.step()
        self.good_steps += 1
        if self.good_steps == GROWTH_INTERVAL and math.isfinite(self.scale * GROWTH_FACTOR):
            self.scale *= GROWTH_FACTOR
            self.good_steps = 0
