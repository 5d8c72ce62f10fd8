"""The TensorFlow side: TF variables and ``tf.function`` steps built once from the canonical model.

polyframe's canonical layouts are TensorFlow's native ones (NHWC data, conv kernels
``(kH, kW, in, out)``, dense kernels ``(in, out)``, channel-last flatten), so weights become
``tf.Variable`` objects unchanged and inputs are only made contiguous float32. The layers, the
losses and the optimizers are written with low-level ops (not Keras) so that each follows
polyframe's formula exactly: "same" padding is explicit with the odd pixel at the bottom/right,
and Adam adds epsilon to the square root of the bias-corrected second moment. LSTM and GRU are
recurrences written with ``tf.scan`` in polyframe's gate orders (Keras' GRU orders its gates
z, r, h).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

import numpy as np

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
from ._precision import cast_like, compute_dtype, computing_in
from ._startup import quiet_startup
from ._training import JIT_COMPILE_UPDATE, _loss_function, _optimizer

with quiet_startup():
    import tensorflow as tf

__all__ = ["TensorFlowExecutable", "JIT_COMPILE", "JIT_COMPILE_UPDATE"]

JIT_COMPILE = False
"""Whether a whole step is XLA-compiled. Off: on CPU (small CNN, batch 64) XLA steps were about
2x slower than TF's own oneDNN convolutions and matmuls."""

Tensor = tf.Tensor
LayerFn = Callable[[Tensor, bool], Tensor]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "tanh": tf.math.tanh,
    "sigmoid": tf.math.sigmoid,
    "softmax": lambda x: tf.nn.softmax(tf.cast(x, tf.float32), axis=-1),
    "log_softmax": lambda x: tf.nn.log_softmax(tf.cast(x, tf.float32), axis=-1),
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "silu": tf.nn.silu,
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, alpha=LEAKY_RELU_SLOPE),
    "softplus": tf.math.softplus,
}


# -- layers ------------------------------------------------------------------------------------
def _spatial_pads(node: Node, window: tuple[int, int], strides: tuple[int, int]) -> list[list[int]]:
    """NHWC ``paddings`` for the canonical "same" rule (the odd pixel at the bottom/right)."""
    top, bottom = same_padding(node.input_shape[0], window[0], strides[0])
    left, right = same_padding(node.input_shape[1], window[1], strides[1])
    return [[0, 0], [top, bottom], [left, right], [0, 0]]


def _with_bias(node: Node, params: dict[str, tf.Variable]) -> Callable[[Tensor], Tensor]:
    bias = params.get(node.param_key("bias"))
    return (lambda x: x) if bias is None else (lambda x: tf.nn.bias_add(x, cast_like(bias, x)))


def _dilate(kernel: Tensor, dilation: tuple[int, int]) -> Tensor:
    """The kernel with ``dilation - 1`` zero rows/columns between its taps: shape
    ``((kH - 1) * dH + 1, (kW - 1) * dW + 1, I, O)``, so a plain convolution with it is the
    dilated one (TF's CPU kernels cannot take the filter gradient of a dilated convolution)."""
    for axis, rate in enumerate(dilation):
        if rate == 1:
            continue
        taps = kernel.shape[axis]
        spaced = tf.stack([kernel, *[tf.zeros_like(kernel)] * (rate - 1)], axis=axis + 1)
        shape = [*kernel.shape[:axis], taps * rate, *kernel.shape[axis + 1:]]
        kernel = tf.reshape(spaced, shape)[(slice(None),) * axis + (slice(0, (taps - 1) * rate + 1),)]
    return kernel


