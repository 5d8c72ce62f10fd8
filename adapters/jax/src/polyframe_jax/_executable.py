"""A polyframe model compiled to pure JAX functions over a flat params pytree.

Canonical layouts are JAX's own (NHWC data, ``(kH, kW, in, out)`` conv kernels, ``(in, out)``
dense kernels), so weights map one-to-one onto ``{"<layer>.<param>": jax.Array}`` and inputs need
no conversion. LSTM and GRU are ``lax.scan`` recurrences in polyframe's gate orders. Params and
optimizer state stay on the device between steps; a step transfers the
batch in and only the loss and outputs back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial, reduce
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

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
    Embedding,
    Flatten,
    GRU,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    LSTM,
    Layer,
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

from ._attention import ATTENTION_BUILDERS
from ._precision import compute_dtype, to_compute, to_float32
from ._training import _loss_fn, _transformation

__all__ = ["JaxExecutable"]

Params = dict[str, jax.Array]
Apply = Callable[[Params, jax.Array, "jax.Array | None", Params], jax.Array]
"""One layer: ``(params, x, dropout_key, new_state) -> y``. ``dropout_key`` is ``None`` in
inference mode; in training mode a layer with non-trainable state (BatchNorm) writes its updated
state into ``new_state``. ``params`` holds trainable and non-trainable arrays alike."""

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda x: x,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: jax.nn.log_softmax(x, axis=-1),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE),
    "softplus": jax.nn.softplus,
}


def _spatial_padding(
    input_shape: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: str
) -> list[tuple[int, int]]:
    """Explicit ``(before, after)`` pads of the H and W axes; "same" puts the odd pixel after."""
    if padding == "valid":
        return [(0, 0), (0, 0)]
    return [same_padding(size, k, s) for size, k, s in zip(input_shape[:2], window, strides)]


def _dense(node: Node, index: int) -> Apply:
    layer: Dense = node.layer  # type: ignore[assignment]
    kernel, bias = node.param_key("kernel"), node.param_key("bias") if layer.use_bias else None
    activation = _ACTIVATIONS[layer.activation]  # type: ignore[index]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        y = x @ params[kernel]
        return activation(y + params[bias] if bias else y)

    return apply


def _conv2d(node: Node, index: int) -> Apply:
    layer: Conv2D = node.layer  # type: ignore[assignment]
    kernel, bias = node.param_key("kernel"), node.param_key("bias") if layer.use_bias else None
    strides, dilation = tuple(layer.strides), tuple(layer.dilation)  # type: ignore[arg-type]
    pads = _spatial_padding(node.input_shape, layer.span, strides, layer.padding)
    activation = _ACTIVATIONS[layer.activation]  # type: ignore[index]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        y = lax.conv_general_dilated(
            x, params[kernel], strides, pads, rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=layer.groups,
        )
        return activation(y + params[bias] if bias else y)

    return apply


def _max_pool2d(node: Node, index: int) -> Apply:
    layer: MaxPool2D = node.layer  # type: ignore[assignment]
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides  # type: ignore[misc]
    pads = _spatial_padding(node.input_shape, (ph, pw), (sh, sw), layer.padding)

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return lax.reduce_window(
            x, np.array(-np.inf, x.dtype), lax.max,
            (1, ph, pw, 1), (1, sh, sw, 1), [(0, 0), *pads, (0, 0)],
        )

    return apply


def _avg_pool2d(node: Node, index: int) -> Apply:
    """Window sums over the zero-padded input divided by each window's count of real elements."""
    layer: AvgPool2D = node.layer  # type: ignore[assignment]
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides  # type: ignore[misc]
    pads = _spatial_padding(node.input_shape, (ph, pw), (sh, sw), layer.padding)
    rows, cols = (window_counts(n, k, s, layer.padding) for n, k, s in
                  zip(node.input_shape[:2], (ph, pw), (sh, sw)))
    counts = np.outer(rows, cols).astype(np.float32)[None, :, :, None]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        sums = lax.reduce_window(
            x, np.array(0, x.dtype), lax.add, (1, ph, pw, 1), (1, sh, sw, 1), [(0, 0), *pads, (0, 0)],
        )
        return sums / counts.astype(x.dtype)

    return apply


def _global_avg_pool2d(node: Node, index: int) -> Apply:
    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return jnp.mean(x, axis=(1, 2))

    return apply


def _global_max_pool2d(node: Node, index: int) -> Apply:
    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return jnp.max(x, axis=(1, 2))

    return apply


