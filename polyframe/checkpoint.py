"""Portable checkpoints: canonical tensors in safetensors plus JSON metadata, written atomically.

A checkpoint is a directory ``<prefix>-<step:09d>/`` holding

* ``tensors.safetensors``: ``weights/<param key>`` (canonical layouts, float32),
  ``optimizer/<name>`` (:mod:`polyframe.optimizer_state`) and ``rng/<name>`` (the writing
  backend's dropout RNG position);
* ``meta.json``: format and version, the model config, versions, backend, seed, the training
  position (epoch, batches done in it, steps), the learning rate, the metrics history, the data
  signature and the SHA-256 and size of the tensor file.

Atomicity (see docs/checkpoints.md): both files are written into a fresh hidden directory in the
same parent, each flushed and fsynced, then the directory itself is fsynced and renamed to its
final name (one atomic ``rename``), then the parent is fsynced. A reader only considers
``<prefix>-<digits>`` directories, so a crash at any moment leaves either the complete new
checkpoint or none of it, and older checkpoints are removed only after the new one is in place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checkpoint_meta import check_meta
from .errors import CheckpointError, PolyframeError
from .optimizer_state import check_optimizer_state

if TYPE_CHECKING:
    from .model import Model
    from .trainer import Trainer

__all__ = [
    "FORMAT", "VERSION", "Checkpoint", "Progress", "ResumePoint", "save_checkpoint",
    "load_checkpoint", "latest_checkpoint", "list_checkpoints", "restore_checkpoint",
    "check_checkpoint_dir", "ENV_PAUSE",
]

FORMAT = "polyframe-checkpoint"
VERSION = 1
TENSORS = "tensors.safetensors"
META = "meta.json"
ENV_PAUSE = "POLYFRAME_CHECKPOINT_PAUSE"
"""Fault injection for tests: ``N`` makes this process stop forever half-way through writing the
tensor file of its N-th checkpoint, after saying so on stderr (so a test can kill it there)."""

_GROUPS = ("weights", "optimizer", "rng")
_writes = 0


@dataclass
class Progress:
    """Where a trainer stands inside training (its ``epoch`` is the epoch in progress)."""

    batch: int = 0
    """Batches done in the current epoch (0 at an epoch boundary)."""
    step: int = 0
    """Training steps done since the start of the run."""
    loss_total: float = 0.0
    seen: int = 0
    """The current epoch's summed sample losses and sample count (its running mean loss)."""
    data: dict[str, Any] | None = None
    """``samples``, ``batch_size``, ``shuffle`` of the data being fitted: the batch order."""


@dataclass(frozen=True)
class ResumePoint:
    """What :meth:`Trainer.fit` needs to continue inside an epoch."""

    batch: int
    loss_total: float
    seen: int
    metric_states: list[dict[str, float]]
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint read from disk."""

    path: Path
    meta: dict[str, Any]
    weights: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    rng_state: dict[str, np.ndarray]

    @property
    def backend(self) -> str:
        return self.meta["backend"]["name"]

    @property
    def epoch(self) -> int:
        return self.meta["position"]["epoch"]

    @property
    def step(self) -> int:
        return self.meta["position"]["step"]

    def model(self) -> Model:
        """The model this checkpoint was written for, rebuilt from its config."""
        from .model import Model

        return Model.from_config(self.meta["model"])


def _as_path(value: object, what: str) -> Path:
    """``value`` as a :class:`Path`; anything but a non-empty str or ``os.PathLike`` is refused."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise CheckpointError(f"{what} must be a path (str or os.PathLike), got {value!r} "
                              f"({type(value).__name__}); give a checkpoint directory")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise CheckpointError(f"{what} must be a non-empty path, got {value!r}; give a checkpoint "
                              "directory (use '.' for the current one)")
    return Path(text)


# -- writing ---------------------------------------------------------------------------------
def check_checkpoint_dir(directory: object) -> Path:
    """Create ``directory`` if needed and make sure checkpoints can be written there (a temporary
    file is created and removed), so a bad directory is reported before any training."""
    path = _as_path(directory, "the checkpoint directory")
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} exists but is not a directory; give "
                              "the path of a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create checkpoint directory {path}: {exc.strerror or exc}; "
                              "give a directory in a writable location") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".polyframe-probe-"):
            pass
    except OSError as exc:
        raise CheckpointError(f"checkpoint directory {path} is not writable: {exc.strerror or exc}; "
                              "fix its permissions or give another directory") from None
    return path


