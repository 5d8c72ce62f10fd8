"""A float64 numpy implementation of polyframe's canonical semantics, the yardstick for backends.

It runs forward and backward passes and optimizer updates with the formulas documented in
:mod:`polyframe.layers`, :mod:`polyframe.losses` and :mod:`polyframe.optimizers`, written
independently of every framework. Dropout is the identity here: the reference has no RNG, so
compare against it with dropout off. :meth:`ReferenceModel.forward` runs in inference mode and
:meth:`ReferenceModel.loss_and_grads` in training mode (BatchNorm on batch statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ConfigError
from .activations import LEAKY_RELU_SLOPE
from .layers import (
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
from ._reference_attention import ATTENTION_LAYERS, attention_layer
from ._reference_training import ReferenceOptimizer, reference_loss
from .losses import Loss
from .merging import Add, Concatenate, Multiply
from .model import Model, Node

__all__ = ["ReferenceModel", "ReferenceOptimizer", "reference_loss"]

Array = np.ndarray
Backward = Callable[[Array], Array]


def _activation(name: str, x: Array) -> tuple[Array, Backward]:
    if name == "linear":
        return x, lambda g: g
    if name == "relu":
        return np.maximum(x, 0.0), lambda g: g * (x > 0)
    if name == "tanh":
        y = np.tanh(x)
        return y, lambda g: g * (1.0 - y * y)
    if name == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-x))
        return y, lambda g: g * y * (1.0 - y)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
        return y, lambda g: y * (g - (g * y).sum(axis=-1, keepdims=True))
    if name == "log_softmax":
        shifted = x - x.max(axis=-1, keepdims=True)
        y = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return y, lambda g: g - np.exp(y) * g.sum(axis=-1, keepdims=True)
    if name == "gelu":
        cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return x * cdf, lambda g: g * (cdf + x * pdf)
    if name == "silu":
        s = 1.0 / (1.0 + np.exp(-x))
        return x * s, lambda g: g * s * (1.0 + x * (1.0 - s))
    if name == "leaky_relu":
        slope = np.where(x > 0, 1.0, LEAKY_RELU_SLOPE)
        return x * slope, lambda g: g * slope
    if name == "softplus":
        return np.logaddexp(0.0, x), lambda g: g / (1.0 + np.exp(-x))
    raise ConfigError(f"reference: unknown activation {name!r}")


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _sequence_grad(grad: Array | list[Array], layer: LSTM | GRU, shape: tuple[int, int, int]
                   ) -> tuple[Array, Array]:
    """The gradient of every step's hidden state, from those of a recurrent layer's outputs, and
    that of the final cell state (zero unless an LSTM returns its state)."""
    main, *states = grad if layer.return_state else [grad]
    full = main.copy() if layer.return_sequences else np.zeros(shape)
    if not layer.return_sequences:
        full[:, -1] = main
    if states:
        full[:, -1] += states[0]
    cell = states[1] if len(states) > 1 else np.zeros((shape[0], shape[2]))
    return full, cell


def _recurrent_outputs(layer: LSTM | GRU, h: Array, *cell: Array) -> Array | tuple[Array, ...]:
    main = h[:, 1:] if layer.return_sequences else h[:, -1]
    return (main, h[:, -1], *(c[:, -1] for c in cell)) if layer.return_state else main


def _pad(x: Array, node: Node, kernel: tuple[int, int], strides: tuple[int, int], padding: str,
         value: float) -> tuple[Array, tuple[int, int, int, int]]:
    if padding == "valid":
        return x, (0, 0, 0, 0)
    top, bottom = same_padding(x.shape[1], kernel[0], strides[0])
    left, right = same_padding(x.shape[2], kernel[1], strides[1])
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)
    return padded, (top, bottom, left, right)


def _windows(x: Array, kernel: tuple[int, int], strides: tuple[int, int],
             dilation: tuple[int, int] = (1, 1)) -> Array:
    """(N, OH, OW, C, kH, kW) view of the sliding (dilated) windows."""
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(x, span, axis=(1, 2))
    return view[:, ::strides[0], ::strides[1], :, ::dilation[0], ::dilation[1]]


def _scatter_windows(grad: Array, shape: tuple[int, ...], kernel: tuple[int, int],
                     strides: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Array:
    """Adjoint of :func:`_windows`: add (N, OH, OW, C, kH, kW) window gradients back into ``shape``."""
    out = np.zeros(shape)
    oh, ow = grad.shape[1:3]
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0], j * dilation[1]
            out[:, top:top + strides[0] * oh:strides[0],
                left:left + strides[1] * ow:strides[1]] += grad[..., i, j]
    return out


def _unpad(g: Array, pads: tuple[int, int, int, int]) -> Array:
    top, bottom, left, right = pads
    return g[:, top:g.shape[1] - bottom, left:g.shape[2] - right]


def _merge(node: Node, layer: Add | Multiply | Concatenate, xs: list[Array]
           ) -> tuple[Array, Callable[[Array, dict], list[Array]]]:
    if isinstance(layer, Add):
        return sum(xs[1:], xs[0]), lambda g, grads: [g] * len(xs)
    if isinstance(layer, Multiply):
        def products_without(i: int) -> Array:
            out = np.ones_like(xs[0])
            for j, x in enumerate(xs):
                if j != i:
                    out = out * x
            return out
        return (np.prod(np.stack(xs), axis=0),
                lambda g, grads: [g * products_without(i) for i in range(len(xs))])
    axis = 1 + layer.sample_axis(xs[0].ndim - 1)
    cuts = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return np.concatenate(xs, axis=axis), lambda g, grads: np.split(g, cuts, axis=axis)


class ReferenceModel:
    """Float64 forward and backward passes of a model (Sequential or graph) with given weights."""

    def __init__(self, model: Model, weights: dict[str, Array]) -> None:
        self.model = model
        self.weights = {k: np.asarray(v, dtype=np.float64).copy() for k, v in weights.items()}

    def _layer(self, node: Node, x: Array, training: bool) -> tuple[Array, Callable[[Array, dict], Array]]:
        layer, w = node.layer, self.weights
        if isinstance(layer, (Add, Multiply, Concatenate)):
            return _merge(node, layer, x)
        if isinstance(layer, Dense):
            kernel = w[node.param_key("kernel")]
            z = x @ kernel + (w[node.param_key("bias")] if layer.use_bias else 0.0)
            y, act_back = _activation(layer.activation, z)

            def back(g: Array, grads: dict) -> Array:
                g = act_back(g)
                grads[node.param_key("kernel")] = x.T @ g
                if layer.use_bias:
                    grads[node.param_key("bias")] = g.sum(axis=0)
                return g @ kernel.T
            return y, back
        if isinstance(layer, Conv2D):
            return self._conv2d(node, layer, x)
        if isinstance(layer, MaxPool2D):
            padded, pads = _pad(x, node, layer.pool_size, layer.strides, layer.padding, -np.inf)
            win = _windows(padded, layer.pool_size, layer.strides)
            n, oh, ow, c, ph, pw = win.shape
            flat = win.reshape(n, oh, ow, c, ph * pw)
            arg = flat.argmax(axis=-1)
            y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

            def back(g: Array, grads: dict) -> Array:
                gwin = np.zeros(flat.shape)
                np.put_along_axis(gwin, arg[..., None], g[..., None], axis=-1)
                gwin = gwin.reshape(win.shape)
                return _unpad(_scatter_windows(gwin, padded.shape, layer.pool_size, layer.strides), pads)
            return y, back
        if isinstance(layer, AvgPool2D):
            padded, pads = _pad(x, node, layer.pool_size, layer.strides, layer.padding, 0.0)
            win = _windows(padded, layer.pool_size, layer.strides)
            counts = np.outer(*(window_counts(n, k, s, layer.padding) for n, k, s in
                                zip(x.shape[1:3], layer.pool_size, layer.strides)))[None, :, :, None]
            y = win.sum(axis=(-2, -1)) / counts

            def back(g: Array, grads: dict) -> Array:
                gwin = np.broadcast_to((g / counts)[..., None, None], win.shape)
                return _unpad(_scatter_windows(gwin, padded.shape, layer.pool_size, layer.strides), pads)
            return y, back
        if isinstance(layer, GlobalAvgPool2D):
            area = x.shape[1] * x.shape[2]
            return x.mean(axis=(1, 2)), lambda g, grads: np.broadcast_to(g[:, None, None] / area, x.shape).copy()
        if isinstance(layer, GlobalMaxPool2D):
            flat = x.reshape(len(x), -1, x.shape[-1])
            arg = flat.argmax(axis=1)[:, None]

            def back(g: Array, grads: dict) -> Array:
                gflat = np.zeros(flat.shape)
                np.put_along_axis(gflat, arg, g[:, None], axis=1)
                return gflat.reshape(x.shape)
            return np.take_along_axis(flat, arg, axis=1)[:, 0], back
        if isinstance(layer, Conv1D):
            return self._conv1d(node, layer, x)
        if isinstance(layer, ATTENTION_LAYERS):
            return attention_layer(node, w, x)
        if isinstance(layer, Reshape):
            return x.reshape(len(x), *node.output_shape), lambda g, grads: g.reshape(x.shape)
        if isinstance(layer, BatchNorm):
            return self._batch_norm(node, layer, x, training)
        if isinstance(layer, LSTM):
            return self._lstm(node, layer, x)
        if isinstance(layer, GRU):
            return self._gru(node, layer, x)
        if isinstance(layer, Flatten):
            return x.reshape(len(x), -1), lambda g, grads: g.reshape(x.shape)
        if isinstance(layer, Dropout):
            return x, lambda g, grads: g
        if isinstance(layer, Activation):
            y, act_back = _activation(layer.activation, x)
            return y, lambda g, grads: act_back(g)
        raise ConfigError(f"the reference does not implement layer {type(layer).__name__}")

    def _conv2d(self, node: Node, layer: Conv2D, x: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        """Grouped, dilated convolution: windows ``(N, OH, OW, G, C/G, kH, kW)`` against the
        kernel viewed as ``(kH, kW, C/G, G, O/G)``."""
        kernel = self.weights[node.param_key("kernel")]
        groups, (kh, kw, cg, filters) = layer.groups, kernel.shape
        grouped_kernel = kernel.reshape(kh, kw, cg, groups, filters // groups)
        padded, pads = _pad(x, node, layer.span, layer.strides, layer.padding, 0.0)
        win = _windows(padded, layer.kernel_size, layer.strides, layer.dilation)
        n, oh, ow = win.shape[:3]
        grouped_win = win.reshape(n, oh, ow, groups, cg, kh, kw)
        z = np.einsum("nhwgcij,ijcgo->nhwgo", grouped_win, grouped_kernel).reshape(n, oh, ow, filters)
        if layer.use_bias:
            z = z + self.weights[node.param_key("bias")]
        y, act_back = _activation(layer.activation, z)

        def back(g: Array, grads: dict) -> Array:
            g = act_back(g)
            grouped_g = g.reshape(n, oh, ow, groups, filters // groups)
            grads[node.param_key("kernel")] = np.einsum(
                "nhwgcij,nhwgo->ijcgo", grouped_win, grouped_g).reshape(kernel.shape)
            if layer.use_bias:
                grads[node.param_key("bias")] = g.sum(axis=(0, 1, 2))
            gwin = np.einsum("nhwgo,ijcgo->nhwgcij", grouped_g, grouped_kernel).reshape(win.shape)
            return _unpad(_scatter_windows(gwin, padded.shape, layer.kernel_size, layer.strides,
                                           layer.dilation), pads)
        return y, back

    def _conv1d(self, node: Node, layer: Conv1D, x: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        kernel = self.weights[node.param_key("kernel")]
        before, after = (same_padding(x.shape[1], layer.span, layer.strides)
                         if layer.padding == "same" else (0, 0))
        padded = np.pad(x, ((0, 0), (before, after), (0, 0)))
        taps = (np.arange(node.output_shape[0])[:, None] * layer.strides
                + np.arange(layer.kernel_size)[None, :] * layer.dilation)
        win = padded[:, taps]
        z = np.einsum("notc,tcf->nof", win, kernel)
        if layer.use_bias:
            z = z + self.weights[node.param_key("bias")]
        y, act_back = _activation(layer.activation, z)

        def back(g: Array, grads: dict) -> Array:
            g = act_back(g)
            grads[node.param_key("kernel")] = np.einsum("notc,nof->tcf", win, g)
            if layer.use_bias:
                grads[node.param_key("bias")] = g.sum(axis=(0, 1))
            gpad = np.zeros(padded.shape)
            np.add.at(gpad, (slice(None), taps), np.einsum("nof,tcf->notc", g, kernel))
            return gpad[:, before:before + x.shape[1]]
        return y, back

    def _lstm(self, node: Node, layer: LSTM, x: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        key = node.param_key
        kernel, recurrent = self.weights[key("kernel")], self.weights[key("recurrent_kernel")]
        n, steps, units = len(x), x.shape[1], layer.units
        inputs = x @ kernel + self.weights[key("bias")]
        h, c = np.zeros((n, steps + 1, units)), np.zeros((n, steps + 1, units))
        gates = np.empty((n, steps, 4 * units))
        for t in range(steps):
            a = inputs[:, t] + h[:, t] @ recurrent
            gates[:, t] = np.concatenate([_sigmoid(a[:, :2 * units]), np.tanh(a[:, 2 * units:3 * units]),
                                          _sigmoid(a[:, 3 * units:])], axis=1)
            i, f, g, o = np.split(gates[:, t], 4, axis=1)
            c[:, t + 1] = f * c[:, t] + i * g
            h[:, t + 1] = o * np.tanh(c[:, t + 1])

        def back(grad: Array, grads: dict) -> Array:
            grad_h, dc = _sequence_grad(grad, layer, (n, steps, units))
            dh = np.zeros((n, units))
            da = np.empty_like(gates)
            for t in reversed(range(steps)):
                i, f, g, o = np.split(gates[:, t], 4, axis=1)
                dh = dh + grad_h[:, t]
                tanh_c = np.tanh(c[:, t + 1])
                dc = dc + dh * o * (1.0 - tanh_c ** 2)
                da[:, t] = np.concatenate([dc * g * i * (1.0 - i), dc * c[:, t] * f * (1.0 - f),
                                           dc * i * (1.0 - g ** 2), dh * tanh_c * o * (1.0 - o)], axis=1)
                dh, dc = da[:, t] @ recurrent.T, dc * f
            grads[key("kernel")] = np.einsum("ntc,ntg->cg", x, da)
            grads[key("recurrent_kernel")] = np.einsum("ntu,ntg->ug", h[:, :-1], da)
            grads[key("bias")] = da.sum(axis=(0, 1))
            return da @ kernel.T
        return _recurrent_outputs(layer, h, c), back

    def _gru(self, node: Node, layer: GRU, x: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        key = node.param_key
        kernel, recurrent = self.weights[key("kernel")], self.weights[key("recurrent_kernel")]
        input_bias, recurrent_bias = self.weights[key("bias")]
        n, steps, units = len(x), x.shape[1], layer.units
        inputs = x @ kernel + input_bias
        h = np.zeros((n, steps + 1, units))
        hidden = np.empty((n, steps, 3 * units))
        gates = np.empty((n, steps, 3 * units))
        for t in range(steps):
            hidden[:, t] = h[:, t] @ recurrent + recurrent_bias
            rz = _sigmoid(inputs[:, t, :2 * units] + hidden[:, t, :2 * units])
            r, z = rz[:, :units], rz[:, units:]
            candidate = np.tanh(inputs[:, t, 2 * units:] + r * hidden[:, t, 2 * units:])
            gates[:, t] = np.concatenate([rz, candidate], axis=1)
            h[:, t + 1] = (1.0 - z) * candidate + z * h[:, t]

        def back(grad: Array, grads: dict) -> Array:
            grad_h, _ = _sequence_grad(grad, layer, (n, steps, units))
            dh = np.zeros((n, units))
            da, ds = np.empty_like(gates), np.empty_like(gates)
            for t in reversed(range(steps)):
                r, z, candidate = np.split(gates[:, t], 3, axis=1)
                dh = dh + grad_h[:, t]
                d_candidate = dh * (1.0 - z) * (1.0 - candidate ** 2)
                dr = d_candidate * hidden[:, t, 2 * units:] * r * (1.0 - r)
                dz = dh * (h[:, t] - candidate) * z * (1.0 - z)
                da[:, t] = np.concatenate([dr, dz, d_candidate], axis=1)
                ds[:, t] = np.concatenate([dr, dz, d_candidate * r], axis=1)
                dh = dh * z + ds[:, t] @ recurrent.T
            grads[key("kernel")] = np.einsum("ntc,ntg->cg", x, da)
            grads[key("recurrent_kernel")] = np.einsum("ntu,ntg->ug", h[:, :-1], ds)
            grads[key("bias")] = np.stack([da.sum(axis=(0, 1)), ds.sum(axis=(0, 1))])
            return da @ kernel.T
        return _recurrent_outputs(layer, h), back

    def _batch_norm(self, node: Node, layer: BatchNorm, x: Array,
                    training: bool) -> tuple[Array, Callable[[Array, dict], Array]]:
        w, key = self.weights, node.param_key
        gamma, beta = w[key("gamma")], w[key("beta")]
        axes = tuple(range(x.ndim - 1))
        if training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            for name, batch in (("moving_mean", mean), ("moving_variance", var)):
                self._moving[key(name)] = layer.momentum * w[key(name)] + (1 - layer.momentum) * batch
        else:
            mean, var = w[key("moving_mean")], w[key("moving_variance")]
        inv = 1.0 / np.sqrt(var + layer.epsilon)
        xhat = (x - mean) * inv

        def back(g: Array, grads: dict) -> Array:
            grads[key("gamma")] = (g * xhat).sum(axis=axes)
            grads[key("beta")] = g.sum(axis=axes)
            if not training:
                return g * gamma * inv
            return gamma * inv * (g - g.mean(axis=axes) - xhat * (g * xhat).mean(axis=axes))
        return gamma * xhat + beta, back

    def _run(self, x: Array | Sequence[Array], training: bool
             ) -> tuple[tuple[Array, ...], list[tuple[Node, Backward]]]:
        """The outputs, and each node with its backward function, in node order."""
        values = {name: np.asarray(part, dtype=np.float64)
                  for name, part in zip((s.name for s in self.model.inputs), _as_tuple(x))}
        backs = []
        self._moving: dict[str, Array] = {}
        for node in self.model.nodes:
            args = [values[key] for key in node.inputs]
            out, back = self._layer(node, args if node.multiple_inputs else args[0], training)
            values.update(zip(node.output_keys, out if len(node.output_keys) > 1 else (out,)))
            backs.append((node, back))
        self._values = values
        return tuple(values[key] for key in self.model.outputs), backs

    def forward(self, x: Array | Sequence[Array], training: bool = False) -> Array | tuple[Array, ...]:
        """Outputs for canonical (NHWC) inputs, in float64; inference mode unless ``training``.

        ``x`` is one array, or one per model input; the result is one array, or one per output.
        Never changes the weights, BatchNorm's moving statistics included.
        """
        outputs = self._run(x, training)[0]
        return outputs[0] if len(outputs) == 1 else outputs

    def loss_and_grads(self, x: Array | Sequence[Array], y: Array | Sequence[Array],
                       loss: Loss | Sequence[Loss], *, update_state: bool = False,
                       loss_weights: Sequence[float] | None = None,
                       ) -> tuple[float, dict[str, Array], Array | tuple[Array, ...]]:
        """The batch loss, the parameter gradients and the input gradient(s), in training mode.

        With several outputs, ``loss`` and ``y`` give one entry per output and the total is
        ``sum(w_i * loss_i)``. With ``update_state``, BatchNorm's moving statistics then take
        this batch's update, as a backend's train step does; gradients cover trainable
        parameters only.
        """
        outputs, backs = self._run(x, training=True)
        weights = loss_weights or [1.0] * len(outputs)
        total = 0.0
        pending: dict[str, Array] = {}
        for key, out, spec, target, weight in zip(self.model.outputs, outputs, _as_tuple(loss),
                                                  _as_tuple(y), weights):
            value, g = reference_loss(spec, out, target)
            total += weight * value
            _accumulate(pending, key, weight * g)
        grads: dict[str, Array] = {}
        for node, back in reversed(backs):
            received = [pending.pop(key, None) for key in node.output_keys]
            if all(g is None for g in received):
                continue
            received = [np.zeros_like(self._values[key]) if g is None else g
                        for g, key in zip(received, node.output_keys)]
            g_in = back(received if len(received) > 1 else received[0], grads)
            for key, g in zip(node.inputs, g_in if node.multiple_inputs else (g_in,)):
                if g is not None:
                    _accumulate(pending, key, g)
        if update_state:
            self.weights.update(self._moving)
        input_grads = tuple(pending.get(spec.name, np.zeros_like(self._values[spec.name]))
                            for spec in self.model.inputs)
        return total, grads, input_grads[0] if len(input_grads) == 1 else input_grads


def _as_tuple(value: Array | Sequence[Array]) -> tuple[Array, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _accumulate(pending: dict[str, Array], key: str, g: Array) -> None:
    pending[key] = pending[key] + g if key in pending else g
