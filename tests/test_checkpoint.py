"""Checkpoints: exact resume after SIGKILL (mid-epoch and mid-write), portability across backends,
and clear errors for files that are not good checkpoints of this model."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import polyframe as pf
from polyframe.checkpoint import (
    ENV_PAUSE, TENSORS, list_checkpoints, load_checkpoint, restore_checkpoint, save_checkpoint)

BACKENDS = ("torch", "tensorflow", "jax")
FILES = Path(__file__).parent / "checkpoint_files"
FORWARD = {"rtol": 1e-5, "atol": 1e-6}
TRAJECTORY = {"rtol": 1e-4, "atol": 1e-5}
"""Training continued on another backend: its per-step losses and the weights after 3 more updates
(the conformance suite's tolerance for many optimizer updates)."""


# -- SIGKILL, then resume -----------------------------------------------------------------------
def _train(backend: str, *extra: object, env: dict[str, str] | None = None,
           kill_on: str | None = None, timeout: float = 240) -> str:
    """Run ``polyframe train`` (3 epochs of 9 steps on the wine data); with ``kill_on``,
    SIGKILL it as soon as that line appears on its stderr. Returns its stderr."""
    command = [sys.executable, "-m", "polyframe", "train", str(FILES / "mlp_dropout.py"),
               "--data", "wine", "--epochs", "3", "--batch-size", "16", "--backend", backend,
               *map(str, extra)]
    environ = {**os.environ, "POLYFRAME_PLUGINS": "pause_plugin", **(env or {}),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(FILES), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while kill_on is not None and time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            assert process.poll() is None, f"exited before {kill_on!r}: {''.join(seen)[-2000:]}"
            continue
        if kill_on in seen[-1]:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=max(1.0, deadline - time.monotonic()))
    time.sleep(0.1)
    while not lines.empty():
        seen.append(lines.get())
    if kill_on is None:
        assert process.returncode == 0, "".join(seen)[-3000:]
    else:
        assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    return "".join(seen)


def _assert_all_valid(directory: Path) -> list[str]:
    names = []
    for path in list_checkpoints(directory):
        checkpoint = load_checkpoint(path)
        assert all(np.isfinite(a).all() for a in checkpoint.weights.values())
        names.append(path.name)
    return names


@pytest.mark.parametrize("backend", [
    "torch", pytest.param("tensorflow", marks=pytest.mark.slow), pytest.param("jax", marks=pytest.mark.slow)])
def test_sigkill_mid_epoch_and_mid_write_then_resume_equals_uninterrupted(backend, tmp_path):
    from polyframe.cli import main

    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(["train", str(FILES / "mlp_dropout.py"), "--data", "wine", "--epochs", "3",
                 "--batch-size", "16", "--backend", backend, "--checkpoint-dir", str(reference)]) == 0

    # killed after step 14 of 27 (epoch 2, batch 5); checkpoints every 4 steps and each epoch
    _train(backend, "--checkpoint-dir", run, "--checkpoint-every", 4,
           env={"POLYFRAME_TEST_PAUSE_AT_STEP": "14"}, kill_on="paused at step 14")
    assert _assert_all_valid(run) == ["ckpt-000000009", "ckpt-000000012"]

    # resumed at step 12, killed half-way through writing its 2nd checkpoint (step 18)
    _train(backend, "--checkpoint-dir", run, "--checkpoint-every", 4, "--resume", run,
           env={ENV_PAUSE: "2"}, kill_on="checkpoint write 2 paused")
    staging = [p for p in run.iterdir() if p.name.startswith(".ckpt-000000018.")]
    assert len(staging) == 1 and (staging[0] / TENSORS).stat().st_size > 0
    assert _assert_all_valid(run) == ["ckpt-000000012", "ckpt-000000016"]
    with pytest.raises(pf.CheckpointError, match="no polyframe checkpoint"):
        load_checkpoint(staging[0])

    _train(backend, "--checkpoint-dir", run, "--checkpoint-every", 4, "--resume", run)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    finished, uninterrupted = load_checkpoint(run), load_checkpoint(reference)
    assert finished.step == uninterrupted.step == 27 and finished.epoch == 3
    for group in ("weights", "optimizer_state"):
        got, want = getattr(finished, group), getattr(uninterrupted, group)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{backend} {group} {key}")
    assert finished.meta["history"] == uninterrupted.meta["history"]


# -- the same model on every backend ---------------------------------------------------------
def _model(hidden: int = 8) -> pf.Sequential:
    return pf.Sequential([pf.Dense(hidden, activation="tanh"), pf.Dense(3)], input_shape=(5,))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(48, 5)).astype(np.float32), rng.integers(0, 3, 48)


