"""Cached benchmark results, keyed by machine, framework versions, model, batch size, precision.

Entries live in ``$POLYFRAME_CACHE_DIR/bench`` (default ``~/.cache/polyframe/bench``), one JSON
file per key, written atomically. The recommender reads them back with :func:`lookup`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..hardware import Machine
from ..losses import Loss
from ..model import Sequential
from ..optimizers import Optimizer

__all__ = ["cache_dir", "model_signature", "cache_key", "store", "lookup"]


def cache_dir() -> Path:
    root = os.environ.get("POLYFRAME_CACHE_DIR") or Path.home() / ".cache" / "polyframe"
    return Path(root) / "bench"


def model_signature(model: Sequential, loss: Loss, optimizer: Optimizer) -> str:
    """A hash of the architecture, input shape, loss and optimizer (not the weights)."""
    text = repr((model.input_shape, model.layers, loss, optimizer))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(machine: Machine, signature: str, backend: str, batch_size: int, precision: str) -> str:
    text = json.dumps([machine.fingerprint(), signature, backend, batch_size, precision])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store(machine: Machine, signature: str, precision: str, rows: list[dict[str, Any]],
          threads: int | None = None) -> int:
    """Cache every successful polyframe row (with the thread count it ran with); returns how many
    were written. A new result for the same key replaces the old one."""
    written = 0
    for row in rows:
        if row["impl"] != "polyframe" or "median_step_ms" not in row:
            continue
        key = cache_key(machine, signature, row["backend"], row["batch_size"], precision)
        entry = {"machine": machine.to_dict(), "signature": signature, "precision": precision,
                 "threads": threads, **{k: v for k, v in row.items() if k != "losses"}}
        _write_atomic(cache_dir() / f"{key}.json", json.dumps(entry, indent=1))
        written += 1
    return written


def lookup(machine: Machine, signature: str, backend: str, batch_size: int,
           precision: str = "float32") -> dict[str, Any] | None:
    """The cached row for this exact workload on this machine, or ``None``."""
    path = cache_dir() / f"{cache_key(machine, signature, backend, batch_size, precision)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
