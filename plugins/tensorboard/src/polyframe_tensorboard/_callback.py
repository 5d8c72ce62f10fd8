"""The TensorBoard callback: scalar summaries in event files, through TensorBoard's own writer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polyframe
from polyframe.monitoring import get_learning_rate

__all__ = ["TensorBoard"]


class TensorBoard(polyframe.Callback):
    """Writes ``epoch/<key>`` for every epoch log (loss, metrics, ``val_*``) and
    ``epoch/learning_rate`` at step = the epoch number (from 1 over the whole run), and, every
    ``batch_every`` training steps, ``batch/loss`` at step = the global training step.

    Events go to one file per fit in ``logdir`` (``events.out.tfevents.*``), flushed at every
    epoch end; ``tensorboard --logdir`` reads them.
    """

    def __init__(self, logdir: str | os.PathLike, *, batch_every: int = 1) -> None:
        if isinstance(batch_every, bool) or not isinstance(batch_every, int) or batch_every < 0:
            raise polyframe.ConfigError(f"batch_every must be an int >= 0 (0: no batch logs), "
                                        f"got {batch_every!r}")
        self.logdir = Path(logdir)
        self.batch_every = batch_every
        self._writer = None

    def _scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def on_train_begin(self, logs: dict) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.logdir))

    def on_batch_end(self, step: int, logs: dict) -> None:
        global_step = self.trainer.progress.step
        if self.batch_every and global_step % self.batch_every == 0:
            self._scalar("batch/loss", float(logs["batch_loss"]), global_step)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        number = self.trainer.epoch
        for key, value in logs.items():
            self._scalar(f"epoch/{key}", float(value), number)
        self._scalar("epoch/learning_rate", get_learning_rate(self.trainer), number)
        self._writer.flush()

    def on_train_end(self, logs: dict) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
