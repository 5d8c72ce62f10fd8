"""Callbacks around the training loop: the base class, the history, the progress display, a CSV
log, and the callbacks plugins add through the ``polyframe_callbacks`` hook.

A callback subclasses :class:`Callback` and overrides the events it needs; ``logs`` carry the
running numbers (``loss``, metrics, ``val_*``). The callbacks that watch a metric and act on the
run (checkpoints, early stopping, learning-rate changes) are in :mod:`polyframe.monitoring`.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .errors import ConfigError

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Callback", "History", "ProgressDisplay", "CSVLogger", "plugin_callbacks"]


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

    def __init__(self, history: dict[str, list[float]] | None = None) -> None:
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        """Per-epoch values; a resumed run starts with the checkpoint's."""
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
        self.first = logs.get("initial_epoch", 0)
        self.epochs = self.first + logs["epochs"]
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
            f"\repoch {self.first + logs['epoch'] + 1}/{self.epochs} [{bar}] {step + 1}/{self.steps}  "
            f"loss {logs['loss']:.4f}"
        )
        self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        seconds = time.perf_counter() - self.started
        prefix = "\r" + " " * (self.width + 60) + "\r" if self.live else ""
        self.stream.write(f"{prefix}epoch {self.first + epoch + 1}/{self.epochs}  {_format(logs)}  "
                          f"({seconds:.1f}s)\n")
        self.stream.flush()


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` (counted from 1 over the whole run) then the logs.

    ``append=True`` adds to an existing file (e.g. when resuming); the header is written only
    when the file is new or empty. Each row is flushed as it is written.
    """

    def __init__(self, path: str | os.PathLike, *, append: bool = False, separator: str = ",") -> None:
        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise ConfigError(f"CSVLogger needs a file path (str or os.PathLike), got {path!r}")
        self.path = Path(path)
        self.append = bool(append)
        self.separator = separator
        self._keys: list[str] | None = None
        self._file: TextIO | None = None

    def on_train_begin(self, logs: dict) -> None:
        """Check that the file can be written; an existing file is replaced (or appended to)
        only when the first row is written, so a fit that fails before it leaves the file as it was."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", newline=""):
                pass
        except OSError as exc:
            raise ConfigError(f"CSVLogger cannot open {self.path}: {exc.strerror or exc}") from None
        self._keys = None
        if self.append and self.path.stat().st_size > 0:
            with open(self.path, newline="") as handle:
                header = next(csv.reader(handle, delimiter=self.separator), None)
            self._keys = header[1:] if header else None

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "a" if self.append else "w", newline="")
        writer = csv.writer(self._file, delimiter=self.separator)
        if self._keys is None:
            self._keys = list(logs)
            writer.writerow(["epoch", *self._keys])
        writer.writerow([self.trainer.epoch, *(logs.get(key, "") for key in self._keys)])
        self._file.flush()

    def on_train_end(self, logs: dict) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def plugin_callbacks(trainer: Trainer) -> list[Callback]:
    """The callbacks every installed plugin's ``polyframe_callbacks(trainer)`` hook returns."""
    from .plugins import plugin_manager

    found: list[Callback] = []
    for callbacks in plugin_manager().hook.polyframe_callbacks(trainer=trainer):
        for callback in callbacks or ():
            if not isinstance(callback, Callback):
                raise ConfigError(f"a polyframe plugin returned {callback!r} from "
                                  "polyframe_callbacks; it must be a polyframe.Callback")
            found.append(callback)
    return found
