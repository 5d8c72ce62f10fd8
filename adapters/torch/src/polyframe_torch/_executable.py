"""The torch side: a native ``nn.Module`` built once from the canonical description.

Layout is converted at build and at weight import/export only: every tensor with spatial axes is
kept channel-first (images NCHW, sequences NCL; inputs converted once per dataset in
:meth:`TorchExecutable.prepare_inputs`), conv kernels ``(O, I, kH, kW)`` / ``(O, I, k)``, linear
weights ``(out, in)``. Channel-wise operations (softmax, log_softmax, BatchNorm) therefore use
axis 1. Flatten after a convolution is channel-last in polyframe; rather than permuting
activations every step, the rows of the Dense kernel that follows are permuted once. LSTM and GRU
are ``nn.LSTM`` / ``nn.GRU`` with their weights transposed at build (see :class:`_Recurrent`).
"""

from __future__ import annotations

from functools import partial, reduce

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polyframe.backend import BuildOptions, Executable, StepResult
from polyframe.errors import ConfigError
from polyframe.activations import LEAKY_RELU_SLOPE
from polyframe.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GRU,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    LSTM,
    MaxPool2D,
    Reshape,
    same_padding,
    window_counts,
)
from polyframe.execution import GraphProgram, as_tuple, single_or_tuple, weighted_sum
from polyframe.losses import Loss
from polyframe.merging import Add, Concatenate, Multiply
from polyframe.model import Model, Node
from polyframe.optimizers import Optimizer

from ._attention import ATTENTION_LAYERS, build_attention_layer
from ._precision import Precision
from ._training import _loss_function, _optimizer

__all__ = ["TorchExecutable"]

Stored = torch.Tensor | tuple[torch.Tensor, ...]
"""Where one canonical array lives: a tensor, or the rows of a stacked array (GRU's biases)."""

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": lambda: nn.GELU(approximate="none"),
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
    "softplus": nn.Softplus,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
}

_ELEMENTWISE = (Dropout, Activation)


def _activation(name: str, node: Node) -> list[nn.Module]:
    """The module for an activation on ``node``'s output; none for ``"linear"``.

    Softmax and log_softmax run over the canonical last axis: the channels, which torch keeps on
    axis 1 of every tensor (features, NCL sequences and NCHW images alike).
    """
    return [] if name == "linear" else [_ACTIVATIONS[name]()]


