"""The faulty executables: thin subclasses of the real adapters' executables, each with one
planted semantic defect that a real adapter could plausibly ship. Each is planted through a
small seam of the real executable (an attribute it builds once, a module in its torch module
tree, one overridden method) so the rest of the backend stays correct."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch import nn

import polyframe as pf
from polyframe.backend import StepResult
from polyframe.execution import GraphProgram
from polyframe_jax._executable import JaxExecutable
from polyframe_torch._executable import TorchExecutable

__all__ = ["AdamEpsilonInsideSqrt", "BatchNormMomentumInverted", "SamePaddingSplitFirst",
           "LstmGatesReordered", "FlattenChannelFirst", "LossSummed", "DropoutAtInference",
           "UnseededBatchShuffle", "CheckpointMomentsSwapped"]


def _require(found: bool, what: str) -> None:
    """Fail loudly when a seam is gone, instead of silently running a correct backend."""
    if not found:
        raise RuntimeError(f"faulty backend: the adapter no longer has {what}; update the defect")


class AdamEpsilonInsideSqrt(JaxExecutable):
    """Adam with epsilon under the square root, ``sqrt(v_hat + eps)``: optax's ``eps_root``
    taken for ``eps``."""

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        _require(hasattr(self, "_tx") and hasattr(self, "_opt_state"), "JaxExecutable._tx")
        if isinstance(optimizer, pf.Adam):
            self._tx = optax.adam(optimizer.learning_rate, b1=optimizer.beta_1, b2=optimizer.beta_2,
                                  eps=0.0, eps_root=optimizer.epsilon)
            self._opt_state = self._tx.init(self._params)


class BatchNormMomentumInverted(TorchExecutable):
    """BatchNorm moving statistics updated with PyTorch's momentum convention taken for
    polyframe's: the new batch gets weight ``momentum`` instead of ``1 - momentum``."""

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        norms = [m for m in self.module.modules() if hasattr(m, "momentum") and hasattr(m, "moving_mean")]
        _require(bool(norms) or not any(isinstance(n.layer, pf.BatchNorm) for n in model.nodes),
                 "BatchNorm modules with a momentum attribute")
        for norm in norms:
            norm.momentum = 1.0 - norm.momentum


class SamePaddingSplitFirst(TorchExecutable):
    """"same" padding with the odd element at the start (top/left), not at the end."""

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        for module in self.module.modules():
            pads = getattr(module, "pads", None)
            if isinstance(pads, tuple) and len(pads) % 2 == 0:
                module.pads = tuple(p for i in range(0, len(pads), 2) for p in (pads[i + 1], pads[i]))


def _lstm_igfo(node, apply_index: int):
    """An LSTM cell that slices the gates as i, g, f, o (Haiku's order) instead of i, f, g, o."""
    layer = node.layer
    kernel, recurrent, bias = (node.param_key(k) for k in ("kernel", "recurrent_kernel", "bias"))

    def apply(params, x, key, new_state):
        def step(carry, a):
            h, c = carry
            i, g, f, o = jnp.split(a + h @ params[recurrent], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], layer.units), x.dtype)
        carry, states = jax.lax.scan(step, (zeros, zeros),
                                     jnp.swapaxes(x @ params[kernel] + params[bias], 0, 1))
        main = jnp.swapaxes(states, 0, 1) if layer.return_sequences else states[-1]
        return (main, *carry) if getattr(layer, "return_state", False) else main

    return apply


def _flatten_channel_first(node, apply_index: int):
    """Flatten in PyTorch's channel-major order: NHWC moved to NCHW first."""
    def apply(params, x, key, new_state):
        return jnp.moveaxis(x, -1, 1).reshape(x.shape[0], -1) if x.ndim > 2 else x
    return apply


class _JaxLayerDefect(JaxExecutable):
    """Replaces the compiled function of every node of one layer type in the executable's graph
    program (before the first jit trace)."""

    layer_type: type
    builder = None

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        program = getattr(self, "_program", None)
        _require(isinstance(program, GraphProgram), "a GraphProgram in JaxExecutable._program")
        program.steps = tuple(
            (node, type(self).builder(node, index) if type(node.layer) is self.layer_type else fn)
            for index, (node, fn) in enumerate(program.steps))


class LstmGatesReordered(_JaxLayerDefect):
    layer_type = pf.LSTM
    builder = staticmethod(_lstm_igfo)


class FlattenChannelFirst(_JaxLayerDefect):
    layer_type = pf.Flatten
    builder = staticmethod(_flatten_channel_first)


def _summed(mean):
    """A batch-mean loss turned into the sum over the batch's samples."""
    def summed(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mean(outputs, target) * outputs.shape[0]
    return summed


class LossSummed(TorchExecutable):
    """The loss summed over the batch instead of averaged (a ``reduction="sum"`` over the
    samples), in every per-output loss function the executable built."""

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        _require(isinstance(getattr(self, "_losses", None), list),
                 "a list of loss functions in TorchExecutable._losses")
        self._losses = [_summed(mean) for mean in self._losses]


class _FunctionalDropout(nn.Module):
    """``F.dropout(x, p)`` without ``training=self.training``: its ``training`` defaults to True."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p)


class DropoutAtInference(TorchExecutable):
    """Dropout left on at inference: the classic functional-dropout bug."""

    def __init__(self, model, weights, loss, optimizer, options) -> None:
        super().__init__(model, weights, loss, optimizer, options)
        for parent in list(self.module.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Dropout):
                    setattr(parent, name, _FunctionalDropout(child.p))


class UnseededBatchShuffle(TorchExecutable):
    """Shuffles each batch's samples with an unseeded generator before the step, as a
    prefetching loader with shuffling on and no seed would; the outputs are put back in the
    caller's order, so each still matches its label."""

    def train_step(self, x: np.ndarray, y: np.ndarray):
        order = np.random.default_rng().permutation(len(x))
        loss, outputs = super().train_step(np.ascontiguousarray(x[order]), np.ascontiguousarray(y[order]))
        restored = np.empty_like(outputs)
        restored[order] = outputs
        return StepResult(loss, restored)


def _swap_moments(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    swapped = {"/m": "/v", "/v": "/m"}
    return {next((key[:-2] + new for old, new in swapped.items() if key.endswith(old)), key): value
            for key, value in state.items()}


class CheckpointMomentsSwapped(TorchExecutable):
    """Adam's moments exported and imported under each other's canonical names (torch's
    ``exp_avg`` / ``exp_avg_sq`` mapped the wrong way round): resuming on this backend is
    exact, but its checkpoints mean something else on every other backend."""

    def get_optimizer_state(self) -> dict[str, np.ndarray]:
        return _swap_moments(super().get_optimizer_state())

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_optimizer_state(_swap_moments(state))
