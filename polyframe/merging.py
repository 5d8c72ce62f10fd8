"""Layers that merge several tensors: the joints of residual and multi-branch graphs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import ConfigError, ShapeError
from .layers import Layer

__all__ = ["Add", "Multiply", "Concatenate"]

Shape = tuple[int, ...]


def _show(shape: Shape) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")"


@dataclass(frozen=True)
class _Merge(Layer):
    arity: ClassVar[tuple[int, int]] = (2, 64)

    def _label(self) -> str:
        return f"layer {self.name or self.kind!r} ({type(self).__name__})"


@dataclass(frozen=True)
class _Elementwise(_Merge):
    def output_shape(self, input_shape: tuple[Shape, ...]) -> Shape:
        first = input_shape[0]
        if any(shape != first for shape in input_shape[1:]):
            raise ShapeError(f"{self._label()} needs inputs of one shape, got "
                             f"{', '.join(_show(s) for s in input_shape)}; reshape or project the "
                             "branches (e.g. a 1x1 Conv2D or a Dense) so they match")
        return first


@dataclass(frozen=True)
class Add(_Elementwise):
    """The elementwise sum of two or more tensors of one shape."""

    kind: ClassVar[str] = "add"


@dataclass(frozen=True)
class Multiply(_Elementwise):
    """The elementwise product of two or more tensors of one shape."""

    kind: ClassVar[str] = "multiply"


@dataclass(frozen=True)
class Concatenate(_Merge):
    """Tensors joined along ``axis``, counted with the batch as axis 0 (``-1``: the channels)."""

    kind: ClassVar[str] = "concatenate"
    axis: int = -1

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise ConfigError(f"Concatenate: axis must be an int, got {self.axis!r}")
        if self.axis == 0:
            raise ConfigError("Concatenate: axis 0 is the batch axis; join along a sample axis "
                              "(1..rank, or -1 for the channels)")

    def sample_axis(self, rank: int) -> int:
        """The axis as a 0-based index into the sample shape (batch excluded)."""
        axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= axis < rank:
            raise ShapeError(f"{self._label()}: axis {self.axis} is out of range for inputs of "
                             f"rank {rank} (batch excluded); use 1..{rank} or -1..-{rank} (axis 0 is the batch)")
        return axis

    def output_shape(self, input_shape: tuple[Shape, ...]) -> Shape:
        ranks = {len(s) for s in input_shape}
        if len(ranks) != 1:
            raise ShapeError(f"{self._label()} needs inputs of one rank, got "
                             f"{', '.join(_show(s) for s in input_shape)}")
        axis = self.sample_axis(ranks.pop())
        first = input_shape[0]
        for shape in input_shape[1:]:
            if shape[:axis] + shape[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise ShapeError(f"{self._label()} joins along axis {self.axis}, so the other "
                                 f"axes must match, got {', '.join(_show(s) for s in input_shape)}")
        return first[:axis] + (sum(s[axis] for s in input_shape),) + first[axis + 1:]
