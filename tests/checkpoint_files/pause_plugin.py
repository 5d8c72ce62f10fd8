"""A polyframe plugin for the kill tests: with ``$POLYFRAME_TEST_PAUSE_AT_STEP=N`` every fit
stops forever after training step N (mid-epoch), after saying so on stderr."""

from __future__ import annotations

import os
import sys
import time

import polyframe as pf


class PauseAtStep(pf.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, step: int, logs: dict) -> None:
        if self.trainer.progress.step == self.step:
            print(f"paused at step {self.step}", file=sys.stderr, flush=True)
            while True:
                time.sleep(60)


@pf.hookimpl
def polyframe_callbacks(trainer):
    step = os.environ.get("POLYFRAME_TEST_PAUSE_AT_STEP")
    return [PauseAtStep(int(step))] if step else []
