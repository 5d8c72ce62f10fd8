"""The training loop, written once; backends only supply compiled steps."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from ._checks import MAX_SEED, check_bool, check_int
from .backend import BuildOptions, Executable
from .callbacks import Callback, History, ProgressDisplay
from .data import batch_indices, check_batch_size, check_inputs, split_validation
from .errors import ConfigError, NonFiniteLossError
from .losses import Loss, SparseCategoricalCrossentropy, get_loss
from .metrics import Metric, get_metric
from .model import Sequential
from .optimizers import Optimizer, get_optimizer
from .plugins import default_backend_name, get_backend

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
    """

    def __init__(
        self,
        model: Sequential,
        *,
        loss: Loss | str = "sparse_categorical_crossentropy",
        optimizer: Optimizer | str = "adam",
        metrics: Sequence[Metric | str] | None = None,
        backend: str | None = None,
        seed: int = 0,
        deterministic: bool = False,
    ) -> None:
        if not isinstance(model, Sequential):
            raise ConfigError(f"Trainer needs a polyframe model, got {type(model).__name__}")
        if model.count_params() == 0:
            raise ConfigError("the model has no trainable parameters; add a Dense or Conv2D layer")
        self.model = model
        self.loss = get_loss(loss)
        self.optimizer = get_optimizer(optimizer)
        if metrics is None:
            metrics = ("accuracy",) if isinstance(self.loss, SparseCategoricalCrossentropy) else ()
        elif isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            metrics = (metrics,)  # type: ignore[assignment]
        self.metrics = [get_metric(m) for m in metrics]
        self.seed = check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
        deterministic = check_bool(deterministic, "deterministic")
        requested = default_backend_name() if backend is None else backend
        self.choice = None
        """With ``backend="auto"``: the :class:`polyframe.selector.Choice` made, and its evidence."""
        if requested == "auto":
            from .selector import choose_backend_for_model

            self.choice = choose_backend_for_model(model, self.loss, self.optimizer)
            print(f"polyframe: {self.choice.explain()}", file=sys.stderr, flush=True)
            requested = self.choice.backend
        self.backend_name = requested
        self.backend = get_backend(self.backend_name)
        self.executable: Executable = self.backend.build(
            model, model.init_weights(self.seed), self.loss, self.optimizer,
            BuildOptions(seed=self.seed, deterministic=deterministic),
        )
        self.epoch = 0
        self.stop_training = False
        """Set by a callback to end :meth:`fit` after the current batch."""

    # -- weights -------------------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights in canonical layout."""
        return self.executable.get_weights()

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.executable.set_weights(self.model.check_weights(weights))

    # -- data ----------------------------------------------------------------------------
    def _prepare(self, x: np.ndarray, y: np.ndarray | None, *, labelled: bool = True,
                 what: str = "inputs") -> tuple[np.ndarray, np.ndarray | None]:
        x = check_inputs(x, self.model.input_shape, what)
        if labelled:
            y = self.loss.check_targets(y, self.model.output_shape)
            if len(y) != len(x):
                raise ConfigError(f"{what} have {len(x)} samples but their labels {len(y)}; "
                                  "they must match")
        return self.executable.prepare_inputs(x), y

    # -- training ------------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; returns the :class:`History`.

        Batches are drawn in the core: a permutation seeded by ``(seed, epoch)`` when
        ``shuffle``, else in order. ``validation_split`` holds out the last fraction of the data.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
        batch_size = check_batch_size(batch_size)
        shuffle = check_bool(shuffle, "shuffle")
        callbacks = _check_callbacks(callbacks)
        if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                            or len(validation_data) != 2):
            raise ConfigError("validation_data must be a pair (x_val, y_val)")
        if validation_split:
            if validation_data is not None:
                raise ConfigError("give validation_data or validation_split, not both")
            x, y, *validation = split_validation(np.asarray(x), np.asarray(y), validation_split)
            validation_data = (validation[0], validation[1])
        x_native, y = self._prepare(x, y)
        val = (self._prepare(*validation_data, what="validation inputs")
               if validation_data is not None else None)

        history = History()
        listeners: list[Callback] = [history, *callbacks]
        if progress:
            listeners.append(ProgressDisplay())
        for callback in listeners:
            callback.trainer = self
        steps = math.ceil(len(x_native) / batch_size)
        _emit(listeners, "on_train_begin", {"epochs": epochs, "steps_per_epoch": steps})
        first_epoch = self.epoch
        self.stop_training = False
        for epoch in range(first_epoch, first_epoch + epochs):
            _emit(listeners, "on_epoch_begin", epoch, {})
            for metric in self.metrics:
                metric.reset()
            total, seen = 0.0, 0
            order = batch_indices(len(x_native), batch_size, seed=self.seed, epoch=epoch, shuffle=shuffle)
            for step, index in enumerate(order):
                y_batch = y[index]
                loss, outputs = self.executable.train_step(x_native[index], y_batch)
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"the training loss became {loss} at epoch {epoch + 1}, step {step + 1} "
                        f"on backend {self.backend_name!r}; the weights are no longer usable. "
                        "Lower the learning rate, check the data for extreme values, or "
                        "normalise the inputs, then train again"
                    )
                total += loss * len(index)
                seen += len(index)
                for metric in self.metrics:
                    metric.update(y_batch, outputs)
                _emit(listeners, "on_batch_end", step,
                      {"epoch": epoch - first_epoch, "batch_loss": loss, "loss": total / seen})
                if self.stop_training:
                    break
            logs = {"loss": total / seen, **{m.name: m.result() for m in self.metrics}}
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_prepared(*val, batch_size).items()})
            self.epoch = epoch + 1
            _emit(listeners, "on_epoch_end", epoch - first_epoch, logs)
            if self.stop_training:
                break
        _emit(listeners, "on_train_end", {})
        return history

    # -- inference -----------------------------------------------------------------------
    def _evaluate_prepared(self, x_native: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        for metric in self.metrics:
            metric.reset()
        total = 0.0
        for index in batch_indices(len(x_native), batch_size, seed=0, epoch=0, shuffle=False):
            loss, outputs = self.executable.eval_step(x_native[index], y[index])
            total += loss * len(index)
            for metric in self.metrics:
                metric.update(y[index], outputs)
        return {"loss": total / len(x_native), **{m.name: m.result() for m in self.metrics}}

    def evaluate(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``(x, y)`` in inference mode."""
        x_native, y = self._prepare(x, y)
        return self._evaluate_prepared(x_native, y, check_batch_size(batch_size))

    def predict(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Model outputs for ``x`` in inference mode, canonical layout, float32."""
        x_native, _ = self._prepare(x, None, labelled=False)
        parts = [self.executable.predict(x_native[index]) for index in
                 batch_indices(len(x_native), check_batch_size(batch_size), seed=0, epoch=0, shuffle=False)]
        return np.concatenate(parts)

    def __repr__(self) -> str:
        return f"Trainer(backend={self.backend_name!r}, seed={self.seed}, epoch={self.epoch})"


def _check_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    if not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks must be a list of Callback objects, got {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise ConfigError(f"callbacks must subclass polyframe.Callback, got {callback!r}")
    return list(callbacks)


def _emit(callbacks: list[Callback], event: str, *args: object) -> None:
    for callback in callbacks:
        getattr(callback, event)(*args)