def _conv1d(node: Node, index: int) -> Apply:
    layer: Conv1D = node.layer  # type: ignore[assignment]
    kernel, bias = node.param_key("kernel"), node.param_key("bias") if layer.use_bias else None
    pads = [same_padding(node.input_shape[0], layer.span, layer.strides)
            if layer.padding == "same" else (0, 0)]
    activation = _ACTIVATIONS[layer.activation]  # type: ignore[index]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        y = lax.conv_general_dilated(
            x, params[kernel], (layer.strides,), pads, rhs_dilation=(layer.dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
        return activation(y + params[bias] if bias else y)

    return apply


def _reshape(node: Node, index: int) -> Apply:
    shape = node.output_shape

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return x.reshape(x.shape[0], *shape)

    return apply


def _batch_norm(node: Node, index: int) -> Apply:
    """Batch statistics (biased variance) in training, moving statistics in inference."""
    layer: BatchNorm = node.layer  # type: ignore[assignment]
    gamma, beta = node.param_key("gamma"), node.param_key("beta")
    moving_mean, moving_variance = node.param_key("moving_mean"), node.param_key("moving_variance")
    axes = tuple(range(len(node.input_shape)))
    m, eps = layer.momentum, layer.epsilon

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        if key is None:
            mean, variance = params[moving_mean], params[moving_variance]
        else:
            mean = jnp.mean(x, axis=axes)
            variance = jnp.mean(jnp.square(x - mean), axis=axes)
            new_state[moving_mean] = m * params[moving_mean] + (1.0 - m) * lax.stop_gradient(mean)
            new_state[moving_variance] = (m * params[moving_variance]
                                          + (1.0 - m) * lax.stop_gradient(variance))
        return (x - mean) * lax.rsqrt(variance + eps) * params[gamma] + params[beta]

    return apply


def _scan_recurrence(step: Callable[[Any, jax.Array], tuple[Any, jax.Array]], initial: Any,
                     inputs: jax.Array, layer: LSTM | GRU) -> jax.Array | tuple[jax.Array, ...]:
    """Run ``step`` over the time axis of ``inputs`` ``(batch, time, width)``; ``step`` returns
    the new carry and ``h``. All the ``h`` as ``(batch, time, units)``, or the last one; with
    ``return_state``, then the final carry (``h``, or ``h`` and ``c``)."""
    carry, states = lax.scan(step, initial, jnp.swapaxes(inputs, 0, 1))
    main = jnp.swapaxes(states, 0, 1) if layer.return_sequences else states[-1]
    if not layer.return_state:
        return main
    return (main, *(carry if isinstance(carry, tuple) else (carry,)))


def _lstm(node: Node, index: int) -> Apply:
    """``a = x_t W + h U + b``; i, f, g, o slices; ``c = f c + i g``, ``h = o tanh(c)``."""
    layer: LSTM = node.layer  # type: ignore[assignment]
    kernel, recurrent, bias = (node.param_key(k) for k in ("kernel", "recurrent_kernel", "bias"))

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        u = params[recurrent]

        def step(carry: tuple[jax.Array, jax.Array],
                 a: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
            h, c = carry
            i, f, g, o = jnp.split(a + h @ u, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], layer.units), x.dtype)
        return _scan_recurrence(step, (zeros, zeros), x @ params[kernel] + params[bias], layer)

    return apply


def _gru(node: Node, index: int) -> Apply:
    """``a = x_t W + b_x``, ``s = h U + b_h``; r, z, n slices; ``n = tanh(a_n + r s_n)``,
    ``h = (1 - z) n + z h``."""
    layer: GRU = node.layer  # type: ignore[assignment]
    kernel, recurrent, bias = (node.param_key(k) for k in ("kernel", "recurrent_kernel", "bias"))

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        u, (input_bias, recurrent_bias) = params[recurrent], params[bias]

        def step(h: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
            a_r, a_z, a_n = jnp.split(a, 3, axis=-1)
            s_r, s_z, s_n = jnp.split(h @ u + recurrent_bias, 3, axis=-1)
            r, z = jax.nn.sigmoid(a_r + s_r), jax.nn.sigmoid(a_z + s_z)
            h = (1.0 - z) * jnp.tanh(a_n + r * s_n) + z * h
            return h, h

        zeros = jnp.zeros((x.shape[0], layer.units), x.dtype)
        return _scan_recurrence(step, zeros, x @ params[kernel] + input_bias, layer)

    return apply


def _flatten(node: Node, index: int) -> Apply:
    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return x.reshape(x.shape[0], -1)

    return apply


def _dropout(node: Node, index: int) -> Apply:
    rate = float(node.layer.rate)  # type: ignore[attr-defined]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        if key is None or rate == 0.0:
            return x
        keep = jax.random.bernoulli(jax.random.fold_in(key, index), 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), 0.0)

    return apply


