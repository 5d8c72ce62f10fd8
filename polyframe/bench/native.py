"""Hand-written native training loops: the baseline each polyframe backend is measured against.

Each loop is what an expert of that framework would write by hand for the same model, without
polyframe's adapters:

- torch: an ``nn.Sequential`` of stock modules on NCHW data (converted once), ``torch.optim``,
  and the usual ``zero_grad / forward / loss / backward / step / loss.item()`` loop;
- tensorflow: ``tf.Variable`` weights and ``tf.nn`` ops in one
  ``@tf.function(reduce_retracing=True)`` train step (no XLA), the optimizer update written in TF
  ops, the loss pulled with ``float()``;
- jax: a params dict and one ``@jax.jit`` step with ``jax.value_and_grad`` and optax.

All start from the same canonical weights (converted to the framework's layout once) and visit
the batches of ``order``, so their losses follow polyframe's to float32 tolerance. Frameworks are
imported only when a loop runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import check_inputs
from ..errors import ConfigError
from ..layers import Activation, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, same_padding
from ..losses import PROBABILITY_FLOOR, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from ..model import Node, Sequential
from ..optimizers import SGD, Adam, Optimizer

__all__ = ["FRAMEWORKS", "NativeRun", "check_supported", "train_native"]

FRAMEWORKS: tuple[str, ...] = ("torch", "tensorflow", "jax")
PREDICT_BATCH = 256
DROPOUT_SEED = 0

_LAYERS: tuple[type[Layer], ...] = (Conv2D, MaxPool2D, Flatten, Dense, Dropout, Activation)
_LOSSES: tuple[type[Loss], ...] = (SparseCategoricalCrossentropy, MeanSquaredError)
_OPTIMIZERS: tuple[type[Optimizer], ...] = (SGD, Adam)

OnStep = Callable[[], None]


@dataclass(frozen=True)
class NativeRun:
    """The result of a baseline run: per-step losses (each before its update) and a predictor.

    ``predict`` takes canonical NHWC float32 inputs and returns the trained model's outputs
    (logits for a logits model) as numpy, in inference mode.
    """

    losses: list[float]
    predict: Callable[[np.ndarray], np.ndarray]


BASELINE_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax")


def _names(types: tuple[type, ...]) -> str:
    return ", ".join(t.__name__ for t in types)


def check_supported(model: Sequential, loss: Loss, optimizer: Optimizer,
                    where: str = "native baseline") -> None:
    """Raise :class:`ConfigError` naming the first layer, loss or optimizer a baseline lacks."""
    if not isinstance(model, Sequential):
        raise ConfigError(f"{where}: needs a polyframe Sequential, got {type(model).__name__}")
    for node in model.nodes:
        if type(node.layer) not in _LAYERS:
            raise ConfigError(f"{where}: layer {node.name!r} ({type(node.layer).__name__}) is not "
                              f"supported; supported layers: {_names(_LAYERS)}")
        activation = getattr(node.layer, "activation", "linear")
        if activation not in BASELINE_ACTIVATIONS:
            raise ConfigError(f"{where}: activation {activation!r} of layer {node.name!r} is not "
                              f"supported; supported: {', '.join(BASELINE_ACTIVATIONS)}")
        if isinstance(node.layer, Conv2D) and (node.layer.dilation != (1, 1) or node.layer.groups != 1):
            raise ConfigError(f"{where}: Conv2D {node.name!r} uses dilation or groups, which the "
                              "baseline does not build; benchmark it without a baseline")
    if type(loss) not in _LOSSES or getattr(loss, "label_smoothing", 0.0):
        raise ConfigError(f"{where}: loss {loss!r} is not supported; supported losses: "
                          f"{_names(_LOSSES)} without label smoothing")
    if type(optimizer) not in _OPTIMIZERS:
        raise ConfigError(f"{where}: optimizer {type(optimizer).__name__} is not supported; "
                          f"supported optimizers: {_names(_OPTIMIZERS)}")
    extras = [name for name in ("clip_norm", "clip_value") if getattr(optimizer, name, None) is not None]
    if not isinstance(optimizer.learning_rate, float):
        extras.append("a learning-rate schedule")
    if getattr(optimizer, "nesterov", False):
        extras.append("nesterov")
    if extras:
        raise ConfigError(f"{where}: the baseline implements plain {type(optimizer).__name__}; "
                          f"drop {', '.join(extras)} to compare against it")


def checked_data(model: Sequential, weights: dict[str, np.ndarray], loss: Loss, x: np.ndarray,
                 y: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Canonical float32 weights, float32 inputs and targets in the loss' dtype."""
    return model.check_weights(weights), check_inputs(x, model.input_shape), \
        loss.check_targets(y, model.output_shape)