def _trainer(backend: str, model: pf.Model | None = None, **options) -> pf.Trainer:
    return pf.Trainer(model or _model(), optimizer=options.pop("optimizer", pf.Adam(1e-2)),
                      backend=backend, seed=1, **options)


class _SaveAndStop(pf.Callback):
    """Writes a checkpoint after training step ``step`` (mid-epoch) and ends the fit there."""

    def __init__(self, step: int, directory: Path) -> None:
        self.step, self.directory, self.path = step, directory, None

    def on_batch_end(self, step: int, logs: dict) -> None:
        if self.trainer.progress.step == self.step:
            self.path = save_checkpoint(self.trainer, self.directory)
            self.trainer.stop_training = True


@pytest.mark.parametrize("source", BACKENDS)
def test_checkpoint_loads_on_every_backend_and_training_continues(source, data, tmp_path):
    x, y = data
    original, stop = _trainer(source), _SaveAndStop(9, tmp_path)
    original.fit(x, y, epochs=2, batch_size=8, progress=False, callbacks=[stop])
    path = stop.path
    expected = original.predict(x)
    rest = original.fit(x, y, epochs=2, batch_size=8, progress=False, resume_from=path)
    assert len(rest.step_losses) == 3
    for target in BACKENDS:
        moved = _trainer(target)
        restore_checkpoint(moved, path)
        np.testing.assert_allclose(moved.predict(x), expected, **FORWARD,
                                   err_msg=f"{source} -> {target} predictions")
        continued = moved.fit(x, y, epochs=2, batch_size=8, progress=False, resume_from=path)
        assert (moved.epoch, moved.progress.step) == (2, 12)
        np.testing.assert_allclose(continued.step_losses, rest.step_losses, **TRAJECTORY,
                                   err_msg=f"{source} -> {target} losses")
        for key, value in original.get_weights().items():
            np.testing.assert_allclose(moved.get_weights()[key], value, **TRAJECTORY,
                                       err_msg=f"{source} -> {target} {key}")



class _SetLossScale(pf.Callback):
    """Puts the executable's fp16 loss scale at ``state`` after training step ``step``."""

    def __init__(self, step: int, state: dict[str, float]) -> None:
        self.step, self.state = step, state

    def on_batch_end(self, step: int, logs: dict) -> None:
        if self.trainer.progress.step == self.step:
            self.trainer.executable.set_loss_scale(self.state)


def test_fp16_mixed_resume_restores_the_loss_scale_and_continues_exactly(data, tmp_path):
    # scale 2^10 after step 3 with 1992 finite steps counted: the 2000th finite step (step 11)
    # doubles it, i.e. after the checkpoint at step 9, which must carry good_steps 1998
    x, y = data
    set_scale = _SetLossScale(3, {"scale": 2.0 ** 10, "good_steps": 1992})
    uninterrupted = _trainer("torch", precision="fp16-mixed")
    uninterrupted.fit(x, y, epochs=2, batch_size=8, progress=False, callbacks=[set_scale])
    assert uninterrupted.executable.get_loss_scale() == {"scale": 2.0 ** 11, "good_steps": 1}
    interrupted, stop = _trainer("torch", precision="fp16-mixed"), _SaveAndStop(9, tmp_path)
    interrupted.fit(x, y, epochs=2, batch_size=8, progress=False, callbacks=[set_scale, stop])
    assert load_checkpoint(stop.path).meta["loss_scale"] == {"scale": 2.0 ** 10, "good_steps": 1998}
    resumed = _trainer("torch", precision="fp16-mixed")
    resumed.fit(x, y, epochs=2, batch_size=8, progress=False, resume_from=stop.path)
    assert resumed.executable.get_loss_scale() == uninterrupted.executable.get_loss_scale()
    for key, value in uninterrupted.get_weights().items():
        np.testing.assert_array_equal(resumed.get_weights()[key], value, err_msg=key)
    float32 = _trainer("torch")  # a float32 run takes the weights and ignores the scale
    restore_checkpoint(float32, stop.path)
    assert float32.executable.get_loss_scale() is None