def _conv2d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    """``tf.nn.conv2d`` with explicit pads. Dilation goes into the kernel (see :func:`_dilate`);
    groups are separate convolutions over channel slices, concatenated (TF's own grouped
    convolution runs forward on CPU but fails in the filter gradient)."""
    layer: Conv2D = node.layer  # type: ignore[assignment]
    kernel = params[node.param_key("kernel")]
    strides = [1, *layer.strides, 1]  # type: ignore[misc]
    padding = "VALID" if layer.padding == "valid" else _spatial_pads(
        node, layer.span, layer.strides)  # type: ignore[arg-type]
    bias, activation = _with_bias(node, params), _ACTIVATIONS[layer.activation]  # type: ignore[index]
    dilation, groups = tuple(layer.dilation), layer.groups  # type: ignore[arg-type]

    def conv2d(x: Tensor, training: bool) -> Tensor:
        k = _dilate(cast_like(kernel, x), dilation)
        if groups == 1:
            return activation(bias(tf.nn.conv2d(x, k, strides, padding)))
        parts = zip(tf.split(x, groups, axis=-1), tf.split(k, groups, axis=-1))
        y = tf.concat([tf.nn.conv2d(xg, kg, strides, padding) for xg, kg in parts], axis=-1)
        return activation(bias(y))

    return conv2d


def _max_pool2d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    layer: MaxPool2D = node.layer  # type: ignore[assignment]
    window, strides = layer.pool_size, layer.strides
    pool = lambda x: tf.nn.max_pool2d(x, window, strides, "VALID")  # noqa: E731
    pads = _spatial_pads(node, window, strides) if layer.padding == "same" else None  # type: ignore[arg-type]
    if pads is None or not any(map(any, pads)):
        return lambda x, training: pool(x)
    return lambda x, training: pool(tf.pad(x, pads, constant_values=float("-inf")))


def _avg_pool2d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    """Mean over each window's real elements: a VALID average of the zero-padded input rescaled
    by ``window area / real count`` (explicit pads, not TF's own "SAME")."""
    layer: AvgPool2D = node.layer  # type: ignore[assignment]
    window, strides = layer.pool_size, layer.strides
    pool = lambda x: tf.nn.avg_pool2d(x, window, strides, "VALID")  # noqa: E731
    pads = _spatial_pads(node, window, strides)  # type: ignore[arg-type]
    if layer.padding == "valid" or not any(map(any, pads)):
        return lambda x, training: pool(x)
    rows, cols = (window_counts(n, k, s, "same") for n, k, s in
                  zip(node.input_shape[:2], window, strides))  # type: ignore[arg-type]
    area = window[0] * window[1]  # type: ignore[index]
    scale = tf.constant((area / np.outer(rows, cols))[None, :, :, None], tf.float32)
    return lambda x, training: pool(tf.pad(x, pads)) * tf.cast(scale, x.dtype)


def _global_avg_pool2d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    return lambda x, training: tf.math.reduce_mean(x, axis=[1, 2])


def _global_max_pool2d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    return lambda x, training: tf.math.reduce_max(x, axis=[1, 2])


