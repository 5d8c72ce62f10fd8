"""Training state of the torch executable in polyframe's canonical form: the optimizer's slots
(``torch.optim`` per-parameter state, converted to canonical layout), the dropout RNG (torch's
CPU generator), the run-time learning rate and fp16-mixed's loss scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from polyframe.errors import ConfigError
from polyframe.optimizer_state import SCHEDULED, STEP, state_slots
from polyframe.optimizers import SGD

from ._executable import _to_canonical, _to_native

if TYPE_CHECKING:
    from ._executable import TorchExecutable

__all__ = ["get_optimizer_state", "set_optimizer_state", "get_rng_state", "set_rng_state",
           "get_learning_rate", "set_learning_rate", "get_loss_scale", "set_loss_scale"]

_NATIVE_SLOTS = {"m": "exp_avg", "v": "exp_avg_sq", "square": "square_avg", "average": "grad_avg",
                 "momentum": "momentum_buffer"}


def _trainable(executable: TorchExecutable):
    """``(key, tensors, kind, rows)`` of each trainable parameter; a tuple parameter (GRU's two
    biases) is one canonical array stacked from several tensors."""
    optimized = {id(p) for p in executable._optimizer.params}
    for key, (param, kind, rows) in executable._params.items():
        tensors = param if isinstance(param, tuple) else (param,)
        if all(id(t) in optimized for t in tensors):
            yield key, tensors, kind, rows, isinstance(param, tuple)


def get_optimizer_state(executable: TorchExecutable) -> dict[str, np.ndarray]:
    optimizer = executable._optimizer
    slots = state_slots(optimizer.spec)
    state = {STEP: np.array(optimizer.updates, dtype=np.int64)}
    for key, tensors, kind, rows, stacked in _trainable(executable):
        for slot in slots:
            arrays = []
            for tensor in tensors:
                value = optimizer.native.state.get(tensor, {}).get(_NATIVE_SLOTS[slot])
                arrays.append(np.zeros(tuple(tensor.shape), np.float32) if value is None
                              else value.detach().numpy())
            native = np.stack(arrays) if stacked else arrays[0]
            state[f"{key}/{slot}"] = np.array(_to_canonical(native, kind, rows), np.float32)
    return state


def set_optimizer_state(executable: TorchExecutable, state: dict[str, np.ndarray]) -> None:
    optimizer = executable._optimizer
    slots = state_slots(optimizer.spec)
    step = int(state[STEP])
    counted = not isinstance(optimizer.spec, SGD)
    for key, tensors, kind, rows, stacked in _trainable(executable):
        native = {slot: np.ascontiguousarray(_to_native(state[f"{key}/{slot}"], kind, rows))
                  for slot in slots}
        for i, tensor in enumerate(tensors):
            entry = {_NATIVE_SLOTS[slot]: torch.tensor(array[i] if stacked else array)
                     for slot, array in native.items()}
            if counted:
                entry["step"] = torch.tensor(float(step), dtype=torch.float32)
            optimizer.native.state[tensor] = entry
    optimizer.updates = step


def get_rng_state(executable: TorchExecutable) -> dict[str, np.ndarray]:
    return {"torch_cpu_generator": torch.get_rng_state().numpy().copy()}


def set_rng_state(executable: TorchExecutable, state: dict[str, np.ndarray]) -> None:
    torch.set_rng_state(torch.from_numpy(np.array(state["torch_cpu_generator"], np.uint8)))


def get_learning_rate(executable: TorchExecutable) -> float:
    optimizer = executable._optimizer
    if optimizer.spec.constant_learning_rate is None:
        raise ConfigError(SCHEDULED)
    return float(optimizer.native.param_groups[0]["lr"])


def set_learning_rate(executable: TorchExecutable, learning_rate: float) -> None:
    optimizer = executable._optimizer
    if optimizer.spec.constant_learning_rate is None:
        raise ConfigError(SCHEDULED)
    for group in optimizer.native.param_groups:
        group["lr"] = float(learning_rate)


def get_loss_scale(executable: TorchExecutable) -> dict[str, float] | None:
    precision = executable._precision
    return {"scale": precision.scale, "good_steps": precision.good_steps} if precision.scaled else None


def set_loss_scale(executable: TorchExecutable, state: dict[str, float]) -> None:
    precision = executable._precision
    if not precision.scaled:
        raise ConfigError("this torch executable does not scale its loss (precision is not "
                          "'fp16-mixed'), so it has no loss scale to restore")
    precision.scale, precision.good_steps = float(state["scale"]), int(state["good_steps"])
