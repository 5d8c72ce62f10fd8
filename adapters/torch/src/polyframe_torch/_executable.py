"""The torch side: a native ``nn.Module`` built once from the canonical description.

Layout is converted at build and at weight import/export only: inputs are NCHW (converted once
per dataset in :meth:`TorchExecutable.prepare_inputs`), conv kernels ``(O, I, kH, kW)``, linear
weights ``(out, in)``. Flatten after a convolution is channel-last in polyframe; rather than
permuting activations every step, the rows of the Dense kernel that follows are permuted once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polyframe.backend import BuildOptions, Executable, StepResult
from polyframe.errors import ConfigError
from polyframe.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPool2D, same_padding
from polyframe.losses import PROBABILITY_FLOOR, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from polyframe.model import Node, Sequential
from polyframe.optimizers import SGD, Adam, Optimizer

__all__ = ["TorchExecutable"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

_ELEMENTWISE = (Dropout, Activation)


def _activation(name: str, node: Node) -> list[nn.Module]:
    """The module for an activation on ``node``'s output; none for ``"linear"``.

    Softmax runs over the canonical last axis: the channels, which torch keeps on axis 1 of an
    image tensor.
    """
    if name == "linear":
        return []
    if name == "softmax":
        return [nn.Softmax(dim=1 if len(node.output_shape) == 3 else -1)]
    return [_ACTIVATIONS[name]()]


def _pads(node: Node, kernel: tuple[int, int], strides: tuple[int, int], padding: str) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` for F.pad, from the canonical "same" rule."""
    if padding == "valid":
        return (0, 0, 0, 0)
    top, bottom = same_padding(node.input_shape[0], kernel[0], strides[0])
    left, right = same_padding(node.input_shape[1], kernel[1], strides[1])
    return (left, right, top, bottom)


class _Pad(nn.Module):
    def __init__(self, pads: tuple[int, int, int, int], value: float) -> None:
        super().__init__()
        self.pads, self.value = pads, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads, value=self.value)


class _ChannelLastFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class _ToChannelLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def _flatten_row_order(shape: tuple[int, ...]) -> np.ndarray:
    """For a flattened (H, W, C) input: canonical row index of each NCHW-flattened position."""
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 0, 1).ravel()


class _Compiler:
    """Turns the node list into torch modules, remembering how each parameter is stored."""

    def __init__(self, model: Sequential) -> None:
        self.modules: list[nn.Module] = []
        self.params: dict[str, tuple[nn.Parameter, str, np.ndarray | None]] = {}
        self._pending_rows: np.ndarray | None = None
        nodes = model.nodes
        for i, node in enumerate(nodes):
            self._add(node, nodes[i + 1:])
        if len(model.output_shape) == 3:
            self.modules.append(_ToChannelLast())

    def _add(self, node: Node, following: tuple[Node, ...]) -> None:
        layer = node.layer
        if isinstance(layer, Conv2D):
            pads = _pads(node, layer.kernel_size, layer.strides, layer.padding)
            symmetric = pads[0] == pads[1] and pads[2] == pads[3]
            if not symmetric:
                self.modules.append(_Pad(pads, 0.0))
            conv = nn.Conv2d(node.input_shape[-1], layer.filters, layer.kernel_size,
                             stride=layer.strides, padding=(pads[2], pads[0]) if symmetric else 0,
                             bias=layer.use_bias)
            self.modules += [conv, *_activation(layer.activation, node)]
            self._register(node, conv, "kernel", "conv", None)
        elif isinstance(layer, MaxPool2D):
            pads = _pads(node, layer.pool_size, layer.strides, layer.padding)
            if any(pads):
                self.modules.append(_Pad(pads, float("-inf")))
            self.modules.append(nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, Flatten):
            if len(node.input_shape) != 3:
                self.modules.append(nn.Flatten(1))
            elif self._next_dense(following) is not None:
                self.modules.append(nn.Flatten(1))
                self._pending_rows = _flatten_row_order(node.input_shape)
            else:
                self.modules.append(_ChannelLastFlatten())
        elif isinstance(layer, Dense):
            linear = nn.Linear(node.input_shape[0], layer.units, bias=layer.use_bias)
            self.modules += [linear, *_activation(layer.activation, node)]
            self._register(node, linear, "kernel", "dense", self._pending_rows)
            self._pending_rows = None
        elif isinstance(layer, Dropout):
            self.modules.append(nn.Dropout(layer.rate))
        elif isinstance(layer, Activation):
            self.modules += _activation(layer.activation, node)
        else:
            raise ConfigError(f"the torch backend does not support layer {type(layer).__name__}")

    @staticmethod
    def _next_dense(following: tuple[Node, ...]) -> Node | None:
        for node in following:
            if isinstance(node.layer, Dense):
                return node
            if not isinstance(node.layer, _ELEMENTWISE):
                return None
        return None

    def _register(self, node: Node, module: nn.Module, kernel: str, kind: str, rows: np.ndarray | None) -> None:
        self.params[node.param_key(kernel)] = (module.weight, kind, rows)
        if module.bias is not None:
            self.params[node.param_key("bias")] = (module.bias, "bias", None)


