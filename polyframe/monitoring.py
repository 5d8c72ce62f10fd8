"""Callbacks that watch the run and act on it: checkpoints, early stopping, learning-rate changes.

A monitored quantity is a key of the epoch logs (``"loss"``, ``"val_loss"``, ``"accuracy"``,
...); ``mode="auto"`` minimises it unless its name contains ``"acc"``. A missing key is an error
that lists the keys there are. Their counters (best value, epochs waited) are not part of a
checkpoint: a resumed run starts them afresh.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ._checks import check_bool, check_float, check_int
from .callbacks import Callback
from .checkpoint import list_checkpoints, save_checkpoint
from .errors import ConfigError
from .optimizer_state import SCHEDULED

__all__ = ["ModelCheckpoint", "EarlyStopping", "ReduceLROnPlateau", "LearningRateScheduler",
           "get_learning_rate", "set_learning_rate"]


def get_learning_rate(trainer) -> float:
    """The learning rate ``trainer``'s next update uses."""
    if trainer.optimizer.constant_learning_rate is None:
        return float(trainer.optimizer.schedule(int(trainer.executable.get_optimizer_state()["step"])))
    return trainer.executable.get_learning_rate()


def set_learning_rate(trainer, learning_rate: float) -> None:
    """Use ``learning_rate`` for ``trainer``'s later updates (constant-rate optimizers only)."""
    if trainer.optimizer.constant_learning_rate is None:
        raise ConfigError(SCHEDULED)
    trainer.executable.set_learning_rate(check_float(learning_rate, "learning rate", low=0.0,
                                                     low_open=True))


class _Monitor:
    """Tracks the best value of one log key."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"monitor must be the name of a logged value such as 'val_loss', "
                              f"got {monitor!r}")
        self.monitor = monitor
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "acc" in monitor) else 1.0
        self.min_delta = check_float(min_delta, "min_delta", low=0.0)
        self.best = math.inf

    def check_begin(self, logs: dict, owner: str) -> None:
        """At train begin: a ``val_*`` key needs validation data (``logs["validation"]``)."""
        if self.monitor.startswith("val_") and not logs.get("validation", True):
            raise ConfigError(f"{owner} monitors {self.monitor!r}, but this fit has no validation data; "
                              "give validation_data or validation_split, or monitor a training key such as 'loss'")

    def value(self, logs: dict, owner: str) -> float:
        if self.monitor not in logs:
            raise ConfigError(f"{owner} monitors {self.monitor!r}, which the epoch logs lack "
                              f"(they have {sorted(logs)}); pass monitor= one of those, or give "
                              "validation data for val_* keys")
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best by more than ``min_delta`` (then it becomes the best)."""
        signed = self.sign * value
        if math.isfinite(signed) and signed < self.best - self.min_delta:
            self.best = signed
            return True
        return False