def _activation(node: Node, index: int) -> Apply:
    activation = _ACTIVATIONS[node.layer.activation]  # type: ignore[attr-defined]

    def apply(params: Params, x: jax.Array, key: jax.Array | None, new_state: Params) -> jax.Array:
        return activation(x)

    return apply


def _merge(node: Node, index: int) -> Apply:
    layer = node.layer
    if isinstance(layer, Concatenate):
        axis = 1 + layer.sample_axis(len(node.input_shape[0]))
        combine: Callable[[list[jax.Array]], jax.Array] = lambda xs: jnp.concatenate(xs, axis=axis)
    else:
        operator = jnp.add if isinstance(layer, Add) else jnp.multiply
        combine = partial(reduce, operator)

    def apply(params: Params, x: list[jax.Array], key: jax.Array | None, new_state: Params) -> jax.Array:
        return combine(x)

    return apply


_LAYERS: dict[type[Layer], Callable[[Node, int], Apply]] = {
    Add: _merge,
    Multiply: _merge,
    Concatenate: _merge,
    Dense: _dense,
    Conv2D: _conv2d,
    MaxPool2D: _max_pool2d,
    AvgPool2D: _avg_pool2d,
    GlobalAvgPool2D: _global_avg_pool2d,
    GlobalMaxPool2D: _global_max_pool2d,
    Conv1D: _conv1d,
    Reshape: _reshape,
    BatchNorm: _batch_norm,
    LSTM: _lstm,
    GRU: _gru,
    Flatten: _flatten,
    Dropout: _dropout,
    Activation: _activation,
    **ATTENTION_BUILDERS,
}


def _compile_layer(node: Node, index: int) -> Apply:
    try:
        build = _LAYERS[type(node.layer)]
    except KeyError:
        raise ConfigError(
            f"the jax backend cannot compile layer {node.name!r} of type "
            f"{type(node.layer).__name__}; supported: {', '.join(t.__name__ for t in _LAYERS)}"
        ) from None
    return build(node, index)


def _to_device(weights: dict[str, np.ndarray], keys: Sequence[str]) -> Params:
    """Private float32 device copies (the caller's arrays are never aliased or donated)."""
    return {k: jax.device_put(np.array(weights[k], dtype=np.float32, copy=True)) for k in keys}


def _base_key(seed: int) -> jax.Array:
    """The dropout key of ``seed``, using all its bits (JAX alone keeps only the low 32)."""
    key = jax.random.key(seed & 0xFFFFFFFF)
    return jax.random.fold_in(key, (seed >> 32) & 0xFFFFFFFF) if seed >> 32 else key


