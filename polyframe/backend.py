"""The adapter contract: what a backend plugin implements.

A backend has two halves:

* a light :class:`Backend` subclass, importable without its framework, that says who it is and
  whether it can run here;
* the :class:`Executable` its :meth:`Backend.build` returns: the model compiled into the
  framework's own objects, with compiled train / eval / predict steps.

A minimal adapter, as a third party would write it (the built-in ones are written the same way)::

    # my_backend/__init__.py  -- must not import the framework at module level
    import polyframe
    from polyframe.backend import Backend

    class MyBackend(Backend):
        name = "mine"
        framework = "myframework"              # import name, probed with importlib
        framework_distribution = "myframework" # what `pip install` needs for it
        adapter_distribution = "my-backend"

        executable = "my_backend._compiled:MyExecutable"  # imported on first build

        def devices(self):
            import myframework
            return [str(d) for d in myframework.devices()]

    @polyframe.hookimpl
    def polyframe_backends():
        return [MyBackend]

    # pyproject.toml
    [project.entry-points.polyframe]
    mine = "my_backend"

Canonical conventions an executable must honour (see docs/semantics.md): weights come in and go
out as a dict ``{"<layer>.<param>": float32 array}`` in canonical layouts (dense kernels
``(in, out)``, conv kernels ``(kH, kW, in, out)``); inputs arrive NHWC and are converted **once**
per dataset by :meth:`Executable.prepare_inputs`, never per step; the loss and optimizer follow
the formulas of :mod:`polyframe.losses` and :mod:`polyframe.optimizers` exactly.
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from .losses import Loss
    from .model import Model
    from .optimizers import Optimizer

__all__ = ["Backend", "Executable", "BuildOptions", "StepResult", "Availability"]


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here and, when it cannot, why and what to do."""

    available: bool
    reason: str = ""


@dataclass(frozen=True)
class BuildOptions:
    """Options every backend receives at build time.

    ``seed`` seeds the backend's own RNG (used only for dropout masks); ``deterministic`` asks
    for the framework's deterministic kernels where it has a switch.
    """

    seed: int = 0
    deterministic: bool = False
    loss_weights: tuple[float, ...] | None = None
    """For a model with several outputs: the weight of each output's loss in the total."""
    precision: str = "float32"
    """``"float32"``, or ``"bf16-mixed"`` / ``"fp16-mixed"``: compute in the half type with
    float32 master weights (fp16 with dynamic loss scaling); see :mod:`polyframe.precision`."""


class StepResult(NamedTuple):
    """What one train or eval step hands back: the batch's mean loss and the model outputs."""

    loss: float
    outputs: np.ndarray | tuple[np.ndarray, ...]