# -- refused files change nothing ------------------------------------------------------------
def _state(trainer: pf.Trainer) -> dict[str, np.ndarray]:
    return {**trainer.get_weights(),
            **{f"opt:{k}": v for k, v in trainer.executable.get_optimizer_state().items()}}


def _refuses(trainer: pf.Trainer, path: Path, message: str, data) -> None:
    before, epoch = _state(trainer), trainer.epoch
    with pytest.raises(pf.CheckpointError, match=message):
        trainer.fit(*data, epochs=3, batch_size=8, progress=False, resume_from=path)
    after = _state(trainer)
    assert trainer.epoch == epoch and after.keys() == before.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    trainer = _trainer("torch")
    trainer.fit(*data, epochs=1, batch_size=8, progress=False)
    return save_checkpoint(trainer, tmp_path_factory.mktemp("good"))


@pytest.fixture
def victim(data):
    trainer = _trainer("torch")
    trainer.fit(*data, epochs=1, batch_size=16, progress=False)
    return trainer


def _copy(path: Path, to: Path) -> Path:
    to.mkdir()
    for item in path.iterdir():
        (to / item.name).write_bytes(item.read_bytes())
    return to


def test_truncated_tensor_file_is_refused(saved, victim, data, tmp_path):
    copy = _copy(saved, tmp_path / "ckpt-000000006")
    blob = (copy / TENSORS).read_bytes()
    (copy / TENSORS).write_bytes(blob[: len(blob) - 100])
    _refuses(victim, copy, "truncated or corrupted", data)


def test_flipped_byte_is_refused(saved, victim, data, tmp_path):
    copy = _copy(saved, tmp_path / "ckpt-000000006")
    blob = bytearray((copy / TENSORS).read_bytes())
    blob[-3] ^= 0xFF
    (copy / TENSORS).write_bytes(bytes(blob))
    _refuses(victim, copy, "SHA-256 mismatch", data)



@pytest.mark.parametrize("replace", ["/dev/zero", "fifo", "longer"])
def test_a_tensor_file_that_is_a_device_a_pipe_or_too_long_is_refused(saved, victim, data, tmp_path, replace):
    copy = _copy(saved, tmp_path / "ckpt-000000006")
    tensors = copy / TENSORS
    blob = tensors.read_bytes()
    tensors.unlink()
    if replace == "/dev/zero":
        tensors.symlink_to("/dev/zero")
    elif replace == "fifo":
        os.mkfifo(tensors)
    else:
        tensors.write_bytes(blob + b"\0" * 10_000_000)
    _refuses(victim, copy, "not a regular file" if replace != "longer" else "truncated or corrupted", data)



