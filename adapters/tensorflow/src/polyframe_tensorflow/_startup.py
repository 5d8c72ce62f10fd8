"""Loading TensorFlow quietly: its start-up notices are not polyframe's output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["quiet_startup"]

_NOISE = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"oneDNN custom operations are on.",
)


@contextlib.contextmanager
def quiet_startup() -> Iterator[None]:
    """Run the block (the ``import tensorflow``) without TensorFlow's start-up notices.

    ``TF_CPP_MIN_LOG_LEVEL=2`` (unless already set) hides TF's INFO and WARNING logs. TF 2.21
    still writes an abseil preamble and a oneDNN notice to file descriptor 2 while it loads,
    whatever that variable says, so fd 2 is held back during the block and then replayed
    without exactly those lines; anything else TF writes there still comes through.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if not any(n in line for n in _NOISE))
            if kept:
                os.write(2, kept)