class Executable(abc.ABC):
    """A model compiled for one framework, holding its weights and optimizer state.

    Batches: ``x`` is one prepared array, or a tuple of them (one per model input, in
    ``model.inputs`` order); ``y`` likewise per model output, and the outputs handed back are
    one array or a tuple (one per ``model.outputs``). With several outputs the loss is
    ``sum(w_i * loss_i)``, ``loss`` being one spec per output and ``w`` the build options'
    ``loss_weights`` (all 1 by default).
    """

    @abc.abstractmethod
    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        """Convert a whole canonical (NHWC, float32) array of one input to this backend's
        layout, once per dataset (called for each input of a multi-input model)."""

    @abc.abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        """One optimizer step on a prepared batch; returns the loss before the update."""

    @abc.abstractmethod
    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        """Loss and outputs on a prepared batch, in inference mode (no dropout, no update)."""

    @abc.abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Model outputs on a prepared batch, in inference mode, in canonical layout."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """The current weights in canonical layout (float32 copies)."""

    @abc.abstractmethod
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace the weights with canonical ones (already checked against the model)."""

    # -- training state (checkpoints, callbacks); optional for third-party backends ------------
    state_functions: ClassVar[str | None] = None
    """Dotted name of a module defining some of the training-state methods below as functions of
    the executable (``get_optimizer_state(executable)``, ...), imported on first use so that it
    may import the executable's own module; a method it does not define keeps its default."""

    def _state_function(self, name: str) -> Callable[..., Any] | None:
        if self.state_functions is None:
            return None
        return getattr(importlib.import_module(self.state_functions), name, None)

    def get_optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer state in canonical form (:mod:`polyframe.optimizer_state`): ``"step"``
        and ``"<param key>/<slot>"`` arrays in canonical layout, as copies."""
        if (function := self._state_function("get_optimizer_state")) is not None:
            return function(self)
        raise _unsupported(self, "export its optimizer state")

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the optimizer state with a canonical one (already checked by the core)."""
        if (function := self._state_function("set_optimizer_state")) is not None:
            return function(self, state)
        raise _unsupported(self, "import an optimizer state")

    def get_rng_state(self) -> dict[str, np.ndarray]:
        """The backend's dropout RNG position as arrays, so a resumed run draws the same masks.
        Its names and meaning are the backend's own; the default has none."""
        if (function := self._state_function("get_rng_state")) is not None:
            return function(self)
        return {}

    def set_rng_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_rng_state` returned (on this same backend)."""
        if (function := self._state_function("set_rng_state")) is not None:
            return function(self, state)
        if state:
            raise _unsupported(self, "restore an RNG state")

    def get_learning_rate(self) -> float:
        """The constant learning rate the next update uses (as set by
        :meth:`set_learning_rate`); an optimizer with a schedule has none."""
        if (function := self._state_function("get_learning_rate")) is not None:
            return function(self)
        raise _unsupported(self, "report its learning rate")

    def set_learning_rate(self, learning_rate: float) -> None:
        """Use ``learning_rate`` for every later update, without recompiling the step. Only for
        an optimizer with a constant rate (a schedule owns its rate)."""
        if (function := self._state_function("set_learning_rate")) is not None:
            return function(self, learning_rate)
        raise _unsupported(self, "change its learning rate at run time")


    def get_loss_scale(self) -> dict[str, float] | None:
        """The dynamic loss scale of ``precision="fp16-mixed"`` (:mod:`polyframe.precision`):
        ``{"scale": ..., "good_steps": ...}``; ``None`` where the executable does not scale."""
        if (function := self._state_function("get_loss_scale")) is not None:
            return function(self)
        return None

    def set_loss_scale(self, state: dict[str, float]) -> None:
        """Restore what :meth:`get_loss_scale` returned (on an executable that scales)."""
        if (function := self._state_function("set_loss_scale")) is not None:
            return function(self, state)
        raise _unsupported(self, "restore a loss scale")

def _unsupported(executable: Executable, what: str) -> Exception:
    from .errors import ConfigError

    return ConfigError(f"the {type(executable).__name__} executable cannot {what}; its backend "
                       "does not implement this part of polyframe's Executable contract")


class Backend(abc.ABC):
    """A registered backend: identity and availability, cheap to create, no framework import."""

    name: ClassVar[str]
    framework: ClassVar[str]
    framework_distribution: ClassVar[str]
    adapter_distribution: ClassVar[str]
    executable: ClassVar[str]
    """``"module:Class"`` of the :class:`Executable`; imported (with the framework) on first build."""
    priority: ClassVar[int] = 100
    """Lower comes first when polyframe picks a default backend among the available ones."""
    distributed: ClassVar[str | None] = None
    """``"module:Class"`` of its :class:`polyframe.distributed.DataParallelEngine`, run in each
    worker process of a data-parallel job; ``None``: the backend trains on one device only."""
    distributed_processes: ClassVar[str] = "per_device"
    precisions: ClassVar[tuple[str, ...]] = ("float32",)
    """The ``precision`` options its executables implement (:mod:`polyframe.precision`)."""
    """``"per_device"``: one worker process per device (torch DDP); ``"per_node"``: one process
    drives every local device (a ``tf.distribute`` strategy, a JAX mesh)."""

    def availability(self) -> Availability:
        """Whether the framework is importable here; does not import it."""
        if importlib.util.find_spec(self.framework) is None:
            return Availability(
                False,
                f"the {self.framework!r} framework is not installed; "
                f"install it with: pip install {self.framework_distribution}",
            )
        return Availability(True)

    def framework_version(self) -> str | None:
        """The installed framework's version, read from package metadata (no import)."""
        try:
            return importlib.metadata.version(self.framework_distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    @abc.abstractmethod
    def devices(self) -> list[str]:
        """The devices the framework sees (imports the framework)."""

    def build(
        self,
        model: Model,
        weights: dict[str, np.ndarray],
        loss: Loss | tuple[Loss, ...],
        optimizer: Optimizer,
        options: BuildOptions,
    ) -> Executable:
        """Compile ``model`` with canonical ``weights`` into this framework's native objects.

        The default imports :attr:`executable` and calls it with the same arguments.
        """
        module, _, name = self.executable.partition(":")
        executable_class = getattr(importlib.import_module(module), name)
        return executable_class(model, weights, loss, optimizer, options)