class JaxExecutable(Executable):
    """A polyframe model (a Sequential stack or a functional graph) as jitted train / eval /
    predict functions.

    ``train_step`` is one ``jax.jit`` function doing forward, gradient and optax update, with
    params, state and optimizer state donated so their buffers are updated in place. Trainable
    params and non-trainable state (BatchNorm's moving statistics) are separate pytrees: the
    gradient and the optimizer see only the former. Dropout masks come
    from ``fold_in(key(options.seed), step)``: a fresh key each step from a device-side step
    counter (cheaper to thread through ``jit`` than a key array), then one per dropout layer.

    ``options.deterministic`` needs nothing on CPU, where XLA's kernels are deterministic. On GPU,
    run-to-run determinism needs ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` set before JAX
    initialises its backends; this executable does not change process-wide flags.
    """

    state_functions = "polyframe_jax._state"

    def __init__(
        self,
        model: Model,
        weights: dict[str, np.ndarray],
        loss: Loss | tuple[Loss, ...],
        optimizer: Optimizer,
        options: BuildOptions,
    ) -> None:
        specs = model.param_specs()
        self._keys = [key for key, _ in specs]
        self._trainable = [key for key, spec in specs if spec.trainable]
        self._state_keys = [key for key, spec in specs if not spec.trainable]
        self._program = GraphProgram(model, [_compile_layer(node, i)
                                             for i, node in enumerate(model.nodes)])
        self._losses, self._target_dtypes = zip(*(_loss_fn(spec) for spec in as_tuple(loss)))
        self._loss_weights = options.loss_weights
        self._tx = _transformation(optimizer)
        self._compute_dtype = compute_dtype(options.precision)
        self._id_inputs = tuple(any(isinstance(node.layer, Embedding) for node in model.consumers(spec.name))
                                for spec in model.inputs)
        """Inputs read by an Embedding stay float32 under bf16: bfloat16 holds integers exactly
        only up to 256."""
        self._params = _to_device(weights, self._trainable)
        self._state = _to_device(weights, self._state_keys)
        self._opt_state = self._tx.init(self._params)
        self._dropout_key = _base_key(options.seed)
        self._step = jnp.zeros((), jnp.uint32)
        self._train = jax.jit(self._train_fn, donate_argnums=(0, 1, 2, 3))
        self._eval = jax.jit(self._eval_fn)
        self._predict = jax.jit(self._predict_fn)

    def _forward(self, params: Params, x: tuple[jax.Array, ...], key: jax.Array | None = None,
                 new_state: Params | None = None) -> tuple[jax.Array, ...]:
        new_state = {} if new_state is None else new_state
        params = to_compute(params, self._compute_dtype)
        x = tuple(part if is_ids else to_compute(part, self._compute_dtype)
                  for part, is_ids in zip(x, self._id_inputs))
        outputs = self._program.run(x, lambda apply, value: apply(params, value, key, new_state))
        if self._compute_dtype is None:
            return outputs
        new_state.update(to_float32(new_state))
        return to_float32(tuple(outputs))

    def _loss(self, outputs: tuple[jax.Array, ...], y: tuple[jax.Array, ...]) -> jax.Array:
        return weighted_sum([fn(o, t) for fn, o, t in zip(self._losses, outputs, y)],
                            self._loss_weights)

    def _train_fn(
        self, params: Params, state: Params, opt_state: optax.OptState, step: jax.Array,
        x: tuple[jax.Array, ...], y: tuple[jax.Array, ...],
    ) -> tuple[Params, Params, optax.OptState, jax.Array, jax.Array, jax.Array]:
        key = jax.random.fold_in(self._dropout_key, step)

        def objective(p: Params) -> tuple[jax.Array, tuple[jax.Array, Params]]:
            new_state: Params = {}
            outputs = self._forward({**p, **state}, x, key, new_state)
            return self._loss(outputs, y), (outputs, new_state)

        (loss, (outputs, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = self._tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), {**state, **new_state}, opt_state, step + 1,
                loss, outputs)

    def _eval_fn(self, params: Params, state: Params, x: tuple[jax.Array, ...],
                 y: tuple[jax.Array, ...]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        outputs = self._forward({**params, **state}, x)
        return self._loss(outputs, y), outputs

    def _predict_fn(self, params: Params, state: Params, x: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        return self._forward({**params, **state}, x)

    def _targets(self, y: np.ndarray | tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
        return tuple(jnp.asarray(np.asarray(t, dtype=dtype))
                     for t, dtype in zip(as_tuple(y), self._target_dtypes))

    @staticmethod
    def _inputs(x: np.ndarray | tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
        return tuple(jnp.asarray(part) for part in as_tuple(x))

    @staticmethod
    def _host(outputs: tuple[jax.Array, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
        return single_or_tuple([np.array(o) for o in outputs])

    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        """NHWC float32 is already JAX's layout: a contiguous float32 array, nothing more."""
        return np.ascontiguousarray(x, dtype=np.float32)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        self._params, self._state, self._opt_state, self._step, loss, outputs = self._train(
            self._params, self._state, self._opt_state, self._step, self._inputs(x),
            self._targets(y),
        )
        return StepResult(float(loss), self._host(outputs))

    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        loss, outputs = self._eval(self._params, self._state, self._inputs(x), self._targets(y))
        return StepResult(float(loss), self._host(outputs))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._host(self._predict(self._params, self._state, self._inputs(x)))

    def get_weights(self) -> dict[str, np.ndarray]:
        arrays = {**self._params, **self._state}
        return {k: np.array(arrays[k], dtype=np.float32, copy=True) for k in self._keys}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace the weights and state; the optimizer state (momenta, step count) is kept."""
        self._params = _to_device(weights, self._trainable)
        self._state = _to_device(weights, self._state_keys)
