"""Training state of the JAX executable in polyframe's canonical form.

optax keeps the slots in typed states inside the chain (``ScaleByAdamState.mu/nu``,
``TraceState.trace``, ``ScaleByRmsState.nu``, ``ScaleByRStdDevState.mu/nu``); parameters are
keyed by canonical name in canonical layout already. The update count is the executable's step
counter, which also positions the dropout keys (``fold_in(key(seed), step)``), so it is the whole
RNG state; optax's own ``count`` fields are set to it too. A constant learning rate lives in an
``inject_hyperparams`` state, so changing it swaps one scalar and never recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from polyframe.errors import ConfigError
from polyframe.optimizer_state import SCHEDULED, STEP

if TYPE_CHECKING:
    from ._executable import JaxExecutable

__all__ = ["get_optimizer_state", "set_optimizer_state", "get_learning_rate", "set_learning_rate"]

_SLOT_FIELDS = {"ScaleByAdamState": {"mu": "m", "nu": "v"}, "TraceState": {"trace": "momentum"},
                "ScaleByRmsState": {"nu": "square"},
                "ScaleByRStdDevState": {"mu": "average", "nu": "square"}}


def _is_state(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _rebuild(node: Any, change: Callable[[Any], Any]) -> Any:
    """``node`` with every optax state (a NamedTuple) inside it passed through ``change``."""
    if _is_state(node):
        node = change(node)
        return node._replace(**{f: _rebuild(getattr(node, f), change) for f in node._fields
                                if isinstance(getattr(node, f), tuple)})
    if isinstance(node, tuple):
        return tuple(_rebuild(item, change) for item in node)
    return node


def _states(node: Any) -> list[Any]:
    found: list[Any] = []
    _rebuild(node, lambda state: found.append(state) or state)
    return found


def get_optimizer_state(executable: JaxExecutable) -> dict[str, np.ndarray]:
    state = {STEP: np.array(int(executable._step), dtype=np.int64)}
    for node in _states(executable._opt_state):
        for field, slot in _SLOT_FIELDS.get(type(node).__name__, {}).items():
            for key, value in getattr(node, field).items():
                state[f"{key}/{slot}"] = np.array(value, np.float32)
    return state


def set_optimizer_state(executable: JaxExecutable, state: dict[str, np.ndarray]) -> None:
    step = int(state[STEP])

    def change(node: Any) -> Any:
        fields = {}
        for field, slot in _SLOT_FIELDS.get(type(node).__name__, {}).items():
            fields[field] = {key: jax.device_put(np.array(state[f"{key}/{slot}"], np.float32))
                             for key in getattr(node, field)}
        if "count" in node._fields:
            fields["count"] = jnp.asarray(step, dtype=node.count.dtype)
        return node._replace(**fields)

    executable._opt_state = _rebuild(executable._opt_state, change)
    executable._step = jnp.asarray(step, dtype=executable._step.dtype)


def _injected(executable: JaxExecutable) -> Any:
    for node in _states(executable._opt_state):
        if "hyperparams" in node._fields and "learning_rate" in node.hyperparams:
            return node
    raise ConfigError(SCHEDULED)


def get_learning_rate(executable: JaxExecutable) -> float:
    return float(_injected(executable).hyperparams["learning_rate"])


def set_learning_rate(executable: JaxExecutable, learning_rate: float) -> None:
    target = _injected(executable)

    def change(node: Any) -> Any:
        if node is not target:
            return node
        rate = node.hyperparams["learning_rate"]
        return node._replace(hyperparams={**node.hyperparams,
                                          "learning_rate": jnp.asarray(learning_rate, rate.dtype)})

    executable._opt_state = _rebuild(executable._opt_state, change)
