"""TensorBoard logging for polyframe: a callback writing TensorBoard event files.

Use it directly (``callbacks=[TensorBoard("runs/exp1")]``), or set ``$POLYFRAME_TENSORBOARD_DIR``
and every fit logs into a subdirectory of it named after the backend and seed, through polyframe's
``polyframe_callbacks`` hook. Importing this package imports no framework; TensorBoard's writer
is imported when training starts.
"""

from __future__ import annotations

import os

import polyframe

from ._callback import TensorBoard

__all__ = ["TensorBoard", "ENV_LOGDIR", "polyframe_callbacks"]

ENV_LOGDIR = "POLYFRAME_TENSORBOARD_DIR"


@polyframe.hookimpl
def polyframe_callbacks(trainer: polyframe.Trainer) -> list[polyframe.Callback]:
    root = os.environ.get(ENV_LOGDIR, "").strip()
    if not root:
        return []
    return [TensorBoard(os.path.join(root, f"{trainer.backend_name}-seed{trainer.seed}"))]