def _rewrite_tensors(checkpoint: Path, change) -> None:
    """Apply ``change`` to the tensors and re-seal them (size and SHA-256 in meta.json)."""
    import hashlib

    from safetensors.numpy import load, save

    arrays = load((checkpoint / TENSORS).read_bytes())
    change(arrays)
    blob = save(arrays)
    (checkpoint / TENSORS).write_bytes(blob)
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["tensors"].update(bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    (checkpoint / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("slot, value, message", [("m", np.nan, "NaN or infinite"), ("v", np.inf, "NaN or infinite"),
                                                  ("v", -1.0, "negative values")])
def test_a_resealed_optimizer_state_with_bad_values_is_refused(saved, victim, data, tmp_path, slot, value, message):
    copy = _copy(saved, tmp_path / "ckpt-000000006")

    def poison(arrays):
        name = next(k for k in arrays if k.startswith("optimizer/") and k.endswith(f"/{slot}"))
        arrays[name] = np.full_like(arrays[name], value)

    _rewrite_tensors(copy, poison)
    _refuses(victim, copy, message, data)

def test_deeply_nested_metadata_is_refused(saved, victim, data, tmp_path):
    copy = _copy(saved, tmp_path / "ckpt-000000006")
    (copy / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    _refuses(victim, copy, "not valid checkpoint metadata", data)

def test_checkpoint_of_another_model_is_refused(saved, data):
    other = _trainer("torch", pf.Sequential([pf.Dense(4), pf.Dense(2, name="head"), pf.Dense(3)],
                                            input_shape=(5,)))
    _refuses(other, saved, "different model", data)


def test_changed_layer_shape_is_refused(saved, data):
    wider = _trainer("torch", _model(hidden=9))
    _refuses(wider, saved, r"'dense\.kernel' has shape \(5, 8\) in the checkpoint but \(5, 9\)", data)


def test_changed_layer_option_is_refused(saved, data):
    relu = _trainer("torch", pf.Sequential([pf.Dense(8, activation="relu"), pf.Dense(3)],
                                           input_shape=(5,)))
    _refuses(relu, saved, "config differs", data)


@pytest.mark.parametrize("make", ["empty dir", "plain file", "json of something else", "garbage"])
def test_not_a_checkpoint_is_refused(make, victim, data, tmp_path):
    target = tmp_path / "thing"
    if make == "plain file":
        target.write_bytes(b"\x00" * 64)
    else:
        target.mkdir()
        if make == "json of something else":
            (target / "meta.json").write_text(json.dumps({"format": "other"}))
        elif make == "garbage":
            (target / "meta.json").write_bytes(b"\xff\xfe not json")
    _refuses(victim, target, "not a polyframe checkpoint|no polyframe checkpoint|not valid", data)


def test_other_optimizer_and_other_data_are_refused(saved, data):
    _refuses(_trainer("torch", optimizer=pf.SGD(0.1)), saved, "adam optimizer state", data)
    with pytest.raises(pf.CheckpointError, match="batch size"):
        _trainer("torch").fit(*data, epochs=2, batch_size=16, progress=False, resume_from=saved)
    # other data that also changes the model's shapes: the data is named, not the layer
    wider = pf.Sequential([pf.Dense(8, activation="tanh"), pf.Dense(3)], input_shape=(6,))
    x, y = data
    _refuses(_trainer("torch", wider), saved, "different data",
             (np.concatenate([x, x[:, :1]], axis=1)[:40], y[:40]))


# -- hand-edited meta.json: refused before the trainer is touched -------------------------------
def _set(*keys: str, value: object):
    def edit(meta: dict) -> None:
        for key in keys[:-1]:
            meta = meta[key]
        meta[keys[-1]] = value
    return edit


def _drop(*keys: str):
    def edit(meta: dict) -> None:
        for key in keys[:-1]:
            meta = meta[key]
        del meta[keys[-1]]
    return edit


def _inside_epoch(**changes: object):
    """A consistent position at batch 2 of the saved checkpoint's epoch (batches of 8), then
    ``changes``."""
    def edit(meta: dict) -> None:
        meta["position"].update({"batch": 2, "step": 8, "seen": 16, "loss_total": 17.0,
                                 "metric_states": [{"_correct": 5, "_count": 16}], **changes})
    return edit


META_EDITS = {
    "batch 1e9": (_set("position", "batch", value=1e9), r"'position\.batch' must be an integer"),
    "batch past the epoch": (_set("position", "batch", value=10**9), "has 6"),
    "batch -3": (_set("position", "batch", value=-3), r"'position\.batch' must be >= 0"),
    "epoch -1": (_set("position", "epoch", value=-1), r"'position\.epoch' must be >= 0"),
    "epoch '1'": (_set("position", "epoch", value="1"), r"'position\.epoch' must be an integer"),
    "seen -4": (_set("position", "seen", value=-4), r"'position\.seen' must be >= 0"),
    "seen off": (_inside_epoch(seen=15), r"'position\.seen' is 15 but 2 batch\(es\) of 8 hold 16"),
    "step -5": (_set("position", "step", value=-5), r"'position\.step' must be >= 0"),
    "loss_total NaN": (_set("position", "loss_total", value=float("nan")), "finite"),
    "no position": (_drop("position"), "'position' is missing"),
    "position []": (_set("position", value=[]), "'position' must be an object"),
    "metric state of another metric": (_inside_epoch(metric_states=[{"update": 1}]),
                                       "metric state"),
    "history 'x'": (_set("history", value="x"), "'history' must be an object"),
    "ragged history": (_set("history", value={"loss": [1.0], "accuracy": []}), "different lengths"),
    "history too long": (_set("history", value={"loss": [1.0, 0.5]}), "position.epoch is 1"),
    "no backend": (_drop("backend"), "'backend' is missing"),
    "learning_rate 'fast'": (_set("learning_rate", value="fast"), "'learning_rate' must be a number"),
    "learning_rate -1": (_set("learning_rate", value=-1.0), "positive number"),
    "learning_rate 1e308": (_set("learning_rate", value=1e308), "finite float32 number"),
    "loss_scale []": (_set("loss_scale", value=[]), "'loss_scale' must be null or an object"),
    "loss_scale -1": (_set("loss_scale", value={"scale": -1.0, "good_steps": 0}), "positive number"),
    "seed '0'": (_set("seed", value="0"), r"'seed' must be an integer, got '0' \(str\)"),
    "no model": (_drop("model"), "'model' is missing"),
    "model not a config": (_set("model", value=[1]), "must be the model's config"),
    "no tensors": (_drop("tensors"), "'tensors' is missing"),
    "tensors elsewhere": (_set("tensors", "file", value="/etc/passwd"), r"'tensors\.file' must be"),
    "tensors of another checkpoint": (
        _set("tensors", "file", value="../ckpt-000000001/tensors.safetensors"), r"'tensors\.file'"),
    "data shuffle 'yes'": (_set("data", "shuffle", value="yes"), "true or false"),
}


@pytest.fixture(scope="module")
def bystander(data):
    """One trainer that every refused meta.json edit must leave untouched."""
    trainer = _trainer("torch")
    trainer.fit(*data, epochs=1, batch_size=16, progress=False)
    return trainer


@pytest.mark.parametrize("case", META_EDITS)
def test_hand_edited_metadata_is_refused_before_anything_changes(case, saved, bystander, data,
                                                                 tmp_path):
    edit, message = META_EDITS[case]
    copy = _copy(saved, tmp_path / "ckpt-000000006")
    meta = json.loads((copy / "meta.json").read_text())
    edit(meta)
    (copy / "meta.json").write_text(json.dumps(meta))
    _refuses(bystander, copy, f"{message}.*(restore the original meta.json|resume with the metrics)",
             data)


def test_a_consistent_position_inside_an_epoch_is_accepted(saved, data, tmp_path):
    copy = _copy(saved, tmp_path / "ckpt-000000008")
    meta = json.loads((copy / "meta.json").read_text())
    _inside_epoch()(meta)
    (copy / "meta.json").write_text(json.dumps(meta))
    trainer = _trainer("torch")
    history = trainer.fit(*data, epochs=2, batch_size=8, progress=False, resume_from=copy)
    assert len(history.step_losses) == 4 and (trainer.epoch, trainer.progress.step) == (2, 12)


@pytest.mark.parametrize("path", [5, ["dir"], "", b"dir"])
def test_resume_from_that_is_not_a_path_is_refused(path, bystander, data):
    _refuses(bystander, path, "must be a (non-empty )?path", data)


def test_a_bad_checkpoint_dir_is_refused_before_training(bystander, data, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for directory, message in [(afile, "exists but is not a directory"),
                               (afile / "sub", "cannot create checkpoint directory"),
                               ("", "non-empty path")]:
        before, step = _state(bystander), bystander.progress.step
        with pytest.raises(pf.CheckpointError, match=message):
            bystander.fit(*data, epochs=1, batch_size=8, progress=False, checkpoint_dir=directory)
        assert bystander.progress.step == step
        for key, value in _state(bystander).items():
            np.testing.assert_array_equal(value, before[key])


def test_checkpoints_are_never_overwritten_and_staging_is_not_listed(saved, victim, tmp_path):
    path = save_checkpoint(victim, tmp_path)
    with pytest.raises(pf.CheckpointError, match="already exists"):
        save_checkpoint(victim, tmp_path)
    (tmp_path / ".ckpt-000000009.x.tmp").mkdir()
    assert list_checkpoints(tmp_path) == [path]


def test_cli_resume_errors_are_one_line(tmp_path, capsys):
    from polyframe.cli import main

    model = str(FILES / "mlp_dropout.py")
    assert main(["train", model, "--data", "wine", "--resume", str(tmp_path / "missing")]) == 2
    assert main(["train", model, "--data", "wine", "--checkpoint-every", "3"]) == 2
    (tmp_path / "afile").write_text("x")
    assert main(["train", model, "--data", "wine", "--checkpoint-dir", str(tmp_path / "afile")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"polyframe: error: no checkpoint at {tmp_path / 'missing'}",
        "polyframe: error: --checkpoint-every needs --checkpoint-dir",
        f"polyframe: error: checkpoint directory {tmp_path / 'afile'} exists but is not a "
        "directory; give the path of a directory (it is created if missing)"]
    assert captured.out == "", "the checkpoint directory is checked before training starts"
