"""Level 10, checkpoint portability: the seed CNN on digits, Adam(1e-2), batches of 16, no
dropout, checkpointed after 6 of 10 steps (mid-epoch) with :func:`polyframe.checkpoint.save_checkpoint`.

- Same backend: resuming from the checkpoint in a fresh trainer and finishing the epoch gives
  the uninterrupted run's remaining losses and final weights bitwise.
- Across backends, in both directions between the backend under test and each built-in backend
  available here: after :func:`~polyframe.checkpoint.restore_checkpoint`, predictions match
  the writer's within the forward tolerance (rtol 1e-5, atol 1e-6), and the 4 steps continued on
  the reader match those continued on the writer within rtol 1e-4, atol 1e-5 (losses and
  weights; the optimizer-level tolerance for a few updates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import polyframe as pf
from polyframe.checkpoint import restore_checkpoint, save_checkpoint
from polyframe.errors import NonFiniteLossError

from polyframe_conformance import Checker
from polyframe_conformance._compare import Tolerance
from polyframe_conformance.harness import digits, trajectory_model

pytestmark = pytest.mark.pf_level("checkpoint")

PARTNERS = ("torch", "tensorflow", "jax")
"""The built-in backends a checkpoint must move to and from (in framework import order)."""
FORWARD = Tolerance(rtol=1e-5, atol=1e-6)
CONTINUED = Tolerance(rtol=1e-4, atol=1e-5)
SAMPLES, BATCH, SAVE_AT = 160, 16, 6


class _SaveAndStop(pf.Callback):
    def __init__(self, directory: Path) -> None:
        self.directory, self.path = directory, None

    def on_batch_end(self, step: int, logs: dict) -> None:
        if self.trainer.progress.step == SAVE_AT:
            self.path = save_checkpoint(self.trainer, self.directory)
            self.trainer.stop_training = True


def _data() -> tuple[np.ndarray, np.ndarray]:
    split = digits()
    return split.x_train[:SAMPLES], split.y_train[:SAMPLES]


def _trainer(backend: str) -> pf.Trainer:
    return pf.Trainer(trajectory_model(), backend=backend, seed=3, optimizer=pf.Adam(1e-2))


def _checkpointed(backend: str, directory: Path) -> tuple[pf.Trainer, Path]:
    x, y = _data()
    trainer, stop = _trainer(backend), _SaveAndStop(directory)
    trainer.fit(x, y, epochs=1, batch_size=BATCH, progress=False, callbacks=[stop])
    assert stop.path is not None, "no checkpoint was written"
    return trainer, stop.path


def _finish(trainer: pf.Trainer, path: Path) -> list[float]:
    x, y = _data()
    return trainer.fit(x, y, epochs=1, batch_size=BATCH, progress=False, resume_from=path).step_losses


def test_resume_on_the_same_backend_is_exact(pf_backend: str, pf_check: Checker, tmp_path: Path) -> None:
    x, y = _data()
    whole = _trainer(pf_backend)
    losses = whole.fit(x, y, epochs=1, batch_size=BATCH, progress=False).step_losses
    _, path = _checkpointed(pf_backend, tmp_path)
    resumed = _trainer(pf_backend)
    rest = _finish(resumed, path)
    pf_check.equal("losses of the steps after resuming", np.array(rest), np.array(losses[SAVE_AT:]))
    final, expected = resumed.get_weights(), whole.get_weights()
    for key in expected:
        pf_check.equal(f"final weight {key}", final[key], expected[key])


def _partners(backend: str) -> list[str]:
    registered = pf.registered_backends()
    return [b for b in PARTNERS if b != backend and b in registered
            and registered[b].availability().available]


def test_checkpoints_move_to_and_from_the_built_in_backends(pf_backend: str, pf_check: Checker,
                                                            tmp_path: Path) -> None:
    partners = _partners(pf_backend)
    if not partners:
        pytest.skip("no built-in backend is available here to exchange checkpoints with")
    x, _ = _data()
    for partner in partners:
        for writer, reader in ((pf_backend, partner), (partner, pf_backend)):
            source, path = _checkpointed(writer, tmp_path / f"{writer}-to-{reader}")
            expected = source.predict(x)
            continued = _finish(source, path)
            moved = _trainer(reader)
            restore_checkpoint(moved, path)
            pf_check.close(f"{writer} -> {reader}: predictions after loading", moved.predict(x),
                           expected, FORWARD)
            try:
                losses = _finish(moved, path)
            except NonFiniteLossError as error:
                pf_check.bound(f"{writer} -> {reader}: continued training loss", float("inf"),
                               float(np.finfo(np.float32).max), detail=str(error).split(";")[0])
            pf_check.close(f"{writer} -> {reader}: losses of the continued steps", losses, continued,
                           CONTINUED)
            final = moved.get_weights()
            for key, value in source.get_weights().items():
                pf_check.close(f"{writer} -> {reader}: weight {key} after continuing", final[key],
                               value, CONTINUED)
