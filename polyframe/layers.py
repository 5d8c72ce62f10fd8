"""Layer specifications: plain, frozen data that every backend compiles the same way.

A layer knows its parameters' canonical shapes and how it transforms a shape; it holds no
weights and imports no framework. Shapes here exclude the batch dimension; image tensors are
NHWC and sequences ``(length, channels)`` (channels last), convolution kernels
``(kH, kW, in, out)`` / ``(k, in, out)``, dense kernels ``(in, out)`` and recurrent kernels
``(in, gates * units)`` / ``(units, gates * units)`` with the gates side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ._checks import SpecMeta, check_bool, check_float, check_int
from .activations import check_activation
from .errors import ConfigError, ShapeError

__all__ = [
    "Layer",
    "ParamSpec",
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "Conv1D",
    "Reshape",
    "BatchNorm",
    "LayerNorm",
    "Embedding",
    "LSTM",
    "GRU",
    "Flatten",
    "Dropout",
    "Activation",
    "same_padding",
    "window_output_size",
    "window_counts",
]

if TYPE_CHECKING:
    from .model import SymbolicTensor

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One array of a layer: its local name, canonical shape and initializer.

    ``trainable=False`` marks state (e.g. BatchNorm's moving statistics): it is part of the
    weights (``get_weights``/``set_weights``) but optimizers never update it.
    """

    name: str
    shape: Shape
    initializer: str
    trainable: bool = True


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding ``(before, after)`` of one spatial axis for ``"same"``: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def window_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a sliding window over one axis (``"valid"`` or ``"same"``)."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def window_counts(size: int, kernel: int, stride: int, padding: str) -> tuple[int, ...]:
    """How many real (non-padding) elements each output window covers along one axis."""
    before = same_padding(size, kernel, stride)[0] if padding == "same" else 0
    out = window_output_size(size, kernel, stride, padding)
    return tuple(min(o * stride - before + kernel, size) - max(o * stride - before, 0)
                 for o in range(out))


def _pair(value: int | tuple[int, int], what: str, where: str) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ConfigError(f"{where}: {what} must be a positive int or a pair of them, got {value!r}")
    return tuple(check_int(v, f"{where}: {what}") for v in pair)  # type: ignore[return-value]


def _padding(value: str, where: str) -> str:
    if value not in ("valid", "same"):
        raise ConfigError(f"{where}: padding must be 'valid' or 'same', got {value!r}")
    return value


