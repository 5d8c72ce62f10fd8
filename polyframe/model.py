"""Models as plain data: a :class:`Sequential` stack of layer specs with inferred shapes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ._checks import check_int
from .errors import ConfigError, ShapeError
from .initializers import initialize
from .layers import Layer, ParamSpec
from .random import generator

__all__ = ["Sequential", "Node"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Node:
    """A layer placed in a model: its unique name and the shapes it sees (batch excluded)."""

    name: str
    layer: Layer
    input_shape: Shape
    output_shape: Shape
    params: tuple[ParamSpec, ...]

    def param_key(self, param: str) -> str:
        """The model-wide key of one of this node's parameters, e.g. ``"dense_1.kernel"``."""
        return f"{self.name}.{param}"


def _check_input_shape(input_shape: Iterable[int]) -> Shape:
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ConfigError(
            f"input_shape must be a non-empty tuple of positive ints (batch excluded), "
            f"got {input_shape!r}"
        )
    return tuple(check_int(d, "each input_shape dimension") for d in input_shape)


class Sequential:
    """A linear stack of layers applied to inputs of ``input_shape`` (batch excluded).

    Shapes are inferred on construction, before any framework is touched::

        model = Sequential([Conv2D(32, 3, activation="relu"), Flatten(), Dense(10)],
                           input_shape=(28, 28, 1))
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Iterable[int]) -> None:
        if not isinstance(layers, (list, tuple)):
            raise ConfigError(f"Sequential takes a list of layers, got {type(layers).__name__}; "
                              "wrap it: Sequential([layer, ...], input_shape=...)")
        if not layers:
            raise ConfigError("Sequential needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ConfigError(
                    f"Sequential takes polyframe layers, got {type(layer).__name__}: {layer!r}"
                )
        self.input_shape: Shape = _check_input_shape(input_shape)
        self.nodes: tuple[Node, ...] = tuple(self._place(layers))

    def _place(self, layers: Sequence[Layer]) -> Iterator[Node]:
        shape = self.input_shape
        taken: dict[str, int] = {}
        for layer in layers:
            name = layer.name or _unique(layer.kind, taken)
            if name in taken and layer.name:
                raise ConfigError(f"two layers are named {name!r}; layer names must be unique")
            taken[name] = 1
            out = layer.output_shape(shape)
            yield Node(name, layer, shape, out, layer.params(shape))
            shape = out

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(node.layer for node in self.nodes)

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].output_shape

    def param_specs(self) -> list[tuple[str, ParamSpec]]:
        """Every parameter as ``(key, spec)``, in model order."""
        return [(node.param_key(p.name), p) for node in self.nodes for p in node.params]

    def count_params(self) -> int:
        return sum(int(np.prod(spec.shape)) for _, spec in self.param_specs())

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Canonical initial weights for ``seed``: identical bits on every backend."""
        rng = generator(seed, "init")
        return {key: initialize(spec.initializer, rng, spec.shape) for key, spec in self.param_specs()}

    def check_weights(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate a canonical weight dict against this model; returns float32 copies."""
        if not isinstance(weights, dict):
            raise ConfigError(f"weights must be a dict of arrays keyed like get_weights(), "
                              f"got {type(weights).__name__}")
        expected = dict(self.param_specs())
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        if missing or extra:
            raise ConfigError(
                f"weights do not match the model: missing {missing or 'none'}, "
                f"unexpected {extra or 'none'}"
            )
        checked = {}
        for key, spec in expected.items():
            try:
                array = np.asarray(weights[key], dtype=np.float32)
            except (TypeError, ValueError):
                raise ConfigError(f"weight {key!r} is not a numeric array") from None
            if array.shape != spec.shape:
                raise ShapeError(
                    f"weight {key!r} has shape {array.shape}, the model needs {spec.shape}"
                )
            if not np.all(np.isfinite(array)):
                raise ConfigError(f"weight {key!r} contains NaN or infinite values")
            checked[key] = array.copy()
        return checked

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        rows = [("layer", "output shape", "params")]
        for node in self.nodes:
            count = sum(int(np.prod(p.shape)) for p in node.params)
            rows.append((f"{node.name} ({type(node.layer).__name__})",
                         str((None, *node.output_shape)), str(count)))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.append(f"total params: {self.count_params():,}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Sequential({list(self.layers)!r}, input_shape={self.input_shape})"


def _unique(kind: str, taken: dict[str, int]) -> str:
    if kind not in taken:
        return kind
    index = 1
    while f"{kind}_{index}" in taken:
        index += 1
    return f"{kind}_{index}"
