"""Strict validation of a checkpoint's ``meta.json`` (types, ranges, presence, consistency).

``meta.json`` carries no checksum of its own (the tensor file's size and SHA-256 are in it); a
hand-edited or damaged file is caught here instead, field by field, before anything is loaded
into a trainer.
"""

from __future__ import annotations

import math
import re
from numbers import Real
from pathlib import Path
from typing import Any

from ._checks import FLOAT32_MAX, MAX_SEED
from .errors import CheckpointError

__all__ = ["check_meta", "DATA_KEYS"]

DATA_KEYS = ("samples", "batch_size", "shuffle")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Meta:
    """Raises :class:`CheckpointError` naming the file, the field and what was found."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, where: str, problem: str) -> None:
        raise CheckpointError(
            f"{self.file}: {where} {problem}; the metadata was edited or damaged, so the "
            "checkpoint cannot be trusted: restore the original meta.json or use another checkpoint")

    def entry(self, parent: dict[str, Any], key: str, where: str) -> Any:
        if key not in parent:
            self.fail(f"'{where}{key}'", "is missing")
        return parent[key]

    def mapping(self, parent: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        value = self.entry(parent, key, where)
        if not isinstance(value, dict):
            self.fail(f"'{where}{key}'", f"must be an object, got {_shown(value)}")
        return value

    def integer(self, parent: dict[str, Any], key: str, where: str = "", *, minimum: int = 0,
                maximum: int | None = None) -> int:
        value = self.entry(parent, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"'{where}{key}'", f"must be an integer, got {_shown(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            self.fail(f"'{where}{key}'", f"must be >= {minimum}{upper}, got {value}")
        return value

    def number(self, value: object, where: str, *, finite: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, Real):
            self.fail(where, f"must be a number, got {_shown(value)}")
        if finite and not math.isfinite(value):
            self.fail(where, f"must be a finite number, got {value}")
        if finite and abs(value) > FLOAT32_MAX:
            self.fail(where, f"must be a finite float32 number (at most {FLOAT32_MAX:.4g}), got {value}")
        return float(value)

    def text(self, parent: dict[str, Any], key: str, where: str = "", *, optional: bool = False,
             empty: bool = True) -> str | None:
        value = self.entry(parent, key, where)
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not empty and not value):
            self.fail(f"'{where}{key}'", f"must be {'a non-empty' if not empty else 'a'} string, "
                                         f"got {_shown(value)}")
        return value


def _shown(value: object) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def check_meta(file: Path, meta: dict[str, Any], tensors_name: str) -> None:
    """Check every field of ``meta`` (read from ``file``) before the checkpoint is used."""
    m = _Meta(file)
    m.number(m.entry(meta, "created", ""), "'created'")
    m.text(meta, "polyframe_version")
    backend = m.mapping(meta, "backend")
    m.text(backend, "name", "backend.", empty=False)
    m.text(backend, "framework", "backend.")
    m.text(backend, "framework_version", "backend.", optional=True)
    model = m.entry(meta, "model", "")
    if not isinstance(model, dict) or not model:
        m.fail("'model'", f"must be the model's config (the object model.to_config() returns), "
                          f"got {_shown(model)}")
    optimizer = m.mapping(meta, "optimizer")
    m.text(optimizer, "kind", "optimizer.", empty=False)
    m.text(optimizer, "spec", "optimizer.")
    rate = m.entry(meta, "learning_rate", "")
    if rate is not None and m.number(rate, "'learning_rate'") <= 0:
        m.fail("'learning_rate'", f"must be a positive number or null, got {rate}")
    _loss_scale(m, meta)
    m.integer(meta, "seed", maximum=MAX_SEED)
    data = _data(m, meta)
    epoch = _position(m, m.mapping(meta, "position"), data)
    _history(m, m.mapping(meta, "history"), epoch)
    tensors = m.mapping(meta, "tensors")
    if m.entry(tensors, "file", "tensors.") != tensors_name:
        m.fail("'tensors.file'", f"must be {tensors_name!r} (the tensor file inside the checkpoint "
                                 f"directory), got {_shown(tensors['file'])}")
    m.integer(tensors, "bytes", "tensors.")
    digest = m.text(tensors, "sha256", "tensors.")
    if not _SHA256.fullmatch(digest or ""):
        m.fail("'tensors.sha256'", f"must be 64 lowercase hex digits, got {_shown(digest)}")


def _loss_scale(m: _Meta, meta: dict[str, Any]) -> None:
    """``loss_scale`` is absent or null (no fp16 loss scaling), or the scale and its count."""
    scale = meta.get("loss_scale")
    if scale is None:
        return
    if not isinstance(scale, dict) or sorted(scale) != ["good_steps", "scale"]:
        m.fail("'loss_scale'", f"must be null or an object with exactly good_steps, scale, "
                               f"got {_shown(scale)}")
    if m.number(scale["scale"], "'loss_scale.scale'") <= 0:
        m.fail("'loss_scale.scale'", f"must be a positive number, got {scale['scale']}")
    m.integer(scale, "good_steps", "loss_scale.")


def _data(m: _Meta, meta: dict[str, Any]) -> dict[str, Any] | None:
    data = m.entry(meta, "data", "")
    if data is None:
        return None
    if not isinstance(data, dict) or sorted(data) != sorted(DATA_KEYS):
        m.fail("'data'", f"must be null or an object with exactly {', '.join(DATA_KEYS)}, "
                         f"got {_shown(data)}")
    m.integer(data, "samples", "data.", minimum=1)
    m.integer(data, "batch_size", "data.", minimum=1)
    if not isinstance(data["shuffle"], bool):
        m.fail("'data.shuffle'", f"must be true or false, got {_shown(data['shuffle'])}")
    return data


def _position(m: _Meta, position: dict[str, Any], data: dict[str, Any] | None) -> int:
    """Check the training position against itself and the data it was written for; returns
    the epoch."""
    epoch = m.integer(position, "epoch", "position.")
    batch = m.integer(position, "batch", "position.")
    step = m.integer(position, "step", "position.")
    total = m.number(m.entry(position, "loss_total", "position."), "'position.loss_total'")
    seen = m.integer(position, "seen", "position.")
    states = m.entry(position, "metric_states", "position.")
    if not isinstance(states, list) or not all(isinstance(s, dict) for s in states):
        m.fail("'position.metric_states'", f"must be a list of objects, got {_shown(states)}")
    for i, state in enumerate(states):
        for name, value in state.items():
            m.number(value, f"'position.metric_states[{i}].{name}'", finite=False)
    if batch == 0:
        if seen or total or states:
            m.fail("'position'", f"is at an epoch boundary (batch 0) but has seen={seen}, "
                                 f"loss_total={total}, {len(states)} metric state(s); all must be empty")
        return epoch
    if data is None:
        m.fail("'position.batch'", f"is {batch} (inside an epoch) but 'data' is null")
    steps = -(-data["samples"] // data["batch_size"])
    if batch > steps:
        m.fail("'position.batch'", f"is {batch} but an epoch of {data['samples']} samples in "
                                   f"batches of {data['batch_size']} has {steps}")
    expected = min(batch * data["batch_size"], data["samples"])
    if seen != expected:
        m.fail("'position.seen'", f"is {seen} but {batch} batch(es) of {data['batch_size']} hold "
                                  f"{expected} samples")
    if step < batch:
        m.fail("'position.step'", f"is {step}, fewer than the {batch} batches done in this epoch")
    return epoch


def _history(m: _Meta, history: dict[str, Any], epoch: int) -> None:
    """Per-epoch lists of numbers: every key as long as the others (at most ``epoch``), except
    validation keys (``val_*``), which may be shorter when validation began on a resume."""
    lengths: dict[str, int] = {}
    for key, values in history.items():
        if not isinstance(values, list):
            m.fail(f"'history.{key}'", f"must be a list of numbers, got {_shown(values)}")
        for value in values:
            m.number(value, f"'history.{key}'", finite=False)
        lengths[key] = len(values)
    main = {n for k, n in lengths.items() if not k.startswith("val_")}
    if len(main) > 1:
        m.fail("'history'", f"has lists of different lengths {lengths}; each holds one value per epoch")
    longest = max(main, default=max(lengths.values(), default=0))
    if longest > epoch or any(n > longest for n in lengths.values()):
        m.fail("'history'", f"has lists of lengths {lengths} but position.epoch is {epoch}; each "
                            "holds one value per finished epoch")