class ModelCheckpoint(Callback):
    """Writes checkpoints (see :mod:`polyframe.checkpoint`) into ``directory``.

    * last: at every epoch end (``save_last``), as ``ckpt-<step>``, keeping the newest ``keep``;
    * every N: after every ``every_n_steps`` training steps, also as ``ckpt-<step>``;
    * best: at an epoch end where ``monitor`` improved (``save_best``), as ``best-<step>``,
      keeping only the newest.

    A new checkpoint is complete on disk before an older one is removed. Unfinished writes left
    by a killed process (hidden ``.<name>.*.tmp`` directories) are removed when training starts.
    """

    def __init__(self, directory: str | os.PathLike, *, save_last: bool = True,
                 every_n_steps: int | None = None, save_best: bool = False,
                 monitor: str = "val_loss", mode: str = "auto", keep: int = 2) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise ConfigError(f"ModelCheckpoint needs a directory path, got {directory!r}")
        self.directory = Path(directory)
        self.save_last = check_bool(save_last, "save_last")
        self.every_n_steps = None if every_n_steps is None else check_int(
            every_n_steps, "every_n_steps", minimum=1)
        self.save_best = check_bool(save_best, "save_best")
        self.keep = check_int(keep, "keep", minimum=1)
        self._best = _Monitor(monitor, mode, 0.0)
        self._steps_per_epoch = 0

    def on_train_begin(self, logs: dict) -> None:
        if self.save_best:
            self._best.check_begin(logs, "ModelCheckpoint(save_best=True)")
        self._steps_per_epoch = logs["steps_per_epoch"]
        if self.directory.is_dir():
            for stale in self.directory.iterdir():
                if re.fullmatch(r"\.(ckpt|best)-\d+\..*\.tmp", stale.name):
                    shutil.rmtree(stale, ignore_errors=True)

    def on_batch_end(self, step: int, logs: dict) -> None:
        progress = self.trainer.progress
        if self.every_n_steps is None or progress.step % self.every_n_steps:
            return
        if self.save_last and progress.batch == self._steps_per_epoch:
            return  # the epoch-end checkpoint of this same step follows
        self._save("ckpt", self.keep)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self.save_last:
            self._save("ckpt", self.keep)
        if self.save_best and self._best.improved(self._best.value(logs, "ModelCheckpoint")):
            self._save("best", 1)

    def _save(self, prefix: str, keep: int) -> None:
        if any(p.name == f"{prefix}-{self.trainer.progress.step:09d}"
               for p in list_checkpoints(self.directory, prefix)):
            return
        save_checkpoint(self.trainer, self.directory, prefix=prefix, keep=keep)


class EarlyStopping(Callback):
    """Stops training once ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row (``patience=0`` acts as 1, as in Keras). With
    ``restore_best_weights`` the weights of the best epoch are put back when it stops."""

    def __init__(self, monitor: str = "val_loss", *, patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        self.patience = check_int(patience, "patience", minimum=0)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.wait = 0
        self.stopped_epoch: int | None = None
        """The epoch (counted from 1 over the run) after which it stopped training, if it did."""
        self._best_weights = None

    def on_train_begin(self, logs: dict) -> None:
        self._monitor.check_begin(logs, "EarlyStopping")

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self._monitor.improved(self._monitor.value(logs, "EarlyStopping")):
            self.wait = 0
            if self.restore_best_weights:
                self._best_weights = self.trainer.get_weights()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.trainer.stop_training = True
            self.stopped_epoch = self.trainer.epoch
            if self._best_weights is not None:
                self.trainer.set_weights(self._best_weights)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` (not below ``min_lr``) once ``monitor`` has not
    improved by more than ``min_delta`` for ``patience`` epochs, then waits ``cooldown`` epochs
    before counting again. Needs an optimizer with a constant learning rate."""

    def __init__(self, monitor: str = "val_loss", *, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto") -> None:
        self.factor = check_float(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", minimum=1)
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_float(min_lr, "min_lr", low=0.0)
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.wait = 0
        self._cooling = 0

    def on_train_begin(self, logs: dict) -> None:
        if self.trainer.optimizer.constant_learning_rate is None:
            raise ConfigError(f"ReduceLROnPlateau: {SCHEDULED}")
        self._monitor.check_begin(logs, "ReduceLROnPlateau")

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        value = self._monitor.value(logs, "ReduceLROnPlateau")
        if self._cooling:
            self._cooling -= 1
        if self._monitor.improved(value):
            self.wait = 0
            return
        if self._cooling:
            return
        self.wait += 1
        if self.wait >= self.patience:
            current = get_learning_rate(self.trainer)
            reduced = max(current * self.factor, self.min_lr)
            if reduced < current:
                set_learning_rate(self.trainer, reduced)
            self.wait, self._cooling = 0, self.cooldown


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to ``schedule(epoch, current_rate)``
    (``epoch`` counted from 0 over the whole run). Needs an optimizer with a constant learning
    rate; for per-step schedules give the optimizer a :mod:`polyframe.schedules` schedule."""

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            raise ConfigError(f"LearningRateScheduler needs a function (epoch, lr) -> lr, got "
                              f"{schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        rate = self.schedule(epoch, get_learning_rate(self.trainer))
        set_learning_rate(self.trainer, rate)