def _conv1d(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    layer: Conv1D = node.layer  # type: ignore[assignment]
    kernel = params[node.param_key("kernel")]
    before, after = (same_padding(node.input_shape[0], layer.span, layer.strides)
                     if layer.padding == "same" else (0, 0))
    pad = (lambda x: x) if not (before or after) else (  # noqa: E731
        lambda x: tf.pad(x, [[0, 0], [before, after], [0, 0]]))
    bias, activation = _with_bias(node, params), _ACTIVATIONS[layer.activation]  # type: ignore[index]

    def conv1d(x: Tensor, training: bool) -> Tensor:
        y = tf.nn.conv1d(pad(x), cast_like(kernel, x), layer.strides, "VALID", dilations=layer.dilation)
        return activation(bias(y))

    return conv1d


def _reshape(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    shape = (-1, *node.output_shape)
    return lambda x, training: tf.reshape(x, shape)


def _batch_norm(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    """Batch statistics (biased variance) in training, where the moving statistics are also
    assigned ``momentum * old + (1 - momentum) * batch``; moving statistics in inference.
    Computed in float32 whatever the input's type, and returned in that type."""
    layer: BatchNorm = node.layer  # type: ignore[assignment]
    gamma, beta = params[node.param_key("gamma")], params[node.param_key("beta")]
    moving_mean = params[node.param_key("moving_mean")]
    moving_variance = params[node.param_key("moving_variance")]
    axes = list(range(len(node.input_shape)))
    m, eps = layer.momentum, layer.epsilon

    def normalize(x: Tensor, training: bool) -> Tensor:
        if not training:
            return tf.nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, eps)
        mean, variance = tf.nn.moments(x, axes)
        moving_mean.assign(m * moving_mean + (1.0 - m) * tf.stop_gradient(mean))
        moving_variance.assign(m * moving_variance + (1.0 - m) * tf.stop_gradient(variance))
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, eps)

    def batch_norm(x: Tensor, training: bool) -> Tensor:
        return tf.cast(normalize(tf.cast(x, tf.float32), training), x.dtype)

    return batch_norm


def _input_terms(x: Tensor, kernel: tf.Variable, bias: Tensor) -> Tensor:
    """``x_t W + b`` of every step in one product, time-major: ``(time, batch, gates * units)``."""
    return tf.einsum("ntc,cg->tng", x, cast_like(kernel, x)) + cast_like(bias, x)


def _recurrent_outputs(layer: LSTM | GRU, hs: Tensor, *cells: Tensor) -> Tensor | tuple[Tensor, ...]:
    """``h`` of every step ``(batch, time, units)``, or of the last one, from time-major states;
    with ``return_state``, then the final ``h`` (and ``c``)."""
    main = tf.transpose(hs, [1, 0, 2]) if layer.return_sequences else hs[-1]
    return (main, hs[-1], *(c[-1] for c in cells)) if layer.return_state else main


def _zero_state(x: Tensor, units: int) -> Tensor:
    return tf.zeros(tf.stack([tf.shape(x)[0], units]), x.dtype)


def _lstm(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    """``a = x_t W + h U + b``; i, f, g, o slices; ``c = f c + i g``, ``h = o tanh(c)``."""
    layer: LSTM = node.layer  # type: ignore[assignment]
    kernel, recurrent, bias = (params[node.param_key(k)] for k in ("kernel", "recurrent_kernel", "bias"))

    def lstm(x: Tensor, training: bool) -> Tensor:
        u = tf.convert_to_tensor(cast_like(recurrent, x))

        def step(state: tuple[Tensor, Tensor], a: Tensor) -> tuple[Tensor, Tensor]:
            h, c = state
            i, f, g, o = tf.split(a + tf.linalg.matmul(h, u), 4, axis=1)
            c = tf.math.sigmoid(f) * c + tf.math.sigmoid(i) * tf.math.tanh(g)
            return tf.math.sigmoid(o) * tf.math.tanh(c), c

        zeros = _zero_state(x, layer.units)
        hs, cs = tf.scan(step, _input_terms(x, kernel, bias), initializer=(zeros, zeros))
        return _recurrent_outputs(layer, hs, cs)

    return lstm


def _gru(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    """``a = x_t W + b_x``, ``s = h U + b_h``; r, z, n slices; ``n = tanh(a_n + r s_n)``,
    ``h = (1 - z) n + z h``."""
    layer: GRU = node.layer  # type: ignore[assignment]
    kernel, recurrent, bias = (params[node.param_key(k)] for k in ("kernel", "recurrent_kernel", "bias"))

    def gru(x: Tensor, training: bool) -> Tensor:
        u, recurrent_bias = tf.convert_to_tensor(cast_like(recurrent, x)), cast_like(bias, x)[1]

        def step(h: Tensor, a: Tensor) -> Tensor:
            a_r, a_z, a_n = tf.split(a, 3, axis=1)
            s_r, s_z, s_n = tf.split(tf.linalg.matmul(h, u) + recurrent_bias, 3, axis=1)
            r, z = tf.math.sigmoid(a_r + s_r), tf.math.sigmoid(a_z + s_z)
            n = tf.math.tanh(a_n + r * s_n)
            return (1.0 - z) * n + z * h

        states = tf.scan(step, _input_terms(x, kernel, bias[0]),
                         initializer=_zero_state(x, layer.units))
        return _recurrent_outputs(layer, states)

    return gru


def _flatten(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    size = node.output_shape[0]
    return lambda x, training: tf.reshape(x, (-1, size))


def _dense(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    layer: Dense = node.layer  # type: ignore[assignment]
    kernel = params[node.param_key("kernel")]
    bias, activation = _with_bias(node, params), _ACTIVATIONS[layer.activation]  # type: ignore[index]
    return lambda x, training: activation(bias(tf.linalg.matmul(x, cast_like(kernel, x))))


def _dropout(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    rate = float(node.layer.rate)  # type: ignore[attr-defined]
    if rate == 0.0:
        return lambda x, training: x

    def dropout(x: Tensor, training: bool) -> Tensor:
        if not training:
            return x
        keep = rng.uniform(tf.shape(x), dtype=tf.float32) >= rate
        return tf.where(keep, x * (1.0 / (1.0 - rate)), tf.zeros_like(x))

    return dropout


def _activation(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    activation = _ACTIVATIONS[node.layer.activation]  # type: ignore[attr-defined]
    return lambda x, training: activation(x)


def _merge(node: Node, params: dict[str, tf.Variable], rng: tf.random.Generator) -> LayerFn:
    layer = node.layer
    if isinstance(layer, Concatenate):
        axis = 1 + layer.sample_axis(len(node.input_shape[0]))
        return lambda xs, training: tf.concat(xs, axis=axis)
    if isinstance(layer, Add):
        return lambda xs, training: tf.math.add_n(xs)
    return lambda xs, training: reduce(tf.math.multiply, xs)


_LAYERS: dict[type, Callable[[Node, dict[str, tf.Variable], tf.random.Generator], LayerFn]] = {
    Add: _merge,
    Multiply: _merge,
    Concatenate: _merge,
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
    Dense: _dense,
    Dropout: _dropout,
    Activation: _activation,
    **ATTENTION_BUILDERS,
}


class _Network(tf.Module):
    """The model's variables (canonical keys, native = canonical layout) and its forward pass.

    ``ordered`` holds the trainable variables, the only ones the optimizer sees; non-trainable
    state (BatchNorm's moving statistics) is assigned by the forward pass in training mode.
    Layers compute in ``compute`` (see :mod:`polyframe_tensorflow._precision`); the outputs are
    float32.
    """

    def __init__(self, model: Model, weights: dict[str, np.ndarray], seed: int,
                 compute: tf.DType = tf.float32) -> None:
        super().__init__(name="polyframe_model")
        self.compute = compute
        specs = model.param_specs()
        self.params = {key: tf.Variable(weights[key], name=key, trainable=spec.trainable)
                       for key, spec in specs}
        self.ordered = tuple(self.params[key] for key, spec in specs if spec.trainable)
        self.rng = tf.random.Generator.from_seed(seed)
        self._program = GraphProgram(model, [self._compile(node) for node in model.nodes])

    def _compile(self, node: Node) -> LayerFn:
        compile_layer = _LAYERS.get(type(node.layer))
        if compile_layer is None:
            raise ConfigError(
                f"the tensorflow backend does not support layer {type(node.layer).__name__} "
                f"({node.name!r}); use one of {', '.join(t.__name__ for t in _LAYERS)}"
            )
        layer = compile_layer(node, self.params, self.rng)
        if self.compute == tf.float32 or isinstance(node.layer, Embedding):
            return layer
        return computing_in(self.compute, layer)

    def __call__(self, x: Sequence[Tensor], training: bool) -> tuple[Tensor, ...]:
        outputs = self._program.run(x, lambda layer, value: layer(value, training))
        return tuple(tf.cast(o, tf.float32) for o in outputs)


# -- the executable ----------------------------------------------------------------------------
class _Step:
    """A ``tf.function`` with a fixed signature, traced on its first call and then called as a
    concrete function (cheaper per call than dispatching through the ``tf.function``)."""

    def __init__(self, fn: Callable[..., object], *specs: tf.TensorSpec) -> None:
        self._function = tf.function(fn, input_signature=specs, jit_compile=JIT_COMPILE,
                                     autograph=False)
        self._concrete: Callable[..., object] | None = None

    def __call__(self, *args: Tensor) -> object:
        if self._concrete is None:
            self._concrete = self._function.get_concrete_function()
        return self._concrete(*args)


class TensorFlowExecutable(Executable):
    """A polyframe model as TF variables with compiled train / eval / predict ``tf.function`` s.

    Each step is one ``tf.function`` whose batch dimension is ``None``, so a smaller last batch
    reuses the same graph. Its arguments are the model's inputs then its targets, flat. ``options.deterministic`` calls
    ``tf.config.experimental.enable_op_determinism()``, which is process-wide and stays on.
    """

    state_functions = "polyframe_tensorflow._state"

    def __init__(self, model: Model, weights: dict[str, np.ndarray], loss: Loss | tuple[Loss, ...],
                 optimizer: Optimizer, options: BuildOptions) -> None:
        compute = compute_dtype(options.precision)
        if options.deterministic:
            tf.config.experimental.enable_op_determinism()
        self._net = _Network(model, model.check_weights(weights), options.seed, compute)
        self._losses, y_specs = zip(*(_loss_function(spec, shape) for spec, shape
                                      in zip(as_tuple(loss), model.output_shapes)))
        self._loss_weights = options.loss_weights
        self._y_dtypes = [spec.dtype.as_numpy_dtype for spec in y_specs]
        self._optimizer = _optimizer(optimizer, self._net.ordered)
        x_specs = [tf.TensorSpec((None, *shape), tf.float32) for shape in model.input_shapes]
        self._inputs = len(x_specs)
        self._train_specs = (*x_specs, *y_specs)
        self._train = _Step(self._train_graph, *self._train_specs)
        self._eval = _Step(self._eval_graph, *x_specs, *y_specs)
        self._predict = _Step(self._predict_graph, *x_specs)

    def _loss(self, outputs: tuple[Tensor, ...], y: tuple[Tensor, ...]) -> Tensor:
        return weighted_sum([fn(o, t) for fn, o, t in zip(self._losses, outputs, y)],
                            self._loss_weights)

    def _train_graph(self, *tensors: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        x, y = tensors[:self._inputs], tensors[self._inputs:]
        variables = self._net.ordered
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            outputs = self._net(x, training=True)
            loss = self._loss(outputs, y)
        self._optimizer(tape.gradient(loss, variables))
        return loss, outputs

    def _eval_graph(self, *tensors: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        x, y = tensors[:self._inputs], tensors[self._inputs:]
        outputs = self._net(x, training=False)
        return self._loss(outputs, y), outputs

    def _predict_graph(self, *x: Tensor) -> tuple[Tensor, ...]:
        return self._net(x, training=False)

    @staticmethod
    def _x(x: np.ndarray | tuple[np.ndarray, ...]) -> list[Tensor]:
        return [tf.convert_to_tensor(np.asarray(part, dtype=np.float32)) for part in as_tuple(x)]

    def _tensors(self, x: np.ndarray | tuple[np.ndarray, ...],
                 y: np.ndarray | tuple[np.ndarray, ...]) -> list[Tensor]:
        return [*self._x(x), *(tf.convert_to_tensor(np.asarray(t, dtype=dtype))
                               for t, dtype in zip(as_tuple(y), self._y_dtypes))]

    @staticmethod
    def _host(outputs: tuple[Tensor, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
        return single_or_tuple([o.numpy() for o in outputs])

    def prepare_inputs(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        loss, outputs = self._train(*self._tensors(x, y))
        return StepResult(float(loss.numpy()), self._host(outputs))

    def eval_step(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        loss, outputs = self._eval(*self._tensors(x, y))
        return StepResult(float(loss.numpy()), self._host(outputs))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._host(self._predict(*self._x(x)))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {key: np.array(v.numpy(), dtype=np.float32, copy=True)
                for key, v in self._net.params.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for key, variable in self._net.params.items():
            variable.assign(np.asarray(weights[key], dtype=np.float32))
