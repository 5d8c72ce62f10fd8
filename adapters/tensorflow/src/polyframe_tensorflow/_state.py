"""Training state of the TensorFlow executable in polyframe's canonical form: the optimizer's slot
variables (TF's layouts are canonical), its update counter, the dropout generator's state and
the run-time learning rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from polyframe.errors import ConfigError
from polyframe.optimizer_state import SCHEDULED, STEP, state_slots

if TYPE_CHECKING:
    from ._executable import TensorFlowExecutable

__all__ = ["get_optimizer_state", "set_optimizer_state", "get_rng_state", "set_rng_state",
           "get_learning_rate", "set_learning_rate"]

_NATIVE_SLOTS = {"sgd": {"momentum": "velocity"}, "adam": {"m": "m", "v": "v"},
                 "adamw": {"m": "m", "v": "v"},
                 "rmsprop": {"square": "square", "average": "average", "momentum": "buffer"}}


def _slot_variables(executable: TensorFlowExecutable):
    """``(canonical name, variable)`` of every slot, in the trainable variables' order."""
    update = executable._optimizer
    keys = [key for key, variable in executable._net.params.items() if variable.trainable]
    native = _NATIVE_SLOTS[update.spec.kind]
    for slot in state_slots(update.spec):
        for key, variable in zip(keys, getattr(update, native[slot]), strict=True):
            yield f"{key}/{slot}", variable


def get_optimizer_state(executable: TensorFlowExecutable) -> dict[str, np.ndarray]:
    state = {STEP: np.array(executable._optimizer.step.numpy(), dtype=np.int64)}
    state.update({name: np.array(v.numpy(), np.float32) for name, v in _slot_variables(executable)})
    return state


def set_optimizer_state(executable: TensorFlowExecutable, state: dict[str, np.ndarray]) -> None:
    for name, variable in _slot_variables(executable):
        variable.assign(np.asarray(state[name], np.float32))
    executable._optimizer.step.assign(int(state[STEP]))


def get_rng_state(executable: TensorFlowExecutable) -> dict[str, np.ndarray]:
    return {"tf_generator": np.array(executable._net.rng.state.numpy(), copy=True)}


def set_rng_state(executable: TensorFlowExecutable, state: dict[str, np.ndarray]) -> None:
    executable._net.rng.state.assign(np.asarray(state["tf_generator"], np.int64))


def get_learning_rate(executable: TensorFlowExecutable) -> float:
    update = executable._optimizer
    if update.spec.constant_learning_rate is None:
        raise ConfigError(SCHEDULED)
    return float(update.rate.numpy())


def set_learning_rate(executable: TensorFlowExecutable, learning_rate: float) -> None:
    update = executable._optimizer
    if update.spec.constant_learning_rate is None:
        raise ConfigError(SCHEDULED)
    update.rate.assign(float(learning_rate))