@dataclass(frozen=True)
class Layer(metaclass=SpecMeta):
    """Base of all layer specs. Subclasses define ``kind``, ``params`` and ``output_shape``."""

    kind: ClassVar[str] = "layer"
    arity: ClassVar[tuple[int, int]] = (1, 1)
    """Least and most inputs the layer takes. With a maximum above 1, ``params`` and
    ``output_shape`` receive a tuple of shapes (one per input) and backends pass a list."""
    name: str | None = field(default=None, kw_only=True)

    def __call__(self, *inputs: SymbolicTensor) -> SymbolicTensor | tuple[SymbolicTensor, ...]:
        """Apply the layer to symbolic tensors of the functional API (see :class:`polyframe.Model`)."""
        from .model import call_layer

        return call_layer(self, inputs)

    def output_count(self) -> int:
        """How many tensors the layer returns; above 1, ``output_shape`` returns one shape each."""
        return 1

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        """The layer's trainable arrays for a given input shape (none by default)."""
        return ()

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for ``input_shape``; raises :class:`ShapeError` when it does not fit."""
        return input_shape

    def _shape_error(self, expected: str, got: Shape, hint: str) -> ShapeError:
        label = self.name or self.kind
        return ShapeError(
            f"layer {label!r} ({type(self).__name__}) expects {expected} but got input shape "
            f"{_show(got)}; {hint}"
        )


def _show(shape: Shape) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")"


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)`` with kernel ``(in, units)``."""

    kind: ClassVar[str] = "dense"
    units: int
    activation: str | None = None
    use_bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", check_int(self.units, "Dense: units"))
        object.__setattr__(self, "use_bias", check_bool(self.use_bias, "Dense: use_bias"))
        object.__setattr__(self, "activation", check_activation(self.activation, "Dense"))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise self._shape_error(
                "a 2-D input (batch, features)", input_shape, "add a Flatten layer before it"
            )
        return (self.units,)

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        kernel = ParamSpec("kernel", (input_shape[0], self.units), "glorot_uniform")
        return (kernel, ParamSpec("bias", (self.units,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class Conv2D(Layer):
    """2-D convolution over NHWC input with kernel ``(kH, kW, in / groups, filters)``.

    ``y[n, i, j, f] = act(sum_{a, b, c} xp[n, i*sh + a*dh, j*sw + b*dw, g*Cg + c] K[a, b, c, f] + b[f])``
    with ``g = f // (filters / groups)`` the output channel's group and ``Cg = in / groups``:
    group ``g`` reads input channels ``[g*Cg, (g+1)*Cg)`` and owns filters
    ``[g*filters/groups, (g+1)*filters/groups)``. ``xp`` is the input padded by
    :func:`same_padding` for the dilated span ``(k - 1) * dilation + 1`` with ``"same"`` (the
    extra row/column at the bottom/right), unpadded with ``"valid"``.
    """

    kind: ClassVar[str] = "conv2d"
    filters: int
    kernel_size: int | tuple[int, int]
    strides: int | tuple[int, int] = 1
    padding: str = "valid"
    activation: str | None = None
    use_bias: bool = True
    dilation: int | tuple[int, int] = 1
    groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", check_int(self.filters, "Conv2D: filters"))
        object.__setattr__(self, "use_bias", check_bool(self.use_bias, "Conv2D: use_bias"))
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", "Conv2D"))
        object.__setattr__(self, "strides", _pair(self.strides, "strides", "Conv2D"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", "Conv2D"))
        object.__setattr__(self, "groups", check_int(self.groups, "Conv2D: groups"))
        object.__setattr__(self, "padding", _padding(self.padding, "Conv2D"))
        object.__setattr__(self, "activation", check_activation(self.activation, "Conv2D"))
        if self.filters % self.groups:
            raise ConfigError(f"Conv2D: filters ({self.filters}) must be divisible by groups "
                              f"({self.groups}); change one of them")

    @property
    def span(self) -> tuple[int, int]:
        """Input rows and columns one output pixel sees: ``(k - 1) * dilation + 1`` per axis."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation  # type: ignore[misc]
        return (kh - 1) * dh + 1, (kw - 1) * dw + 1

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise self._shape_error(
                "a 4-D input (batch, height, width, channels)",
                input_shape,
                "give image data as NHWC, e.g. reshape (N, H, W) to (N, H, W, 1)",
            )
        (kh, kw), (sh, sw) = self.span, self.strides  # type: ignore[misc]
        h, w, channels = input_shape
        if channels % self.groups:
            raise self._shape_error(
                f"input channels divisible by groups={self.groups}", input_shape,
                "change groups or the number of channels feeding this layer",
            )
        if self.padding == "valid" and (h < kh or w < kw):
            raise self._shape_error(
                f"height >= {kh} and width >= {kw} for a {kh}x{kw} (dilated) kernel with "
                "'valid' padding",
                input_shape,
                "use padding='same', a smaller kernel or a smaller dilation",
            )
        return (
            window_output_size(h, kh, sh, self.padding),
            window_output_size(w, kw, sw, self.padding),
            self.filters,
        )

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        kh, kw = self.kernel_size  # type: ignore[misc]
        kernel = ParamSpec("kernel", (kh, kw, input_shape[-1] // self.groups, self.filters),
                           "glorot_uniform")
        return (kernel, ParamSpec("bias", (self.filters,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class _Pool2D(Layer):
    """Shared by the windowed 2-D pools: ``strides`` defaults to ``pool_size``."""

    pool_size: int | tuple[int, int] = 2
    strides: int | tuple[int, int] | None = None
    padding: str = "valid"

    def __post_init__(self) -> None:
        where = type(self).__name__
        pool = _pair(self.pool_size, "pool_size", where)
        object.__setattr__(self, "pool_size", pool)
        strides = pool if self.strides is None else _pair(self.strides, "strides", where)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "padding", _padding(self.padding, where))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise self._shape_error(
                "a 4-D input (batch, height, width, channels)", input_shape,
                "pool only image-shaped tensors (NHWC)",
            )
        (ph, pw), (sh, sw) = self.pool_size, self.strides  # type: ignore[misc]
        h, w, c = input_shape
        if self.padding == "valid" and (h < ph or w < pw):
            raise self._shape_error(
                f"height >= {ph} and width >= {pw} for a {ph}x{pw} pool", input_shape,
                "use padding='same' or a smaller pool_size",
            )
        return (
            window_output_size(h, ph, sh, self.padding),
            window_output_size(w, pw, sw, self.padding),
            c,
        )


@dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """Max pooling over NHWC input. ``strides`` defaults to ``pool_size``; "same" pads with -inf."""

    kind: ClassVar[str] = "max_pool2d"


@dataclass(frozen=True)
class AvgPool2D(_Pool2D):
    """Average pooling over NHWC input. ``strides`` defaults to ``pool_size``.

    Each output is the mean of the window's real elements: with ``"same"`` padding the padded
    positions are excluded from both the sum and the count (TensorFlow's rule), so a border
    window covering ``n`` real elements divides by ``n``, not by ``pool_h * pool_w``.
    """

    kind: ClassVar[str] = "avg_pool2d"


@dataclass(frozen=True)
class _GlobalPool2D(Layer):
    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise self._shape_error(
                "a 4-D input (batch, height, width, channels)", input_shape,
                "pool only image-shaped tensors (NHWC)",
            )
        return (input_shape[-1],)


@dataclass(frozen=True)
class GlobalAvgPool2D(_GlobalPool2D):
    """Mean over height and width: ``(batch, H, W, C) -> (batch, C)``."""

    kind: ClassVar[str] = "global_avg_pool2d"


@dataclass(frozen=True)
class GlobalMaxPool2D(_GlobalPool2D):
    """Max over height and width: ``(batch, H, W, C) -> (batch, C)``."""

    kind: ClassVar[str] = "global_max_pool2d"


@dataclass(frozen=True)
class Conv1D(Layer):
    """1-D convolution over ``(batch, length, channels)`` with kernel ``(k, in, filters)``.

    ``y[n, t, f] = act(sum_{j, c} xp[n, t * strides + j * dilation, c] * K[j, c, f] + b[f])``, where
    ``xp`` is the input padded by :func:`same_padding` with the dilated span
    ``(k - 1) * dilation + 1`` for ``"same"`` (the odd element at the end), unpadded for ``"valid"``.
    """

    kind: ClassVar[str] = "conv1d"
    filters: int
    kernel_size: int
    strides: int = 1
    padding: str = "valid"
    dilation: int = 1
    activation: str | None = None
    use_bias: bool = True

    def __post_init__(self) -> None:
        for attr in ("filters", "kernel_size", "strides", "dilation"):
            value = getattr(self, attr)
            if isinstance(value, (tuple, list)) and len(value) == 1:
                value = value[0]
            object.__setattr__(self, attr, check_int(value, f"Conv1D: {attr}"))
        object.__setattr__(self, "use_bias", check_bool(self.use_bias, "Conv1D: use_bias"))
        object.__setattr__(self, "padding", _padding(self.padding, "Conv1D"))
        object.__setattr__(self, "activation", check_activation(self.activation, "Conv1D"))

    @property
    def span(self) -> int:
        """Length of input one output element sees: ``(kernel_size - 1) * dilation + 1``."""
        return (self.kernel_size - 1) * self.dilation + 1

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise self._shape_error(
                "a 3-D input (batch, length, channels)", input_shape,
                "give sequences as (N, length, channels), e.g. reshape (N, L) to (N, L, 1)",
            )
        if self.padding == "valid" and input_shape[0] < self.span:
            raise self._shape_error(
                f"length >= {self.span} (the dilated kernel span) with 'valid' padding",
                input_shape, "use padding='same', a smaller kernel or a smaller dilation",
            )
        return (window_output_size(input_shape[0], self.span, self.strides, self.padding),
                self.filters)

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        kernel = ParamSpec("kernel", (self.kernel_size, input_shape[-1], self.filters),
                           "glorot_uniform")
        return (kernel, ParamSpec("bias", (self.filters,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (batch excluded; one entry may be -1), reading
    and writing elements in row-major channel-last order, like ``numpy.reshape`` on NHWC data."""

    kind: ClassVar[str] = "reshape"
    target_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        target = self.target_shape
        if not isinstance(target, (tuple, list)) or not target:
            raise ConfigError(f"Reshape: target_shape must be a non-empty tuple of ints, got {target!r}")
        dims = tuple(-1 if d == -1 and not isinstance(d, bool) else check_int(d, "Reshape: each dimension")
                     for d in target)
        if dims.count(-1) > 1:
            raise ConfigError(f"Reshape: at most one dimension may be -1, got {target!r}")
        object.__setattr__(self, "target_shape", dims)

    def output_shape(self, input_shape: Shape) -> Shape:
        size, known = math.prod(input_shape), math.prod(d for d in self.target_shape if d != -1)
        fits = size % known == 0 if -1 in self.target_shape else size == known
        if not fits:
            raise self._shape_error(
                f"{known}{' * k' if -1 in self.target_shape else ''} elements per sample "
                f"to reshape to {_show(self.target_shape)}",
                input_shape, f"the input has {size} elements per sample",
            )
        return tuple(size // known if d == -1 else d for d in self.target_shape)


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over the last axis (the channels), for inputs of any rank.

    Training: ``y = gamma * (x - m) / sqrt(v + epsilon) + beta`` with the batch mean ``m`` and the
    **biased** batch variance ``v`` over every axis but the last; then each moving statistic
    becomes ``momentum * moving + (1 - momentum) * batch`` (``momentum`` weighs the *old* value,
    Keras' convention; PyTorch's ``momentum`` is ``1 - momentum``). Inference: the same formula
    with ``moving_mean`` / ``moving_variance``. ``gamma``, ``beta`` are trainable; the moving
    statistics are non-trainable state, initialised to zeros / ones.
    """

    kind: ClassVar[str] = "batch_norm"
    momentum: float = 0.99
    epsilon: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", check_float(self.momentum, "BatchNorm: momentum",
                                                         low=0.0, high=1.0))
        object.__setattr__(self, "epsilon", check_float(self.epsilon, "BatchNorm: epsilon",
                                                        low=0.0, low_open=True))

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        channels = (input_shape[-1],)
        return (
            ParamSpec("gamma", channels, "ones"),
            ParamSpec("beta", channels, "zeros"),
            ParamSpec("moving_mean", channels, "zeros", trainable=False),
            ParamSpec("moving_variance", channels, "ones", trainable=False),
        )


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the last axis, separately for every sample and position.

    ``y = gamma * (x - m) / sqrt(v + epsilon) + beta`` with ``m`` the mean and ``v`` the
    **biased** variance of ``x`` over the last axis; ``gamma`` (ones) and ``beta`` (zeros) have
    the last axis' size. Same in training and inference; no state. ``epsilon`` defaults to
    PyTorch's 1e-5 (Keras' default is 1e-3, Flax's 1e-6).
    """

    kind: ClassVar[str] = "layer_norm"
    epsilon: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_float(self.epsilon, "LayerNorm: epsilon",
                                                        low=0.0, low_open=True))

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        channels = (input_shape[-1],)
        return ParamSpec("gamma", channels, "ones"), ParamSpec("beta", channels, "zeros")


@dataclass(frozen=True)
class Embedding(Layer):
    """Looks up token ids in a table: ``(batch, length)`` ids -> ``(batch, length, output_dim)``.

    ``y[n, t] = embeddings[ids[n, t]]`` with ``embeddings`` ``(input_dim, output_dim)``, drawn
    from ``U(-0.05, 0.05)`` (Keras' rule; PyTorch draws ``N(0, 1)``). Ids arrive as float32
    arrays holding integers and are rounded to the nearest integer; they must lie in
    ``[0, input_dim)``. Ids carry no gradient.
    """

    kind: ClassVar[str] = "embedding"
    input_dim: int
    output_dim: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dim", check_int(self.input_dim, "Embedding: input_dim"))
        object.__setattr__(self, "output_dim", check_int(self.output_dim, "Embedding: output_dim"))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise self._shape_error(
                "a 2-D input (batch, length) of token ids", input_shape,
                "give one integer id per position, e.g. reshape (N, L, 1) to (N, L)",
            )
        return (input_shape[0], self.output_dim)

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        return (ParamSpec("embeddings", (self.input_dim, self.output_dim), "embedding_uniform"),)


@dataclass(frozen=True)
class _Recurrent(Layer):
    """Shared by LSTM and GRU: ``(batch, time, features)`` in, the hidden state ``h_t`` of every
    step ``(batch, time, units)`` with ``return_sequences``, else only the last ``(batch, units)``.
    With ``return_state`` the layer also returns its final state, each ``(batch, units)``: ``h_T``
    (GRU), or ``h_T`` then ``c_T`` (LSTM); use the functional API for it. The initial state is zero. ``kernel`` ``(features, gates * units)``, ``recurrent_kernel``
    ``(units, gates * units)``: gate ``k`` owns columns ``[k * units, (k + 1) * units)``.
    """

    gates: ClassVar[int]
    units: int
    return_sequences: bool = False
    return_state: bool = False
    states: ClassVar[int]
    """How many state tensors ``return_state`` adds."""

    def __post_init__(self) -> None:
        where = type(self).__name__
        object.__setattr__(self, "units", check_int(self.units, f"{where}: units"))
        for option in ("return_sequences", "return_state"):
            object.__setattr__(self, option, check_bool(getattr(self, option), f"{where}: {option}"))

    def output_count(self) -> int:
        return 1 + self.states if self.return_state else 1

    def output_shape(self, input_shape: Shape) -> Shape | tuple[Shape, ...]:
        if len(input_shape) != 2:
            raise self._shape_error(
                "a 3-D input (batch, time, features)", input_shape,
                "give sequences as (N, time, features), e.g. reshape (N, T) to (N, T, 1)",
            )
        main = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        return (main, *((self.units,),) * self.states) if self.return_state else main

    def _kernels(self, input_shape: Shape) -> tuple[ParamSpec, ParamSpec]:
        width = self.gates * self.units
        return (ParamSpec("kernel", (input_shape[-1], width), "glorot_uniform"),
                ParamSpec("recurrent_kernel", (self.units, width), "orthogonal"))


@dataclass(frozen=True)
class LSTM(_Recurrent):
    """Long short-term memory over ``(batch, time, features)``; gates in the order i, f, g, o.

    With ``W`` = kernel, ``U`` = recurrent_kernel, ``b`` = bias ``(4 * units,)`` and
    ``h_0 = c_0 = 0``, each step computes ``a = x_t W + h_{t-1} U + b``, split into four
    ``units``-wide slices ``a_i, a_f, a_g, a_o``, then::

        i = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
        c_t = f * c_{t-1} + i * g              h_t = o * tanh(c_t)

    Initial weights: kernel glorot-uniform, recurrent_kernel orthogonal, bias zeros except the
    forget-gate slice ``b[units:2 * units] = 1`` (initializer ``lstm_bias``).
    """

    kind: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4
    states: ClassVar[int] = 2

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        return (*self._kernels(input_shape), ParamSpec("bias", (4 * self.units,), "lstm_bias"))


@dataclass(frozen=True)
class GRU(_Recurrent):
    """Gated recurrent unit, "reset after" form (PyTorch's; Keras' ``reset_after=True``), gates
    in the order r, z, n.

    With ``W`` = kernel, ``U`` = recurrent_kernel, bias ``(2, 3 * units)`` = ``(b_x, b_h)``
    (input bias, recurrent bias) and ``h_0 = 0``, each step computes ``a = x_t W + b_x`` and
    ``s = h_{t-1} U + b_h``, each split into ``units``-wide slices r, z, n, then::

        r = sigmoid(a_r + s_r)   z = sigmoid(a_z + s_z)   n = tanh(a_n + r * s_n)
        h_t = (1 - z) * n + z * h_{t-1}

    The reset gate multiplies the recurrent term *with* its bias ``b_h[n]``. Initial weights:
    kernel glorot-uniform, recurrent_kernel orthogonal, bias zeros.
    """

    kind: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3
    states: ClassVar[int] = 1

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        return (*self._kernels(input_shape), ParamSpec("bias", (2, 3 * self.units), "zeros"))


@dataclass(frozen=True)
class Flatten(Layer):
    """Flattens all but the batch axis in channel-last (row-major NHWC) order."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``rate``, scale the rest
    by ``1 / (1 - rate)``; identity at evaluation. Masks are drawn by each backend's own RNG."""

    kind: ClassVar[str] = "dropout"
    rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check_float(self.rate, "Dropout: rate", low=0.0, high=1.0,
                                                     high_open=True))


@dataclass(frozen=True)
class Activation(Layer):
    """Applies a named activation (see :mod:`polyframe.activations`)."""

    kind: ClassVar[str] = "activation"
    activation: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", check_activation(self.activation, "Activation"))