def _to_native(array: np.ndarray, kind: str, rows: np.ndarray | None) -> np.ndarray:
    if kind == "conv":
        return array.transpose(3, 2, 0, 1)
    if kind == "dense":
        return (array[rows] if rows is not None else array).T
    return array


def _to_canonical(array: np.ndarray, kind: str, rows: np.ndarray | None) -> np.ndarray:
    if kind == "conv":
        return array.transpose(2, 3, 1, 0)
    if kind == "dense":
        kernel = array.T
        if rows is None:
            return kernel
        out = np.empty_like(kernel)
        out[rows] = kernel
        return out
    return array


def _loss_function(loss: Loss):
    if isinstance(loss, SparseCategoricalCrossentropy):
        if loss.from_logits:
            return F.cross_entropy
        return lambda p, y: F.nll_loss(torch.log(p.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)), y)
    if isinstance(loss, MeanSquaredError):
        return F.mse_loss
    raise ConfigError(f"the torch backend does not support loss {type(loss).__name__}")


def _optimizer(spec: Optimizer, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if isinstance(spec, Adam):
        return torch.optim.Adam(params, lr=spec.learning_rate, betas=(spec.beta_1, spec.beta_2),
                                eps=spec.epsilon)
    if isinstance(spec, SGD):
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=spec.momentum)
    raise ConfigError(f"the torch backend does not support optimizer {type(spec).__name__}")


class TorchExecutable(Executable):
    """A polyframe model as a torch ``nn.Sequential`` plus a ``torch.optim`` optimizer, on CPU."""

    def __init__(self, model: Sequential, weights: dict[str, np.ndarray], loss: Loss,
                 optimizer: Optimizer, options: BuildOptions) -> None:
        torch.manual_seed(options.seed)
        if options.deterministic:
            torch.use_deterministic_algorithms(True)
        compiled = _Compiler(model)
        self.module = nn.Sequential(*compiled.modules)
        self._params = compiled.params
        self.set_weights(weights)
        self._loss = _loss_function(loss)
        self._optimizer = _optimizer(optimizer, list(self.module.parameters()))
        self._training: bool | None = None

    def _mode(self, training: bool) -> None:
        if self._training is not training:
            self.module.train(training)
            self._training = training

    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._mode(True)
        self._optimizer.zero_grad(set_to_none=True)
        outputs = self.module(torch.from_numpy(x))
        loss = self._loss(outputs, torch.from_numpy(y))
        loss.backward()
        self._optimizer.step()
        return StepResult(loss.item(), outputs.detach().numpy())

    @torch.inference_mode()
    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._mode(False)
        outputs = self.module(torch.from_numpy(x))
        return StepResult(self._loss(outputs, torch.from_numpy(y)).item(), outputs.numpy())

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> np.ndarray:
        self._mode(False)
        return self.module(torch.from_numpy(x)).numpy()

    def get_weights(self) -> dict[str, np.ndarray]:
        return {key: _to_canonical(p.detach().numpy(), kind, rows).copy()
                for key, (p, kind, rows) in self._params.items()}

    @torch.no_grad()
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for key, (param, kind, rows) in self._params.items():
            param.copy_(torch.from_numpy(np.ascontiguousarray(_to_native(weights[key], kind, rows))))
