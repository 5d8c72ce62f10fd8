"""``backend="auto"``: pick a backend from cached evidence, else from a short trial.

:func:`choose_backend` serves ``polyframe train --backend auto`` (a model file and its data);
:func:`choose_backend_for_model` serves ``Trainer(backend="auto")``, which has a model but no
data yet: its trial runs the pickled model on synthetic data of the model's input shape.
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailableError
from ..hardware import Machine
from ..losses import Loss, SparseCategoricalCrossentropy
from ..model import Sequential
from ..optimizers import Optimizer
from ._evidence import TrialSettings
from ._recommend import Recommendation, close_call, recommend
from ._workload import Workload, workload_from_model

__all__ = ["Choice", "choose_backend", "choose_backend_for_model", "AUTO_BATCH_SIZE"]

AUTO_BATCH_SIZE = 32
"""The batch size ``Trainer(backend="auto")`` chooses for (``fit``'s default)."""

_MODEL_FILE = '''"""Written by polyframe for a backend="auto" trial: the trainer's model, loss and optimizer."""
import pickle

with open({path!r}, "rb") as _handle:
    _model, _loss, _optimizer = pickle.load(_handle)


def build_model(input_shape, num_classes):
    return _model


def loss():
    return _loss


def optimizer():
    return _optimizer
'''


@dataclass(frozen=True)
class Choice:
    """The backend ``auto`` chose and the recommendation behind it."""

    backend: str
    recommendation: Recommendation

    def explain(self) -> str:
        """One line: the choice, its evidence, and the alternatives."""
        rec = self.recommendation
        top = rec.ranking[0]
        others = ", ".join(f"{r.backend} {r.step_ms:.2f} ms" if r.step_ms is not None else r.backend
                           for r in rec.ranking[1:]) or "no other backend left"
        if top.step_ms is not None:
            what = f"{top.evidence} {top.step_ms:.2f} ms/step at batch {rec.workload.batch_size} (vs {others})"
        else:
            what = f"{top.evidence}: {top.detail} (vs {others})"
        source = {"measured": "a short trial on this machine", "cached": "cached polyframe bench results",
                  "rule": "the only backend the rules leave"}.get(rec.basis, rec.basis_text)
        excluded = f"; excluded: {', '.join(sorted({e.backend for e in rec.excluded}))}" if rec.excluded else ""
        close = close_call(rec.ranking)
        return (f"backend auto chose {self.backend}: {what}; evidence: {source}, "
                f"confidence {rec.confidence}{excluded}" + (f"; {close}" if close else ""))


def choose_backend(workload: Workload, *, machine: Machine | None = None,
                   backends: tuple[str, ...] | None = None, trial: TrialSettings | None = None) -> Choice:
    """Cached evidence when it covers every kept backend, else a short trial of each (when the
    workload can be run), else the estimate. Raises :class:`BackendUnavailableError` when the
    constraints leave nothing."""
    rec = recommend(workload, machine=machine, backends=backends)
    if rec.basis not in ("cached", "rule", "none") and workload.model_file and workload.data:
        rec = recommend(workload, machine=machine, backends=backends, measure=True,
                        trial=trial or TrialSettings(steps=5, warmup=2, repeats=1))
    if rec.best is None:
        reasons = "; ".join(f"{e.backend}: {e.reason}" for e in rec.excluded) or \
            "; ".join(f"{r.backend}: {r.detail}" for r in rec.ranking) or "no backend registered"
        raise BackendUnavailableError(f"backend 'auto' found no usable backend ({reasons})")
    return Choice(rec.best, rec)


def _synthetic_data(model: Sequential, loss: Loss, samples: int) -> str:
    classes = model.output_shape[0] if isinstance(loss, SparseCategoricalCrossentropy) else 0
    return f"synthetic:{'x'.join(map(str, model.input_shape))}:{classes}:{samples}"


def choose_backend_for_model(model: Sequential, loss: Loss, optimizer: Optimizer, *,
                             batch_size: int = AUTO_BATCH_SIZE, precision: str = "float32",
                             parallel: str = "single", machine: Machine | None = None,
                             backends: tuple[str, ...] | None = None,
                             trial: TrialSettings | None = None) -> Choice:
    """:func:`choose_backend` for an in-memory model: a trial runs it, pickled, on synthetic data."""
    trial = trial or TrialSettings(steps=5, warmup=2, repeats=1)
    samples = max(256, batch_size * (trial.steps + trial.warmup))
    with tempfile.TemporaryDirectory(prefix="polyframe-auto-") as tmp:
        recipe = Path(tmp) / "recipe.pkl"
        try:
            recipe.write_bytes(pickle.dumps((model, loss, optimizer)))
            model_file: str | None = str(Path(tmp) / "auto_model.py")
            Path(model_file).write_text(_MODEL_FILE.format(path=str(recipe)))
        except (pickle.PicklingError, AttributeError, TypeError):
            model_file = None  # no trial possible: cached evidence or the estimate decide
        workload = workload_from_model(model, loss, optimizer, batch_size=batch_size, precision=precision,
                                       parallel=parallel, name="trainer model",
                                       model_file=model_file, data=_synthetic_data(model, loss, samples))
        if model_file is None:
            workload = dataclasses.replace(workload, data=None)
        return choose_backend(workload, machine=machine, backends=backends, trial=trial)