def chunks(n: int, size: int = PREDICT_BATCH) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    return (slice(start, start + size) for start in range(0, n, size))


def train_native(framework: str, model: Sequential, weights: dict[str, np.ndarray], loss: Loss,
                 optimizer: Optimizer, x: np.ndarray, y: np.ndarray, order: list[np.ndarray],
                 on_step: OnStep) -> NativeRun:
    """Train one step per batch in ``order`` with ``framework``'s hand-written loop.

    ``on_step()`` is called right after each step's loss is on the host. Raises
    :class:`ConfigError` for an unknown framework or an unsupported layer, loss or optimizer.
    """
    if framework not in _TRAINERS:
        raise ConfigError(f"native baseline: unknown framework {framework!r}; "
                          f"use one of {', '.join(FRAMEWORKS)}")
    check_supported(model, loss, optimizer)
    weights, x, y = checked_data(model, weights, loss, x, y)
    return _TRAINERS[framework](model, weights, loss, optimizer, x, y, order, on_step)


# -- torch -----------------------------------------------------------------------------------
def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def _to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def _torch_pads(node: Node, window: tuple[int, int], strides: tuple[int, int],
                padding: str) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` of the canonical padding, in ``F.pad`` order."""
    if padding == "valid":
        return (0, 0, 0, 0)
    top, bottom = same_padding(node.input_shape[0], window[0], strides[0])
    left, right = same_padding(node.input_shape[1], window[1], strides[1])
    return (left, right, top, bottom)


def _nchw_rows(shape: tuple[int, ...]) -> np.ndarray:
    """Canonical (channel-last) feature index of each position of an NCHW flatten of ``shape``."""
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 0, 1).ravel()


def _dense_follows(nodes: tuple[Node, ...]) -> bool:
    """Whether a Dense comes next, past elementwise layers only."""
    for node in nodes:
        if isinstance(node.layer, Dense):
            return True
        if not isinstance(node.layer, (Dropout, Activation, Flatten)):
            return False
    return False


@functools.cache
def _torch_channels_last() -> type:
    from torch import nn

    class ChannelsLast(nn.Module):
        """NCHW -> NHWC."""

        def forward(self, x: Any) -> Any:
            return x.permute(0, 2, 3, 1)

    return ChannelsLast


class _TorchBuilder:
    """Builds the ``nn.Sequential`` and loads the canonical weights into it."""

    def __init__(self, model: Sequential, weights: dict[str, np.ndarray]) -> None:
        from torch import nn
        self.nn, self.weights = nn, weights
        self.modules: list[Any] = []
        self.rows: np.ndarray | None = None
        for i, node in enumerate(model.nodes):
            self.add(node, model.nodes[i + 1:])
        if _is_image(model.output_shape):
            self.modules.append(_torch_channels_last()())

    def activation(self, name: str, image: bool) -> None:
        nn = self.nn
        made = {"linear": None, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                "softmax": lambda: nn.Softmax(dim=1 if image else -1)}[name]
        if made is not None:
            self.modules.append(made())

    def add(self, node: Node, following: tuple[Node, ...]) -> None:
        layer, nn = node.layer, self.nn
        if isinstance(layer, Conv2D):
            self.conv(node, layer)
        elif isinstance(layer, MaxPool2D):
            left, right, top, bottom = pads = _torch_pads(node, layer.pool_size, layer.strides, layer.padding)
            if (left, top) != (right, bottom):
                self.modules.append(nn.ConstantPad2d(pads, float("-inf")))
                left = top = 0
            self.modules.append(nn.MaxPool2d(layer.pool_size, layer.strides, padding=(top, left)))
        elif isinstance(layer, Flatten):
            if _is_image(node.input_shape) and _dense_follows(following):
                self.rows = _nchw_rows(node.input_shape)
            elif _is_image(node.input_shape):
                self.modules.append(_torch_channels_last()())
            self.modules.append(nn.Flatten())
        elif isinstance(layer, Dense):
            self.dense(node, layer)
        elif isinstance(layer, Dropout):
            self.modules.append(nn.Dropout(layer.rate))
        else:
            self.activation(layer.activation, _is_image(node.input_shape))

    def conv(self, node: Node, layer: Conv2D) -> None:
        left, right, top, bottom = pads = _torch_pads(node, layer.kernel_size, layer.strides, layer.padding)
        if (left, top) != (right, bottom):
            self.modules.append(self.nn.ZeroPad2d(pads))
            left = top = 0
        conv = self.nn.Conv2d(node.input_shape[-1], layer.filters, layer.kernel_size, stride=layer.strides,
                              padding=(top, left), bias=layer.use_bias)
        self.load(conv, node, self.weights[node.param_key("kernel")].transpose(3, 2, 0, 1))
        self.modules.append(conv)
        self.activation(layer.activation, True)

    def dense(self, node: Node, layer: Dense) -> None:
        kernel = self.weights[node.param_key("kernel")]
        if self.rows is not None:
            kernel, self.rows = kernel[self.rows], None
        linear = self.nn.Linear(node.input_shape[0], layer.units, bias=layer.use_bias)
        self.load(linear, node, kernel.T)
        self.modules.append(linear)
        self.activation(layer.activation, False)

    def load(self, module: Any, node: Node, kernel: np.ndarray) -> None:
        import torch
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(self.weights[node.param_key("bias")]))


def _torch_loss(loss: Loss) -> Callable[[Any, Any], Any]:
    import torch
    import torch.nn.functional as F
    if isinstance(loss, MeanSquaredError):
        return F.mse_loss
    if loss.from_logits:
        return F.cross_entropy
    return lambda p, y: F.nll_loss(torch.log(p.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)), y)


def _torch_optimizer(spec: Optimizer, params: Any) -> Any:
    import torch
    if isinstance(spec, Adam):
        return torch.optim.Adam(params, lr=spec.learning_rate, betas=(spec.beta_1, spec.beta_2),
                                eps=spec.epsilon)
    return torch.optim.SGD(params, lr=spec.learning_rate, momentum=spec.momentum)


def _train_torch(model: Sequential, weights: dict[str, np.ndarray], loss: Loss, optimizer: Optimizer,
                 x: np.ndarray, y: np.ndarray, order: list[np.ndarray], on_step: OnStep) -> NativeRun:
    import torch
    torch.manual_seed(DROPOUT_SEED)
    net = torch.nn.Sequential(*_TorchBuilder(model, weights).modules)
    opt = _torch_optimizer(optimizer, net.parameters())
    loss_fn = _torch_loss(loss)
    xs, ys = torch.from_numpy(_to_nchw(x)), torch.from_numpy(y)
    losses = []
    net.train()
    for idx in order:
        index = torch.from_numpy(np.asarray(idx))
        opt.zero_grad(set_to_none=True)
        value = loss_fn(net(xs[index]), ys[index])
        value.backward()
        opt.step()
        losses.append(value.item())
        on_step()

    def predict(inputs: np.ndarray) -> np.ndarray:
        inputs = _to_nchw(check_inputs(inputs, model.input_shape))
        net.eval()
        with torch.inference_mode():
            return np.concatenate([net(torch.from_numpy(inputs[part])).numpy()
                                   for part in chunks(len(inputs))])

    return NativeRun(losses, predict)


# -- tensorflow ------------------------------------------------------------------------------
def _tf_forward(tf: Any, model: Sequential, variables: dict[str, Any], h: Any, training: bool) -> Any:
    act = {"linear": lambda t: t, "relu": tf.nn.relu, "tanh": tf.tanh, "sigmoid": tf.sigmoid,
           "softmax": tf.nn.softmax}
    for node in model.nodes:
        layer = node.layer
        if isinstance(layer, Conv2D):
            h = tf.nn.conv2d(h, variables[node.param_key("kernel")], layer.strides, layer.padding.upper())
            if layer.use_bias:
                h = tf.nn.bias_add(h, variables[node.param_key("bias")])
            h = act[layer.activation](h)
        elif isinstance(layer, MaxPool2D):
            h = tf.nn.max_pool2d(h, layer.pool_size, layer.strides, layer.padding.upper())
        elif isinstance(layer, Flatten):
            h = tf.reshape(h, (-1, node.output_shape[0]))
        elif isinstance(layer, Dense):
            h = tf.matmul(h, variables[node.param_key("kernel")])
            if layer.use_bias:
                h = h + variables[node.param_key("bias")]
            h = act[layer.activation](h)
        elif isinstance(layer, Dropout):
            if training and layer.rate > 0:
                h = tf.nn.dropout(h, layer.rate)
        else:
            h = act[layer.activation](h)
    return h


def _tf_loss(tf: Any, loss: Loss) -> Callable[[Any, Any], Any]:
    if isinstance(loss, MeanSquaredError):
        return lambda out, y: tf.reduce_mean(tf.square(out - y))
    if loss.from_logits:
        return lambda out, y: tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))

    def from_probabilities(out: Any, y: Any) -> Any:
        picked = tf.clip_by_value(tf.gather(out, y, batch_dims=1), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        return -tf.reduce_mean(tf.math.log(picked))

    return from_probabilities


def _tf_update(tf: Any, spec: Optimizer, params: list[Any]) -> Callable[[list[Any]], None]:
    """The optimizer's canonical update, in TF ops, over slot variables it creates."""
    slots = [tf.Variable(tf.zeros_like(p)) for p in params]
    if isinstance(spec, SGD):
        lr, momentum = spec.learning_rate, spec.momentum

        def sgd(grads: list[Any]) -> None:
            for p, g, v in zip(params, grads, slots):
                if momentum:
                    g = v.assign(momentum * v + g)
                p.assign_sub(lr * g)

        return sgd
    squares = [tf.Variable(tf.zeros_like(p)) for p in params]
    t = tf.Variable(0.0, dtype=tf.float64)
    b1, b2 = spec.beta_1, spec.beta_2

    def adam(grads: list[Any]) -> None:
        t.assign_add(1.0)
        c1 = tf.cast(1.0 - b1 ** t, tf.float32)
        c2 = tf.cast(1.0 - b2 ** t, tf.float32)
        for p, g, m, v in zip(params, grads, slots, squares):
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * tf.square(g))
            p.assign_sub(spec.learning_rate * (m / c1) / (tf.sqrt(v / c2) + spec.epsilon))

    return adam


def _train_tensorflow(model: Sequential, weights: dict[str, np.ndarray], loss: Loss,
                      optimizer: Optimizer, x: np.ndarray, y: np.ndarray, order: list[np.ndarray],
                      on_step: OnStep) -> NativeRun:
    import tensorflow as tf
    variables = {key: tf.Variable(value) for key, value in weights.items()}
    params = list(variables.values())
    update = _tf_update(tf, optimizer, params)
    loss_fn = _tf_loss(tf, loss)

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_fn(_tf_forward(tf, model, variables, xb, True), yb)
        update(tape.gradient(value, params))
        return value

    @tf.function(reduce_retracing=True)
    def infer(xb: Any) -> Any:
        return _tf_forward(tf, model, variables, xb, False)

    tf.random.set_seed(DROPOUT_SEED)
    losses = []
    for idx in order:
        losses.append(float(step(tf.convert_to_tensor(x[idx]), tf.convert_to_tensor(y[idx]))))
        on_step()

    def predict(inputs: np.ndarray) -> np.ndarray:
        inputs = check_inputs(inputs, model.input_shape)
        return np.concatenate([infer(tf.convert_to_tensor(inputs[part])).numpy()
                               for part in chunks(len(inputs))])

    return NativeRun(losses, predict)


# -- jax -------------------------------------------------------------------------------------
def _jax_forward(model: Sequential, params: dict[str, Any], h: Any, key: Any) -> Any:
    """The model on NHWC ``h``; dropout is active when ``key`` is given."""
    import jax
    import jax.numpy as jnp
    act = {"linear": lambda t: t, "relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
           "softmax": jax.nn.softmax}
    for i, node in enumerate(model.nodes):
        layer = node.layer
        if isinstance(layer, Conv2D):
            h = jax.lax.conv_general_dilated(h, params[node.param_key("kernel")], layer.strides,
                                             layer.padding.upper(),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            if layer.use_bias:
                h = h + params[node.param_key("bias")]
            h = act[layer.activation](h)
        elif isinstance(layer, MaxPool2D):
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, *layer.pool_size, 1),
                                      (1, *layer.strides, 1), layer.padding.upper())
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
        elif isinstance(layer, Dense):
            h = h @ params[node.param_key("kernel")]
            if layer.use_bias:
                h = h + params[node.param_key("bias")]
            h = act[layer.activation](h)
        elif isinstance(layer, Dropout):
            if key is not None and layer.rate > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - layer.rate, h.shape)
                h = jnp.where(keep, h / (1.0 - layer.rate), 0.0)
        else:
            h = act[layer.activation](h)
    return h


def _jax_loss(loss: Loss) -> Callable[[Any, Any], Any]:
    import jax.numpy as jnp
    import optax
    if isinstance(loss, MeanSquaredError):
        return lambda out, y: jnp.mean(jnp.square(out - y))
    if loss.from_logits:
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

    def from_probabilities(out: Any, y: Any) -> Any:
        picked = jnp.take_along_axis(out, y[:, None], axis=1)[:, 0]
        return -jnp.mean(jnp.log(jnp.clip(picked, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)))

    return from_probabilities


def _optax(spec: Optimizer) -> Any:
    import optax
    if isinstance(spec, Adam):
        return optax.adam(spec.learning_rate, b1=spec.beta_1, b2=spec.beta_2, eps=spec.epsilon, eps_root=0.0)
    return optax.sgd(spec.learning_rate, momentum=spec.momentum or None)


def _train_jax(model: Sequential, weights: dict[str, np.ndarray], loss: Loss, optimizer: Optimizer,
               x: np.ndarray, y: np.ndarray, order: list[np.ndarray], on_step: OnStep) -> NativeRun:
    import jax
    import optax
    tx = _optax(optimizer)
    loss_fn = _jax_loss(loss)
    if y.dtype == np.int64:
        y = y.astype(np.int32)

    def objective(params: dict[str, Any], xb: Any, yb: Any, key: Any) -> Any:
        return loss_fn(_jax_forward(model, params, xb, key), yb)

    @jax.jit
    def step(params: dict[str, Any], state: Any, key: Any, xb: Any, yb: Any) -> tuple[Any, ...]:
        key, sub = jax.random.split(key)
        value, grads = jax.value_and_grad(objective)(params, xb, yb, sub)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, key, value

    infer = jax.jit(lambda params, xb: _jax_forward(model, params, xb, None))
    params = {key: jax.numpy.asarray(value) for key, value in weights.items()}
    state, key = tx.init(params), jax.random.key(DROPOUT_SEED)
    losses = []
    for idx in order:
        params, state, key, value = step(params, state, key, x[idx], y[idx])
        losses.append(float(value))
        on_step()

    def predict(inputs: np.ndarray) -> np.ndarray:
        inputs = check_inputs(inputs, model.input_shape)
        return np.concatenate([np.asarray(infer(params, inputs[part])) for part in chunks(len(inputs))])

    return NativeRun(losses, predict)


_TRAINERS: dict[str, Callable[..., NativeRun]] = {
    "torch": _train_torch, "tensorflow": _train_tensorflow, "jax": _train_jax,
}