def _metric_states(trainer: Trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in vars(metric).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for _, metric in trainer.metrics]


def _metadata(trainer: Trainer, history: dict[str, list[float]]) -> dict[str, Any]:
    from . import __version__

    progress: Progress = trainer.progress
    constant = trainer.optimizer.constant_learning_rate
    return {
        "format": FORMAT, "version": VERSION, "created": time.time(),
        "polyframe_version": __version__,
        "backend": {"name": trainer.backend_name, "framework": trainer.backend.framework,
                    "framework_version": trainer.backend.framework_version()},
        "model": trainer.model.to_config(),
        "optimizer": {"kind": trainer.optimizer.kind, "spec": repr(trainer.optimizer)},
        "learning_rate": None if constant is None else trainer.executable.get_learning_rate(),
        "loss_scale": trainer.executable.get_loss_scale(),
        "seed": trainer.seed,
        "position": {"epoch": trainer.epoch, "batch": progress.batch, "step": progress.step,
                     "loss_total": progress.loss_total, "seen": progress.seen,
                     "metric_states": _metric_states(trainer) if progress.batch else []},
        "data": progress.data,
        "history": history,
    }


def _pause_here() -> None:
    """The :data:`ENV_PAUSE` fault-injection point (a no-op unless the variable is set)."""
    wanted = os.environ.get(ENV_PAUSE, "").strip()
    if wanted.isdigit() and int(wanted) == _writes:
        print(f"polyframe: checkpoint write {_writes} paused", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def _write(path: Path, data: bytes, *, pause: bool = False) -> None:
    with open(path, "xb") as handle:
        if pause:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            _pause_here()
            handle.write(data[len(data) // 2:])
        else:
            handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(directory: str | os.PathLike, name: str, tensors: dict[str, np.ndarray],
                     meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``meta`` as the checkpoint ``directory/name``, atomically."""
    from safetensors.numpy import save

    global _writes
    directory = Path(directory)
    final = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise CheckpointError(f"checkpoint {final} already exists; checkpoints are never "
                                  "overwritten (remove it, or write to another directory)")
        blob = save(tensors)
        meta = {**meta, "tensors": {"file": TENSORS, "bytes": len(blob),
                                    "sha256": hashlib.sha256(blob).hexdigest()}}
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=directory))
        try:
            _writes += 1
            _write(staging / TENSORS, blob, pause=bool(os.environ.get(ENV_PAUSE)))
            _write(staging / META, json.dumps(meta, indent=1, allow_nan=True).encode())
            _fsync_directory(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_directory(directory)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {final}: {exc.strerror or exc}; check "
                              "the directory's permissions and free space") from None
    return final


def _tensors(trainer: Trainer) -> dict[str, np.ndarray]:
    groups = {"weights": trainer.executable.get_weights(),
              "optimizer": check_optimizer_state(trainer.optimizer, _trainable_shapes(trainer.model),
                                                 trainer.executable.get_optimizer_state()),
              "rng": trainer.executable.get_rng_state()}
    return {f"{group}/{name}": np.array(array, order="C", copy=True)
            for group, arrays in groups.items() for name, array in arrays.items()}


def save_checkpoint(trainer: Trainer, directory: str | os.PathLike, *, prefix: str = "ckpt",
                    keep: int | None = None, history: dict[str, list[float]] | None = None) -> Path:
    """Write ``trainer``'s full training state to ``directory/<prefix>-<step>``; then, with
    ``keep``, remove all but the newest ``keep`` checkpoints of that prefix. Returns the path."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", prefix):
        raise CheckpointError(f"checkpoint prefix must be a letter then letters, digits or _, "
                              f"got {prefix!r}")
    if history is None:
        history = trainer.history.history if trainer.history is not None else {}
    path = write_checkpoint(directory, f"{prefix}-{trainer.progress.step:09d}", _tensors(trainer),
                            _metadata(trainer, copy.deepcopy(history)))
    trainer.last_checkpoint = path
    if keep is not None:
        for old in list_checkpoints(directory, prefix)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


# -- reading ---------------------------------------------------------------------------------
def list_checkpoints(directory: str | os.PathLike, prefix: str = "ckpt") -> list[Path]:
    """Complete checkpoints ``<prefix>-<step>`` in ``directory``, oldest step first (not
    verified; unfinished writes, which are hidden temporary directories, are never listed)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := pattern.fullmatch(p.name)) and (p / META).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike, prefix: str = "ckpt") -> Path | None:
    found = list_checkpoints(directory, prefix)
    return found[-1] if found else None


def _resolve(path: Path) -> Path:
    if (path / META).is_file() or not path.is_dir():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path} holds no polyframe checkpoint (no ckpt-<step> directory "
                              "with meta.json); give a checkpoint directory or a --checkpoint-dir")
    return latest


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a polyframe checkpoint: it has no {META}") from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path / META} is not valid checkpoint metadata "
                              f"({exc or 'nested too deeply'}); the checkpoint is corrupted, use an "
                              "earlier one") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a polyframe checkpoint ({META} has no "
                              f"format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is checkpoint format version {meta.get('version')!r}; this "
                              f"polyframe reads version {VERSION}; upgrade polyframe")
    check_meta(path / META, meta, TENSORS)
    return meta


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint (or, given a directory of them, the newest); raises
    :class:`CheckpointError` if it is missing, not a checkpoint, truncated or corrupted."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = _resolve(_as_path(path, "the checkpoint path"))
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a polyframe checkpoint: a checkpoint is a directory "
                              f"with {TENSORS} and {META}")
    meta = _read_meta(path)
    expected = meta["tensors"]
    tensors = path / TENSORS
    if tensors.exists() and not tensors.is_file():
        raise CheckpointError(f"{tensors} is not a regular file (a device, pipe or directory); the "
                              "checkpoint is damaged, use an earlier one")
    try:
        with tensors.open("rb") as handle:  # at most one byte more than recorded: a longer file is refused
            blob = handle.read(expected["bytes"] + 1)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path / TENSORS}: {exc.strerror or exc}") from None
    if len(blob) != expected["bytes"] or hashlib.sha256(blob).hexdigest() != expected["sha256"]:
        raise CheckpointError(
            f"{path / TENSORS} is truncated or corrupted ({len(blob)} bytes, expected "
            f"{expected['bytes']}; SHA-256 mismatch); use an earlier checkpoint")
    try:
        arrays = load(blob)
    except SafetensorError as exc:
        raise CheckpointError(f"{path / TENSORS} cannot be decoded: {exc}") from None
    groups: dict[str, dict[str, np.ndarray]] = {g: {} for g in _GROUPS}
    for key, array in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise CheckpointError(f"{path / TENSORS} has an unknown tensor {key!r}")
        groups[group][name] = array
    return Checkpoint(path, meta, groups["weights"], groups["optimizer"], groups["rng"])


# -- restoring ------------------------------------------------------------------------------
def _trainable_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    return {key: tuple(spec.shape) for key, spec in model.param_specs() if spec.trainable}


def _check_model(model: Model, checkpoint: Checkpoint) -> None:
    expected = {key: tuple(spec.shape) for key, spec in model.param_specs()}
    found = {key: tuple(a.shape) for key, a in checkpoint.weights.items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{checkpoint.path} is a checkpoint of a different model: its parameters lack "
            f"{missing[:4] or 'nothing'} and add {extra[:4] or 'nothing'}; load it into "
            "checkpoint.model() or pick the checkpoint of this model")
    for key, shape in expected.items():
        if found[key] != shape:
            raise CheckpointError(
                f"{checkpoint.path}: parameter {key!r} has shape {found[key]} in the checkpoint "
                f"but {shape} in this model; the layer was changed since it was saved")
    if checkpoint.meta.get("model") != model.to_config():
        raise CheckpointError(
            f"{checkpoint.path} was written for a model whose config differs from this one "
            "(same parameter shapes, different layers or options); rebuild the model with "
            "checkpoint.model() or pick the checkpoint of this model")


def _check_metric_states(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """Saved running metric counts must be the numeric attributes of this trainer's metrics."""
    states = checkpoint.meta["position"]["metric_states"]
    if states and len(states) != len(trainer.metrics):
        raise CheckpointError(
            f"{checkpoint.path} holds the running state of {len(states)} metric(s) but the trainer "
            f"has {len(trainer.metrics)}; resume with the metrics the checkpoint was written with")
    for (_, metric), state, current in zip(trainer.metrics, states, _metric_states(trainer)):
        if set(state) != set(current):
            raise CheckpointError(
                f"{checkpoint.path} holds metric state {sorted(state)} for {metric.name!r}, which "
                f"keeps {sorted(current)}; resume with the metrics the checkpoint was written with")


def _load_state(trainer: Trainer, path: Path, weights: dict[str, np.ndarray],
                state: dict[str, np.ndarray] | None, rate: float | None,
                rng: dict[str, np.ndarray], scale: dict[str, float] | None) -> None:
    """Put the checked state into the executable; if the backend refuses part of it, put the
    previous state back so the trainer is unchanged."""
    executable = trainer.executable
    before = (executable.get_weights(), executable.get_optimizer_state() if state is not None else None,
              executable.get_learning_rate() if rate is not None else None,
              executable.get_rng_state() if rng else None,
              executable.get_loss_scale() if scale is not None else None)

    def apply(weights, state, rate, rng, scale) -> None:
        executable.set_weights(weights)
        if state is not None:
            executable.set_optimizer_state(state)
        if rate is not None:
            executable.set_learning_rate(float(rate))
        if rng:
            executable.set_rng_state(rng)
        if scale is not None:
            executable.set_loss_scale(scale)

    try:
        apply(weights, state, rate, rng, scale)
    except Exception as exc:  # a backend that cannot take the state: say which part failed
        try:
            apply(*before)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        if isinstance(exc, PolyframeError):
            raise
        raise CheckpointError(f"backend {trainer.backend_name!r} could not load {path}: "
                              f"{type(exc).__name__}: {exc}") from exc


def restore_checkpoint(trainer: Trainer, checkpoint: Checkpoint | str | os.PathLike, *,
                       optimizer: bool = True, data: dict[str, Any] | None = None) -> ResumePoint:
    """Load ``checkpoint`` into ``trainer``: weights, optimizer state, learning rate, position,
    fp16-mixed's loss scale and (same backend only) the dropout RNG. Everything is checked
    first; on any mismatch a :class:`CheckpointError` is raised and the trainer is unchanged. ``data`` (the signature of
    the data about to be fitted) must then match the checkpoint's."""
    from .trainer import Trainer

    if not isinstance(trainer, Trainer):
        raise CheckpointError(f"restore_checkpoint needs a polyframe.Trainer to load into, got "
                              f"{type(trainer).__name__}; build one for checkpoint.model() first")
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    meta = checkpoint.meta
    if data is not None and meta["data"] not in (None, data):
        raise CheckpointError(
            f"{checkpoint.path} was written while fitting different data ({meta['data']}), but "
            f"this fit has {data}; resume with the same data, batch size and shuffle setting")
    _check_model(trainer.model, checkpoint)
    weights = trainer.model.check_weights(dict(checkpoint.weights))
    state = None
    if optimizer:
        if meta["optimizer"]["kind"] != trainer.optimizer.kind:
            raise CheckpointError(
                f"{checkpoint.path} holds {meta['optimizer']['kind']} optimizer state but the "
                f"trainer uses {trainer.optimizer.kind}; use the same optimizer to resume")
        state = check_optimizer_state(trainer.optimizer, _trainable_shapes(trainer.model),
                                      checkpoint.optimizer_state)
    position = meta["position"]
    if meta["seed"] != trainer.seed:
        raise CheckpointError(f"{checkpoint.path} was written with seed {meta['seed']}, the "
                              f"trainer has seed {trainer.seed}; resume with the same seed so the "
                              "batch order continues")
    _check_metric_states(trainer, checkpoint)
    rate = meta["learning_rate"] if trainer.optimizer.constant_learning_rate is not None else None
    rng = checkpoint.rng_state if checkpoint.backend == trainer.backend_name else {}
    # a loss scale moves only between runs that both scale (fp16-mixed written, fp16-mixed read)
    scale = meta.get("loss_scale") if trainer.executable.get_loss_scale() is not None else None
    _load_state(trainer, checkpoint.path, weights, state, rate, rng, scale)
    trainer.epoch = position["epoch"]
    trainer.progress = Progress(position["batch"], position["step"], position["loss_total"],
                                position["seen"], meta.get("data"))
    trainer.last_checkpoint = checkpoint.path
    return ResumePoint(position["batch"], position["loss_total"], position["seen"],
                       position.get("metric_states", []), copy.deepcopy(meta.get("history", {})))
