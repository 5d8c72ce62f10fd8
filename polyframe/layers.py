"""Layer specifications: plain, frozen data that every backend compiles the same way.

A layer knows its parameters' canonical shapes and how it transforms a shape; it holds no
weights and imports no framework. Shapes here exclude the batch dimension; image tensors are
NHWC (channels last), convolution kernels ``(kH, kW, in, out)`` and dense kernels ``(in, out)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ._checks import check_bool, check_float, check_int
from .activations import check_activation
from .errors import ConfigError, ShapeError

__all__ = [
    "Layer",
    "ParamSpec",
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "Flatten",
    "Dropout",
    "Activation",
    "same_padding",
    "window_output_size",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One trainable array: its local name, canonical shape and initializer."""

    name: str
    shape: Shape
    initializer: str


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
class Layer:
    """Base of all layer specs. Subclasses define ``kind``, ``params`` and ``output_shape``."""

    kind: ClassVar[str] = "layer"
    name: str | None = field(default=None, kw_only=True)

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
    """2-D convolution over NHWC input with kernel ``(kH, kW, in, filters)``.

    ``"same"`` padding follows the canonical rule of :func:`same_padding`: when the total padding
    is odd, the extra row/column goes at the bottom/right.
    """

    kind: ClassVar[str] = "conv2d"
    filters: int
    kernel_size: int | tuple[int, int]
    strides: int | tuple[int, int] = 1
    padding: str = "valid"
    activation: str | None = None
    use_bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", check_int(self.filters, "Conv2D: filters"))
        object.__setattr__(self, "use_bias", check_bool(self.use_bias, "Conv2D: use_bias"))
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", "Conv2D"))
        object.__setattr__(self, "strides", _pair(self.strides, "strides", "Conv2D"))
        object.__setattr__(self, "padding", _padding(self.padding, "Conv2D"))
        object.__setattr__(self, "activation", check_activation(self.activation, "Conv2D"))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise self._shape_error(
                "a 4-D input (batch, height, width, channels)",
                input_shape,
                "give image data as NHWC, e.g. reshape (N, H, W) to (N, H, W, 1)",
            )
        (kh, kw), (sh, sw) = self.kernel_size, self.strides  # type: ignore[misc]
        h, w, _ = input_shape
        if self.padding == "valid" and (h < kh or w < kw):
            raise self._shape_error(
                f"height >= {kh} and width >= {kw} for a {kh}x{kw} kernel with 'valid' padding",
                input_shape,
                "use padding='same' or a smaller kernel",
            )
        return (
            window_output_size(h, kh, sh, self.padding),
            window_output_size(w, kw, sw, self.padding),
            self.filters,
        )

    def params(self, input_shape: Shape) -> tuple[ParamSpec, ...]:
        kh, kw = self.kernel_size  # type: ignore[misc]
        kernel = ParamSpec("kernel", (kh, kw, input_shape[-1], self.filters), "glorot_uniform")
        return (kernel, ParamSpec("bias", (self.filters,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class MaxPool2D(Layer):
    """Max pooling over NHWC input. ``strides`` defaults to ``pool_size``; "same" pads with -inf."""

    kind: ClassVar[str] = "max_pool2d"
    pool_size: int | tuple[int, int] = 2
    strides: int | tuple[int, int] | None = None
    padding: str = "valid"

    def __post_init__(self) -> None:
        pool = _pair(self.pool_size, "pool_size", "MaxPool2D")
        object.__setattr__(self, "pool_size", pool)
        strides = pool if self.strides is None else _pair(self.strides, "strides", "MaxPool2D")
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "padding", _padding(self.padding, "MaxPool2D"))

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
