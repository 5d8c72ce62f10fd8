"""The training loop, written once; backends only supply compiled steps."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Sequence
from functools import partial

import numpy as np

from ._checks import MAX_SEED, check_bool, check_float, check_int
from .backend import BuildOptions, Executable
from .callbacks import Callback, History, ProgressDisplay, plugin_callbacks
from .checkpoint import Progress, ResumePoint, check_checkpoint_dir, restore_checkpoint
from .data import batch_indices, by_name, check_batch_size, check_inputs, split_validation
from .distributed import build_data_parallel, check_parallel
from .errors import ConfigError, DataError, LabelError, NonFiniteLossError
from .execution import as_tuple, single_or_tuple
from .losses import Loss, get_loss
from .metrics import Metric, get_metric
from .layers import Embedding
from .model import Model
from .monitoring import ModelCheckpoint
from .optimizers import Optimizer, get_optimizer
from .plugins import default_backend_name, get_backend
from .precision import check_precision

__all__ = ["Trainer"]


class Trainer:
    """Trains one model on one backend; several trainers on different backends may coexist.

    ``backend=None`` takes ``$POLYFRAME_BACKEND``, else the first available backend.
    ``backend="auto"`` (also as ``$POLYFRAME_BACKEND``) picks the backend
    :func:`polyframe.selector.choose_backend_for_model` recommends for batches of 32: cached
    ``polyframe bench`` results, else a short trial of each backend on synthetic data; it says on
    stderr which one it chose and on what evidence, and keeps that in :attr:`choice`. Initial
    weights are polyframe's canonical ones for ``seed``, so they are identical on every backend.
    ``metrics=None`` means accuracy for cross-entropy and none for regression losses.

    ``strategy="data_parallel"`` with ``devices=N`` trains on N workers of the backend's own
    distributed engine, each taking its contiguous slice of every global batch
    (:mod:`polyframe.distributed`, docs/distributed.md). ``precision`` is ``"float32"``,
    ``"bf16-mixed"`` or ``"fp16-mixed"`` (float32 master weights; :mod:`polyframe.precision`).

    A model with several inputs takes ``x`` as a list (in ``model.inputs`` order) or a dict
    keyed by input name; with several outputs, ``y`` likewise (keyed by output name), ``loss``
    is one spec for all outputs or a list of one per output, the total loss is
    ``sum(loss_weights[i] * loss_i)`` and each metric is reported per output as
    ``"<output>_<metric>"``.
    """

    def __init__(
        self,
        model: Model,
        *,
        loss: Loss | str | Sequence[Loss | str] = "sparse_categorical_crossentropy",
        loss_weights: Sequence[float] | None = None,
        optimizer: Optimizer | str = "adam",
        metrics: Sequence[Metric | str] | None = None,
        backend: str | None = None,
        seed: int = 0,
        deterministic: bool = False,
        strategy: str = "single",
        devices: int = 1,
        nodes: int = 1,
        precision: str = "float32",
    ) -> None:
        if not isinstance(model, Model):
            raise ConfigError(f"Trainer needs a polyframe model, got {type(model).__name__}")
        if model.count_params() == 0:
            raise ConfigError("the model has no trainable parameters; add a Dense or Conv2D layer")
        self.model = model
        self.losses = _per_output_losses(loss, len(model.outputs))
        self.loss = self.losses[0] if len(self.losses) == 1 else self.losses
        """The loss spec, or a tuple of one per output."""
        self.loss_weights = _check_loss_weights(loss_weights, len(model.outputs))
        self.optimizer = get_optimizer(optimizer)
        self.metrics = self._metrics(metrics)
        self.seed = check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
        deterministic = check_bool(deterministic, "deterministic")
        parallel = check_parallel(strategy, devices, nodes)
        precision = check_precision(precision)
        requested = default_backend_name() if backend is None else backend
        self.choice = None
        """With ``backend="auto"``: the :class:`polyframe.selector.Choice` made, and its evidence."""
        if requested == "auto":
            from .selector import choose_backend_for_model

            self.choice = choose_backend_for_model(model, self.losses[0], self.optimizer, precision=precision,
                                                   parallel="single" if parallel is None else "data")
            print(f"polyframe: {self.choice.explain()}", file=sys.stderr, flush=True)
            requested = self.choice.backend
        self.backend_name = requested
        self.backend = get_backend(self.backend_name)
        if precision not in self.backend.precisions:
            raise ConfigError(f"precision={precision!r} is not supported on the {self.backend_name!r} "
                              f"backend; it supports {', '.join(map(repr, self.backend.precisions))}")
        options = BuildOptions(seed=self.seed, deterministic=deterministic,
                               loss_weights=self.loss_weights, precision=precision)
        build = self.backend.build if parallel is None else partial(build_data_parallel, self.backend,
                                                                    parallel=parallel)
        self.executable: Executable = build(model, model.init_weights(self.seed), self.loss,
                                            self.optimizer, options)
        self.epoch = 0
        self.stop_training = False
        """Set by a callback to end :meth:`fit` after the current batch."""
        self.progress = Progress()
        """The position inside the current epoch; with :attr:`epoch`, what a checkpoint records."""
        self.history: History | None = None
        """The :class:`History` of the latest :meth:`fit`."""
        self.last_checkpoint = None
        """The path of the newest checkpoint written or loaded, if any."""

    # -- weights -------------------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights in canonical layout."""
        return self.executable.get_weights()

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.executable.set_weights(self.model.check_weights(weights))

    # -- data ----------------------------------------------------------------------------
    def _metrics(self, metrics: Sequence[Metric | str] | None) -> list[tuple[int, Metric]]:
        """``(output index, metric)`` pairs; each output gets its own metric objects."""
        pairs = []
        for i, loss in enumerate(self.losses):
            if metrics is None:
                chosen: Sequence[Metric | str] = ("accuracy",) if loss.kind in _CLASSIFICATION else ()
            elif isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
                chosen = (metrics,)  # type: ignore[assignment]
            else:
                chosen = metrics
            pairs += [(i, get_metric(m) if i == 0 else copy.deepcopy(get_metric(m))) for m in chosen]
        return pairs

    def _metric_name(self, output: int, metric: Metric) -> str:
        if len(self.model.outputs) == 1:
            return metric.name
        return f"{self.model.outputs[output]}_{metric.name}"

    def _metric_logs(self) -> dict[str, float]:
        return {self._metric_name(i, m): m.result() for i, m in self.metrics}

    def _prepare(self, x: object, y: object, *, labelled: bool = True, what: str = "inputs"
                 ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Checked inputs in the backend's layout and checked targets, one array per input /
        output."""
        specs = self.model.inputs
        parts = by_name(x, [s.name for s in specs], what.rstrip("s"))
        xs = tuple(check_inputs(part, spec.shape, what if len(specs) == 1 else f"{what} {spec.name!r}",
                                integer=spec.dtype == "int32")
                   for part, spec in zip(parts, specs))
        for spec, array in zip(specs, xs):
            _check_token_ids(self.model, spec.name, array, what)
        if len({len(a) for a in xs}) > 1:
            raise DataError(f"the model's {what} have different sample counts "
                            f"{[len(a) for a in xs]}; they must match")
        ys: tuple[np.ndarray, ...] = ()
        if labelled:
            targets = by_name(y, self.model.outputs, "label")
            ys = tuple(self._targets(loss, t, shape, key) for loss, t, shape, key
                       in zip(self.losses, targets, self.model.output_shapes, self.model.outputs))
            for t in ys:
                if len(t) != len(xs[0]):
                    raise LabelError(f"{what} have {len(xs[0])} samples but their labels "
                                     f"{len(t)}; they must match")
        return tuple(self.executable.prepare_inputs(a) for a in xs), ys

    def _targets(self, loss: Loss, y: object, shape: tuple[int, ...], output: str) -> np.ndarray:
        """Checked targets of one output; with several outputs, errors name the output."""
        try:
            return loss.check_targets(y, shape)
        except LabelError as error:
            if len(self.model.outputs) == 1:
                raise
            raise LabelError(f"labels of output {output!r}: {error}") from None

    # -- training ------------------------------------------------------------------------
    def fit(
        self,
        x: object,
        y: object,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[object, object] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        checkpoint_dir: str | None = None,
        resume_from: str | None = None,
    ) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; returns the :class:`History`.

        Batches are drawn in the core: a permutation seeded by ``(seed, epoch)`` when
        ``shuffle``, else in order. ``validation_split`` holds out the last fraction of the data.
        ``checkpoint_dir`` adds a :class:`~polyframe.callbacks.ModelCheckpoint` there (one
        checkpoint per epoch). ``resume_from`` (a checkpoint, or a directory of them: the newest)
        restores the full training state and continues at the saved batch of the saved epoch;
        ``epochs`` then counts the whole run, so the run ends after epoch ``epochs`` as an
        uninterrupted ``fit(epochs=epochs)`` would (see docs/checkpoints.md).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
        batch_size = check_batch_size(batch_size)
        shuffle = check_bool(shuffle, "shuffle")
        callbacks = _check_callbacks(callbacks)
        if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                            or len(validation_data) != 2):
            raise ConfigError("validation_data must be a pair (x_val, y_val)")
        x_native, y = self._prepare(x, y)
        val = (self._prepare(*validation_data, what="validation inputs")
               if validation_data is not None else None)
        if validation_split:
            if validation_data is not None:
                raise ConfigError("give validation_data or validation_split, not both")
            x_native, y, *held_out = split_validation(x_native, y, validation_split)
            val = (held_out[0], held_out[1])

        samples = len(x_native[0])
        data = {"samples": samples, "batch_size": batch_size, "shuffle": shuffle}
        if checkpoint_dir is not None:
            callbacks = [*callbacks, ModelCheckpoint(check_checkpoint_dir(checkpoint_dir))]
        for callback in callbacks:
            if isinstance(callback, ModelCheckpoint):
                check_checkpoint_dir(callback.directory)
        resume = restore_checkpoint(self, resume_from, data=data) if resume_from is not None else None
        self.progress.data = data
        history = History(resume.history if resume is not None else None)
        self.history = history
        listeners: list[Callback] = [history, *callbacks, *plugin_callbacks(self)]
        if progress:
            listeners.append(ProgressDisplay())
        for callback in listeners:
            callback.trainer = self
        steps = math.ceil(samples / batch_size)
        first_epoch = self.epoch
        last_epoch = epochs if resume is not None else first_epoch + epochs
        _emit(listeners, "on_train_begin", {"epochs": last_epoch - first_epoch, "steps_per_epoch": steps,
                                            "initial_epoch": first_epoch, "validation": val is not None})
        self.stop_training = False
        for epoch in range(first_epoch, last_epoch):
            _emit(listeners, "on_epoch_begin", epoch, {})
            for _, metric in self.metrics:
                metric.reset()
            total, seen, skip = 0.0, 0, 0
            if resume is not None and epoch == first_epoch:
                total, seen, skip = resume.loss_total, resume.seen, resume.batch
                _restore_metrics(self.metrics, resume)
            order = batch_indices(samples, batch_size, seed=self.seed, epoch=epoch, shuffle=shuffle)
            for step, index in enumerate(order):
                if step < skip:
                    continue
                y_batch = _take(y, index)
                loss, outputs = self.executable.train_step(_take(x_native, index), y_batch)
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"the training loss became {loss} at epoch {epoch + 1}, step {step + 1} "
                        f"on backend {self.backend_name!r}; the weights are no longer usable. "
                        "Lower the learning rate, check the data for extreme values, or "
                        "normalise the inputs, then train again" + _last_good(self.last_checkpoint)
                    )
                total += loss * len(index)
                seen += len(index)
                self._update_metrics(y_batch, outputs)
                self.progress = Progress(step + 1, self.progress.step + 1, total, seen, data)
                _emit(listeners, "on_batch_end", step,
                      {"epoch": epoch - first_epoch, "batch_loss": loss, "loss": total / seen})
                if self.stop_training:
                    break
            logs = {"loss": total / seen, **self._metric_logs()}
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_prepared(*val, batch_size).items()})
            self.epoch = epoch + 1
            self.progress = Progress(0, self.progress.step, 0.0, 0, data)
            _emit(listeners, "on_epoch_end", epoch - first_epoch, logs)
            if self.stop_training:
                break
        _emit(listeners, "on_train_end", {})
        return history

    def _update_metrics(self, y: object, outputs: object) -> None:
        ys, outs = as_tuple(y), as_tuple(outputs)
        for i, metric in self.metrics:
            metric.update(ys[i], outs[i])

    # -- inference -----------------------------------------------------------------------
    def _evaluate_prepared(self, x_native: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...],
                           batch_size: int) -> dict[str, float]:
        for _, metric in self.metrics:
            metric.reset()
        total = 0.0
        samples = len(x_native[0])
        for index in batch_indices(samples, batch_size, seed=0, epoch=0, shuffle=False):
            y_batch = _take(y, index)
            loss, outputs = self.executable.eval_step(_take(x_native, index), y_batch)
            total += loss * len(index)
            self._update_metrics(y_batch, outputs)
        return {"loss": total / samples, **self._metric_logs()}

    def evaluate(self, x: object, y: object, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``(x, y)`` in inference mode."""
        x_native, y = self._prepare(x, y)
        return self._evaluate_prepared(x_native, y, check_batch_size(batch_size))

    def predict(self, x: object, *, batch_size: int = 256) -> np.ndarray | tuple[np.ndarray, ...]:
        """Model outputs for ``x`` in inference mode, canonical layout, float32: one array, or a
        tuple of one per output."""
        x_native, _ = self._prepare(x, None, labelled=False)
        parts = [as_tuple(self.executable.predict(_take(x_native, index))) for index in
                 batch_indices(len(x_native[0]), check_batch_size(batch_size), seed=0, epoch=0,
                               shuffle=False)]
        return single_or_tuple([np.concatenate(column) for column in zip(*parts)])

    def __repr__(self) -> str:
        return f"Trainer(backend={self.backend_name!r}, seed={self.seed}, epoch={self.epoch})"


_CLASSIFICATION = ("sparse_categorical_crossentropy", "categorical_crossentropy")


def _check_token_ids(model: Model, name: str, x: np.ndarray, what: str) -> None:
    """Inputs read by an Embedding must be whole-number ids in ``[0, input_dim)``: frameworks
    answer out-of-range ids with an error (torch, TensorFlow) or silently (JAX clamps or fills)."""
    limits = [node.layer.input_dim for node in model.consumers(name)  # type: ignore[attr-defined]
              if isinstance(node.layer, Embedding)]
    if not limits or not x.size:
        return
    limit = min(limits)
    bad = np.flatnonzero((x < 0) | (x >= limit) | (x != np.round(x)))
    if bad.size:
        value = x.reshape(-1)[bad[0]]
        raise DataError(f"{what} feed an Embedding of {limit} rows, so they must be whole-number "
                        f"ids in [0, {limit}); found {value:g} ({bad.size} value(s) out of range); "
                        "map them into the vocabulary or enlarge input_dim")


def _take(parts: tuple[np.ndarray, ...], index: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
    """One batch: an array for a single input/output, else a tuple of them."""
    return single_or_tuple([a[index] for a in parts])


def _per_output_losses(loss: object, outputs: int) -> tuple[Loss, ...]:
    if isinstance(loss, dict):
        raise ConfigError("loss must be one loss, or a list of one per output in model.outputs "
                          "order; a dict is not accepted")
    if isinstance(loss, (list, tuple)):
        if len(loss) != outputs:
            raise ConfigError(f"the model has {outputs} output(s) but {len(loss)} losses were "
                              "given; give one loss, or one per output")
        return tuple(get_loss(item) for item in loss)
    return (get_loss(loss),) * outputs  # type: ignore[arg-type]


def _check_loss_weights(weights: object, outputs: int) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if not isinstance(weights, (list, tuple)) or len(weights) != outputs:
        raise ConfigError(f"loss_weights must be a list of {outputs} number(s), one per output, "
                          f"got {weights!r}")
    return tuple(check_float(w, "each loss weight", low=0.0) for w in weights)


def _check_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    if not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks must be a list of Callback objects, got {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise ConfigError(f"callbacks must subclass polyframe.Callback, got {callback!r}")
    return list(callbacks)


def _restore_metrics(metrics: list[tuple[int, Metric]], resume: ResumePoint) -> None:
    """Put back the running metric counts of a checkpoint written inside an epoch."""
    for (_, metric), state in zip(metrics, resume.metric_states):
        for name, value in state.items():
            setattr(metric, name, value)


def _last_good(path: object) -> str:
    if path is None:
        return ""
    return f". The last good checkpoint is {path}; resume from it (resume_from= / --resume)"


def _emit(callbacks: list[Callback], event: str, *args: object) -> None:
    for callback in callbacks:
        getattr(callback, event)(*args)