def _pads(node: Node, kernel: tuple[int, int], strides: tuple[int, int], padding: str) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` for F.pad, from the canonical "same" rule."""
    if padding == "valid":
        return (0, 0, 0, 0)
    top, bottom = same_padding(node.input_shape[0], kernel[0], strides[0])
    left, right = same_padding(node.input_shape[1], kernel[1], strides[1])
    return (left, right, top, bottom)


class _Pad(nn.Module):
    def __init__(self, pads: tuple[int, ...], value: float) -> None:
        super().__init__()
        self.pads, self.value = pads, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads, value=self.value)


class _ChannelLastFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(1, -1).flatten(1)


class _Reshape(nn.Module):
    """Canonical (row-major, channel-last) reshape of channel-first tensors."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.target = node.output_shape
        self.from_channel_first = len(node.input_shape) >= 2
        self.to_channel_first = len(node.output_shape) >= 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.from_channel_first:
            x = x.movedim(1, -1)
        x = x.reshape(x.shape[0], *self.target)
        return x.movedim(-1, 1) if self.to_channel_first else x


class _AvgPoolSame(nn.Module):
    """Average over the real elements of each window: a zero-padded window sum divided by the
    count of non-padding elements (fixed at build), since torch's own ``count_include_pad=False``
    only knows symmetric padding."""

    def __init__(self, node: Node, layer: AvgPool2D) -> None:
        super().__init__()
        self.pads = _pads(node, layer.pool_size, layer.strides, layer.padding)
        self.window, self.strides = layer.pool_size, layer.strides
        rows, cols = (window_counts(n, k, s, "same") for n, k, s in
                      zip(node.input_shape[:2], layer.pool_size, layer.strides))
        self.register_buffer("counts", torch.tensor(np.outer(rows, cols), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(F.pad(x, self.pads), self.window, self.strides, divisor_override=1)
        return total / self.counts


class _GlobalPool(nn.Module):
    def __init__(self, reduce: str) -> None:
        super().__init__()
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.reduce == "mean" else x.amax(dim=(2, 3))


class _BatchNorm(nn.Module):
    """polyframe's BatchNorm over axis 1: ``F.batch_norm`` for the normalisation, and moving
    statistics updated here as ``momentum * old + (1 - momentum) * batch`` with the biased
    batch variance (``nn.BatchNorm`` would use ``1 - momentum`` and the unbiased variance)."""

    def __init__(self, channels: int, layer: BatchNorm) -> None:
        super().__init__()
        self.momentum, self.epsilon = layer.momentum, layer.epsilon
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                                False, 0.0, self.epsilon)
        with torch.no_grad():
            variance, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
            m = self.momentum
            self.moving_mean.copy_(m * self.moving_mean + (1.0 - m) * mean)
            self.moving_variance.copy_(m * self.moving_variance + (1.0 - m) * variance)
        return F.batch_norm(x, None, None, self.gamma, self.beta, True, 0.0, self.epsilon)


class _Recurrent(nn.Module):
    """``nn.LSTM`` / ``nn.GRU`` (``batch_first``) between NCL tensors: the input is permuted to
    ``(batch, time, features)`` and a returned sequence back to NCL.

    Torch's gate orders (LSTM i, f, g, o; GRU r, z, n) and its GRU formula (``b_hn`` inside
    ``r * (...)``) are polyframe's, so the weights only need transposing: ``weight_ih = kernel.T``,
    ``weight_hh = recurrent_kernel.T``. GRU: ``bias_ih, bias_hh = bias``. LSTM: torch adds two
    biases where polyframe has one, and a second trainable copy would receive the same gradient
    and so double the bias's step; ``bias_ih`` holds the bias and ``bias_hh`` is a frozen zero.
    """

    def __init__(self, node: Node, layer: LSTM | GRU) -> None:
        super().__init__()
        rnn = nn.LSTM if isinstance(layer, LSTM) else nn.GRU
        self.rnn = rnn(node.input_shape[-1], layer.units, batch_first=True)
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state
        if isinstance(layer, LSTM):
            self.rnn.bias_hh_l0.requires_grad_(False)
            with torch.no_grad():
                self.rnn.bias_hh_l0.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out, state = self.rnn(x.movedim(1, -1))
        main = out.movedim(-1, 1) if self.return_sequences else out[:, -1]
        if not self.return_state:
            return main
        return (main, *(s[0] for s in (state if isinstance(state, tuple) else (state,))))


def _flatten_row_order(shape: tuple[int, ...]) -> np.ndarray:
    """For a flattened channel-last input: canonical row index of each channel-first position."""
    return np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), -1, 0).ravel()


def _torch_axis(layer: Concatenate, rank: int) -> int:
    """Concatenate's canonical axis in torch's channel-first layout (batch is dim 0)."""
    axis = layer.sample_axis(rank)
    if rank < 2:
        return 1
    return 1 if axis == rank - 1 else axis + 2


class _Merge(nn.Module):
    def __init__(self, node: Node) -> None:
        super().__init__()
        layer = node.layer
        if isinstance(layer, Concatenate):
            self.combine = partial(torch.cat, dim=_torch_axis(layer, len(node.input_shape[0])))
        else:
            self.combine = partial(reduce, torch.add if isinstance(layer, Add) else torch.mul)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(xs)


class _Graph(nn.Module):
    """The model: one block per node, run in node order by the core's :class:`GraphProgram`;
    outputs with spatial axes go back to channel-last."""

    def __init__(self, model: Model, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.program = GraphProgram(model, list(self.blocks))
        self.channel_first = tuple(len(shape) >= 2 for shape in model.output_shapes)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.program.run(xs, lambda block, value: block(value))
        return tuple(o.movedim(1, -1) if first else o
                     for o, first in zip(outputs, self.channel_first))


class _Compiler:
    """Turns each node into a torch block, remembering how each parameter is stored."""

    def __init__(self, model: Model) -> None:
        self.blocks: list[nn.Module] = []
        self.params: dict[str, tuple[Stored, str, np.ndarray | None]] = {}
        self._model = model
        self._rows: dict[str, np.ndarray] = {}
        """Dense node name -> row order of its kernel, when it reads a channel-first flatten."""
        for node in model.nodes:
            self.modules: list[nn.Module] = []
            self._add(node)
            block = (self.modules[0] if len(self.modules) == 1
                     else nn.Sequential(*self.modules) if self.modules else nn.Identity())
            self.blocks.append(block)

    def _add(self, node: Node) -> None:
        layer = node.layer
        if isinstance(layer, (Add, Multiply, Concatenate)):
            self.modules.append(_Merge(node))
        elif isinstance(layer, Conv2D):
            pads = _pads(node, layer.span, layer.strides, layer.padding)
            symmetric = pads[0] == pads[1] and pads[2] == pads[3]
            if not symmetric:
                self.modules.append(_Pad(pads, 0.0))
            conv = nn.Conv2d(node.input_shape[-1], layer.filters, layer.kernel_size,
                             stride=layer.strides, padding=(pads[2], pads[0]) if symmetric else 0,
                             dilation=layer.dilation, groups=layer.groups, bias=layer.use_bias)
            self.modules += [conv, *_activation(layer.activation, node)]
            self._register(node, conv, "kernel", "conv", None)
        elif isinstance(layer, MaxPool2D):
            pads = _pads(node, layer.pool_size, layer.strides, layer.padding)
            if any(pads):
                self.modules.append(_Pad(pads, float("-inf")))
            self.modules.append(nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, AvgPool2D):
            if any(_pads(node, layer.pool_size, layer.strides, layer.padding)):
                self.modules.append(_AvgPoolSame(node, layer))
            else:
                self.modules.append(nn.AvgPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, (GlobalAvgPool2D, GlobalMaxPool2D)):
            self.modules.append(_GlobalPool("mean" if isinstance(layer, GlobalAvgPool2D) else "max"))
        elif isinstance(layer, Conv1D):
            before, after = (same_padding(node.input_shape[0], layer.span, layer.strides)
                             if layer.padding == "same" else (0, 0))
            if before != after:
                self.modules.append(_Pad((before, after), 0.0))
            conv = nn.Conv1d(node.input_shape[-1], layer.filters, layer.kernel_size,
                             stride=layer.strides, padding=before if before == after else 0,
                             dilation=layer.dilation, bias=layer.use_bias)
            self.modules += [conv, *_activation(layer.activation, node)]
            self._register(node, conv, "kernel", "conv1d", None)
        elif isinstance(layer, Reshape):
            self.modules.append(_Reshape(node))
        elif isinstance(layer, ATTENTION_LAYERS):
            module, registered = build_attention_layer(node)
            self.modules.append(module)
            self.params.update(registered)
        elif isinstance(layer, BatchNorm):
            norm = _BatchNorm(node.input_shape[-1], layer)
            self.modules.append(norm)
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.params[node.param_key(name)] = (getattr(norm, name), "vector", None)
        elif isinstance(layer, (LSTM, GRU)):
            recurrent = _Recurrent(node, layer)
            rnn = recurrent.rnn
            self.modules.append(recurrent)
            self.params[node.param_key("kernel")] = (rnn.weight_ih_l0, "dense", None)
            self.params[node.param_key("recurrent_kernel")] = (rnn.weight_hh_l0, "dense", None)
            self.params[node.param_key("bias")] = (
                (rnn.bias_ih_l0, rnn.bias_hh_l0) if isinstance(layer, GRU) else rnn.bias_ih_l0,
                "bias", None)
        elif isinstance(layer, Flatten):
            if len(node.input_shape) < 2:
                self.modules.append(nn.Flatten(1))
            elif (dense := self._next_dense(node)) is not None:
                self.modules.append(nn.Flatten(1))
                self._rows[dense.name] = _flatten_row_order(node.input_shape)
            else:
                self.modules.append(_ChannelLastFlatten())
        elif isinstance(layer, Dense):
            linear = nn.Linear(node.input_shape[0], layer.units, bias=layer.use_bias)
            self.modules += [linear, *_activation(layer.activation, node)]
            self._register(node, linear, "kernel", "dense", self._rows.get(node.name))
        elif isinstance(layer, Dropout):
            self.modules.append(nn.Dropout(layer.rate))
        elif isinstance(layer, Activation):
            self.modules += _activation(layer.activation, node)
        else:
            raise ConfigError(f"the torch backend does not support layer {type(layer).__name__}")

    def _next_dense(self, flatten: Node) -> Node | None:
        """The Dense that alone reads ``flatten``'s output, through elementwise layers only."""
        key = flatten.name
        while key not in self._model.outputs:
            consumers = self._model.consumers(key)
            if len(consumers) != 1:
                return None
            node = consumers[0]
            if isinstance(node.layer, Dense):
                return node
            if not isinstance(node.layer, _ELEMENTWISE):
                return None
            key = node.name
        return None

    def _register(self, node: Node, module: nn.Module, kernel: str, kind: str, rows: np.ndarray | None) -> None:
        self.params[node.param_key(kernel)] = (module.weight, kind, rows)
        if module.bias is not None:
            self.params[node.param_key("bias")] = (module.bias, "bias", None)


def _to_native(array: np.ndarray, kind: str, rows: np.ndarray | None) -> np.ndarray:
    if kind == "conv":
        return array.transpose(3, 2, 0, 1)
    if kind == "conv1d":
        return array.transpose(2, 1, 0)
    if kind == "dense":
        return (array[rows] if rows is not None else array).T
    return array


def _to_canonical(array: np.ndarray, kind: str, rows: np.ndarray | None) -> np.ndarray:
    if kind == "conv":
        return array.transpose(2, 3, 1, 0)
    if kind == "conv1d":
        return array.transpose(2, 1, 0)
    if kind == "dense":
        kernel = array.T
        if rows is None:
            return kernel
        out = np.empty_like(kernel)
        out[rows] = kernel
        return out
    return array


def _read(param: Stored) -> np.ndarray:
    """A stored array; a tuple of tensors (GRU's two biases) is one canonical array, stacked."""
    if isinstance(param, tuple):
        return np.stack([p.detach().numpy() for p in param])
    return param.detach().numpy()


class TorchExecutable(Executable):
    """A polyframe model as a torch ``nn.Module`` (one block per node) plus a ``torch.optim``
    optimizer, on CPU."""

    state_functions = "polyframe_torch._state"

    def __init__(self, model: Model, weights: dict[str, np.ndarray], loss: Loss | tuple[Loss, ...],
                 optimizer: Optimizer, options: BuildOptions) -> None:
        torch.manual_seed(options.seed)
        if options.deterministic:
            torch.use_deterministic_algorithms(True)
        compiled = _Compiler(model)
        self.module = _Graph(model, compiled.blocks)
        self._params = compiled.params
        self.set_weights(weights)
        self._losses = [_loss_function(spec) for spec in as_tuple(loss)]
        self._loss_weights = options.loss_weights
        self._optimizer = _optimizer(optimizer, [p for p in self.module.parameters() if p.requires_grad])
        self._training: bool | None = None
        self._precision = Precision(options.precision)

    def _mode(self, training: bool) -> None:
        if self._training is not training:
            self.module.train(training)
            self._training = training

    def _forward(self, x: np.ndarray | tuple[np.ndarray, ...], module: nn.Module | None = None
                 ) -> tuple[torch.Tensor, ...]:
        """Outputs of ``module`` (default: the model) in float32, computed in the precision's type."""
        with self._precision.autocast():
            outputs = (module or self.module)(*(torch.from_numpy(part) for part in as_tuple(x)))
        return tuple(o.float() for o in outputs)

    def _loss(self, outputs: tuple[torch.Tensor, ...], y: np.ndarray | tuple[np.ndarray, ...]) -> torch.Tensor:
        return weighted_sum([fn(o, torch.from_numpy(t)) for fn, o, t
                             in zip(self._losses, outputs, as_tuple(y))], self._loss_weights)

    @staticmethod
    def _host(outputs: tuple[torch.Tensor, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
        return single_or_tuple([o.detach().numpy() for o in outputs])

    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, 1) if x.ndim >= 3 else x)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._mode(True)
        self._optimizer.zero_grad(set_to_none=True)
        outputs = self._forward(x)
        loss = self._loss(outputs, y)
        self._precision.backward_and_step(loss, self._optimizer)
        return StepResult(loss.item(), self._host(outputs))

    @torch.inference_mode()
    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._mode(False)
        outputs = self._forward(x)
        return StepResult(self._loss(outputs, y).item(), self._host(outputs))

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> np.ndarray:
        self._mode(False)
        return self._host(self._forward(x))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {key: _to_canonical(_read(p), kind, rows).copy()
                for key, (p, kind, rows) in self._params.items()}

    @torch.no_grad()
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for key, (param, kind, rows) in self._params.items():
            native = np.ascontiguousarray(_to_native(weights[key], kind, rows))
            if isinstance(param, tuple):
                for row, value in zip(param, native):
                    row.copy_(torch.from_numpy(value))
            else:
                param.copy_(torch.from_numpy(native))
