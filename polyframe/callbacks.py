"""Callbacks around the training loop, and the progress display.

A callback subclasses :class:`Callback` and overrides the events it needs; ``logs`` carry the
running numbers (``loss``, metrics, ``val_*``).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Callback", "History", "ProgressDisplay"]


class Callback:
    """Base class: every event is a no-op until overridden."""

    trainer: Trainer

    def on_train_begin(self, logs: dict) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict) -> None: ...

    def on_batch_end(self, step: int, logs: dict) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...

    def on_train_end(self, logs: dict) -> None: ...


class History(Callback):
    """Per-epoch logs (``history["loss"]``, ...) and the loss of every training step."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.step_losses: list[float] = []
        self.epochs: list[int] = []

    def on_batch_end(self, step: int, logs: dict) -> None:
        self.step_losses.append(logs["batch_loss"])

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epochs)}, keys={list(self.history)})"


def _format(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


class ProgressDisplay(Callback):
    """A live bar on a terminal; one line per epoch otherwise (logs, pipes, CI)."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.width = width

    def on_train_begin(self, logs: dict) -> None:
        self.epochs = logs["epochs"]
        self.steps = logs["steps_per_epoch"]

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self.started = time.perf_counter()
        self.last_draw = 0.0

    def on_batch_end(self, step: int, logs: dict) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step + 1 < self.steps:
            return
        self.last_draw = now
        done = int(self.width * (step + 1) / self.steps)
        bar = "=" * done + "." * (self.width - done)
        self.stream.write(
            f"\repoch {logs['epoch'] + 1}/{self.epochs} [{bar}] {step + 1}/{self.steps}  "
            f"loss {logs['loss']:.4f}"
        )
        self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        seconds = time.perf_counter() - self.started
        prefix = "\r" + " " * (self.width + 60) + "\r" if self.live else ""
        self.stream.write(f"{prefix}epoch {epoch + 1}/{self.epochs}  {_format(logs)}  ({seconds:.1f}s)\n")
        self.stream.flush()
