"""Models as plain data: graphs of layer specs with inferred shapes.

Two ways to build one, both giving a :class:`Model`:

* the functional API: ``x = Input((28, 28, 1))``, call layers on symbolic tensors, then
  ``Model(inputs, outputs)``; any directed acyclic graph, several inputs and outputs;
* :class:`Sequential`, a linear stack: ``Sequential([Conv2D(8, 3), Flatten(), Dense(10)],
  input_shape=(28, 28, 1))``.

Every shape is checked when the graph is built, before any framework is touched. A model's
nodes are in an order where each node comes after the nodes it reads; backends execute them in
that order, storing each output under its key (:attr:`Node.output_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import re

import numpy as np

from ._checks import check_int
from .errors import ConfigError, ShapeError
from .initializers import initialize
from .layers import Layer, ParamSpec
from .random import generator

__all__ = ["Input", "InputSpec", "Model", "Node", "Sequential", "SymbolicTensor", "call_layer"]

Shape = tuple[int, ...]
LayerShape = Any
"""A :data:`Shape`, or a tuple of them for layers with several inputs or outputs."""

INPUT_DTYPES = ("float32", "int32")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def _check_name(name: object, what: str) -> str:
    """A layer or input name: letters, digits, ``_`` and ``-`` (``.``, ``:`` and ``/`` separate
    parameter keys, output indices and optimizer slots)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{what} name must be a non-empty string of letters, digits, '_' or '-', "
                          f"got {name!r}")
    return name


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, sample shape (batch excluded) and dtype.

    ``dtype="int32"`` (token ids) is checked to hold integers; backends receive every input as
    float32, which represents integers exactly up to 2**24.
    """

    name: str
    shape: Shape
    dtype: str = "float32"


@dataclass(frozen=True)
class Node:
    """A layer placed in a model: its unique name, what it reads and the shapes it sees.

    ``inputs`` are the keys of the values the node reads (model inputs or other nodes'
    outputs). ``input_shape`` is one shape, or a tuple of shapes for a layer whose
    :attr:`~polyframe.Layer.arity` allows several inputs; ``output_shape`` likewise for a
    layer with several outputs.
    """

    name: str
    layer: Layer
    input_shape: LayerShape
    output_shape: LayerShape
    params: tuple[ParamSpec, ...]
    inputs: tuple[str, ...] = ()

    def param_key(self, param: str) -> str:
        """The model-wide key of one of this node's parameters, e.g. ``"dense_1.kernel"``."""
        return f"{self.name}.{param}"

    @property
    def multiple_inputs(self) -> bool:
        """Whether the node receives a list of values (its layer may take several)."""
        return self.layer.arity[1] > 1

    @property
    def output_keys(self) -> tuple[str, ...]:
        """Keys of the node's outputs: its name, then ``name:1``, ``name:2``... for more."""
        return output_keys(self.name, self.layer.output_count())


def output_keys(name: str, count: int) -> tuple[str, ...]:
    return (name, *(f"{name}:{i}" for i in range(1, count)))


class SymbolicTensor:
    """A placeholder for a value in a graph under construction: a shape and where it comes from."""

    __slots__ = ("shape", "source", "index")

    def __init__(self, shape: Shape, source: InputSpec | _Call, index: int = 0) -> None:
        self.shape, self.source, self.index = shape, source, index

    def __repr__(self) -> str:
        origin = (f"Input {self.source.name!r}" if isinstance(self.source, InputSpec)
                  else type(self.source.layer).__name__)
        return f"SymbolicTensor(shape={(None, *self.shape)}, from {origin})"


class _Call:
    """One application of a layer to symbolic tensors, with the shapes it sees and gives."""

    __slots__ = ("layer", "inputs", "input_shape", "output_shape")

    def __init__(self, layer: Layer, inputs: tuple[SymbolicTensor, ...], input_shape: LayerShape,
                 output_shape: LayerShape) -> None:
        self.layer, self.inputs = layer, inputs
        self.input_shape, self.output_shape = input_shape, output_shape


def _check_shape(shape: Iterable[int], what: str) -> Shape:
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ConfigError(f"{what} must be a non-empty tuple of positive ints (batch excluded), "
                          f"got {shape!r}")
    return tuple(check_int(d, f"each {what} dimension") for d in shape)


def Input(shape: Iterable[int], *, name: str | None = None, dtype: str = "float32") -> SymbolicTensor:
    """A model input of sample shape ``shape`` (batch excluded), for the functional API."""
    if dtype not in INPUT_DTYPES:
        raise ConfigError(f"Input dtype must be one of {', '.join(INPUT_DTYPES)}, got {dtype!r}")
    if name is not None:
        _check_name(name, "an Input")
    spec = InputSpec(name or "", _check_shape(shape, "Input shape"), dtype)
    return SymbolicTensor(spec.shape, spec)


def call_layer(layer: Layer, inputs: tuple[Any, ...]) -> SymbolicTensor | tuple[SymbolicTensor, ...]:
    """Apply ``layer`` to symbolic tensors: check the arity and infer the output shape(s)."""
    label = f"layer {layer.name or layer.kind!r} ({type(layer).__name__})"
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])
    for value in inputs:
        if not isinstance(value, SymbolicTensor):
            raise ConfigError(
                f"{label} was called on {type(value).__name__}; in the functional API call layers "
                "on polyframe.Input(...) or on other layers' outputs, and train with a Trainer"
            )
    low, high = layer.arity
    if not low <= len(inputs) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise ConfigError(f"{label} takes {wanted} input(s), got {len(inputs)}")
    shapes = tuple(t.shape for t in inputs) if high > 1 else inputs[0].shape
    out = layer.output_shape(shapes)
    call = _Call(layer, tuple(inputs), shapes, out)
    count = layer.output_count()
    if count == 1:
        return SymbolicTensor(out, call)
    return tuple(SymbolicTensor(shape, call, i) for i, shape in enumerate(out))


def _as_tensors(value: Any, what: str) -> tuple[SymbolicTensor, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise ConfigError(f"Model needs at least one {what}")
    for v in values:
        if not isinstance(v, SymbolicTensor):
            raise ConfigError(f"Model {what}s must be symbolic tensors (from polyframe.Input or a "
                              f"layer call), got {type(v).__name__}")
    return values


def _unique(kind: str, taken: set[str]) -> str:
    if kind not in taken:
        return kind
    index = 1
    while f"{kind}_{index}" in taken:
        index += 1
    return f"{kind}_{index}"


class Model:
    """A graph of layers from ``inputs`` to ``outputs``, built with the functional API::

        image = Input((28, 28, 1), name="image")
        h = Conv2D(8, 3, padding="same", activation="relu")(image)
        h = Add()([h, Conv2D(8, 1)(image)])
        logits = Dense(10)(Flatten()(h))
        model = Model(image, logits)

    ``inputs`` and ``outputs`` are one symbolic tensor or a list of them. A layer object may be
    called once (its parameters belong to that call); build a new layer for each use.
    """

    def __init__(self, inputs: Any, outputs: Any) -> None:
        input_tensors = _as_tensors(inputs, "input")
        output_tensors = _as_tensors(outputs, "output")
        self._build(input_tensors, output_tensors)

    # -- construction ------------------------------------------------------------------------
    def _build(self, input_tensors: tuple[SymbolicTensor, ...],
               output_tensors: tuple[SymbolicTensor, ...]) -> None:
        specs: list[InputSpec] = []
        for t in input_tensors:
            if not isinstance(t.source, InputSpec):
                raise ConfigError("Model inputs must come straight from polyframe.Input(...), "
                                  f"got the output of {type(t.source.layer).__name__}")
            if any(t.source is s for s in specs):
                raise ConfigError("the same Input is listed twice in Model inputs")
            specs.append(t.source)
        if len({id(t) for t in output_tensors}) != len(output_tensors):
            raise ConfigError("the same tensor is listed twice in Model outputs; list each output once")
        calls = self._ordered_calls(output_tensors, specs)
        used = {id(t.source) for call in calls for t in call.inputs} | {id(t.source) for t in output_tensors}
        unused = [spec.name or f"#{i + 1} of shape {spec.shape}" for i, spec in enumerate(specs)
                  if id(spec) not in used]
        if unused:
            raise ConfigError(f"Model input(s) {unused} feed no output; remove them from the inputs")
        taken: set[str] = set()
        input_names: dict[int, str] = {}
        for spec in specs:
            name = spec.name or _unique("input", taken)
            if name in taken:
                raise ConfigError(f"two inputs are named {name!r}; input names must be unique")
            taken.add(name)
            input_names[id(spec)] = name
        self.inputs: tuple[InputSpec, ...] = tuple(
            InputSpec(input_names[id(s)], s.shape, s.dtype) for s in specs)
        call_names: dict[int, str] = {}

        def key(t: SymbolicTensor) -> str:
            if isinstance(t.source, InputSpec):
                return input_names[id(t.source)]
            return output_keys(call_names[id(t.source)], t.source.layer.output_count())[t.index]

        nodes = []
        for call in calls:
            layer = call.layer
            name = _check_name(layer.name, "a layer") if layer.name is not None else _unique(layer.kind, taken)
            if name in taken:
                raise ConfigError(f"two layers or inputs are named {name!r}; names must be unique")
            taken.add(name)
            call_names[id(call)] = name
            nodes.append(Node(name, layer, call.input_shape, call.output_shape,
                              layer.params(call.input_shape), tuple(key(t) for t in call.inputs)))
        if not nodes:
            raise ConfigError("the model has no layers between its inputs and outputs")
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.outputs: tuple[str, ...] = tuple(key(t) for t in output_tensors)
        self.output_shapes: tuple[Shape, ...] = tuple(t.shape for t in output_tensors)

    @staticmethod
    def _ordered_calls(outputs: tuple[SymbolicTensor, ...], inputs: list[InputSpec]) -> list[_Call]:
        """Every call the outputs depend on, each after the calls it reads (depth-first)."""
        order: list[_Call] = []
        state: dict[int, str] = {}
        layers_seen: dict[int, _Call] = {}

        def visit(t: SymbolicTensor) -> None:
            source = t.source
            if isinstance(source, InputSpec):
                if not any(source is s for s in inputs):
                    raise ConfigError(
                        f"an output depends on Input {source.name or '(unnamed)'!r} "
                        f"of shape {source.shape}, which is not in the model's inputs; add it"
                    )
                return
            mark = state.get(id(source))
            if mark == "done":
                return
            if mark == "active":  # pragma: no cover - symbolic tensors cannot form cycles
                raise ConfigError("the graph has a cycle")
            previous = layers_seen.get(id(source.layer))
            if previous is not None and previous is not source and source.layer.params(
                    source.input_shape):
                raise ConfigError(
                    f"layer {source.layer.name or source.layer.kind!r} is called twice; polyframe "
                    "does not share weights between calls, so create a separate layer for each"
                )
            layers_seen[id(source.layer)] = source
            state[id(source)] = "active"
            for parent in source.inputs:
                visit(parent)
            state[id(source)] = "done"
            order.append(source)

        for t in outputs:
            visit(t)
        return order

    # -- shapes --------------------------------------------------------------------------------
    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(node.layer for node in self.nodes)

    @property
    def input_shapes(self) -> tuple[Shape, ...]:
        return tuple(spec.shape for spec in self.inputs)

    @property
    def input_shape(self) -> Shape:
        """The sample shape of the only input (an error for a multi-input model)."""
        if len(self.inputs) != 1:
            raise ConfigError(f"the model has {len(self.inputs)} inputs; use input_shapes")
        return self.inputs[0].shape

    @property
    def output_shape(self) -> Shape:
        """The sample shape of the only output (an error for a multi-output model)."""
        if len(self.outputs) != 1:
            raise ConfigError(f"the model has {len(self.outputs)} outputs; use output_shapes")
        return self.output_shapes[0]

    def consumers(self, key: str) -> tuple[Node, ...]:
        """The nodes that read the value ``key``."""
        return tuple(node for node in self.nodes if key in node.inputs)

    # -- weights -------------------------------------------------------------------------------
    def param_specs(self) -> list[tuple[str, ParamSpec]]:
        """Every parameter as ``(key, spec)``, in model order."""
        return [(node.param_key(p.name), p) for node in self.nodes for p in node.params]

    def count_params(self) -> int:
        return sum(int(np.prod(spec.shape)) for _, spec in self.param_specs())

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Canonical initial weights for ``seed``: identical bits on every backend."""
        rng = generator(seed, "init")
        try:
            return {key: initialize(spec.initializer, rng, spec.shape) for key, spec in self.param_specs()}
        except MemoryError:
            count = self.count_params()
            raise ConfigError(f"the model has {count:,} parameters ({count * 4 / 2**30:,.1f} GiB as "
                              "float32), more than this machine can allocate; make it smaller") from None

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

    # -- description ---------------------------------------------------------------------------
    def summary(self) -> str:
        """A table of layers, output shapes, parameter counts and (for graphs) inputs."""
        graph = not isinstance(self, Sequential)
        rows = [("layer", "output shape", "params", *(("reads",) if graph else ()))]
        for spec in self.inputs if graph else ():
            rows.append((f"{spec.name} (Input)", str((None, *spec.shape)), "0", ""))
        for node in self.nodes:
            count = sum(int(np.prod(p.shape)) for p in node.params)
            shape = node.output_shape
            shown = (", ".join(str((None, *s)) for s in shape) if node.layer.output_count() > 1
                     else str((None, *shape)))
            rows.append((f"{node.name} ({type(node.layer).__name__})", shown, str(count),
                         *((", ".join(node.inputs),) if graph else ())))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"total params: {self.count_params():,}")
        return "\n".join(lines)

    def to_config(self) -> dict[str, Any]:
        """The architecture as JSON-ready data; :meth:`from_config` rebuilds it exactly."""
        from .config import model_to_config

        return model_to_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """A model from :meth:`to_config`'s data (a dict, or a JSON string)."""
        from .config import model_from_config

        return model_from_config(config)

    def __repr__(self) -> str:
        return (f"Model(inputs={[s.name for s in self.inputs]}, outputs={list(self.outputs)}, "
                f"layers={len(self.nodes)})")


class Sequential(Model):
    """A linear stack of layers applied to inputs of ``input_shape`` (batch excluded).

    Shapes are inferred on construction, before any framework is touched::

        model = Sequential([Conv2D(32, 3, activation="relu"), Flatten(), Dense(10)],
                           input_shape=(28, 28, 1))
    """

    INPUT_NAME = "input"

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
            if layer.arity[0] > 1:
                raise ConfigError(f"{type(layer).__name__} joins {layer.arity[0]} or more tensors, "
                                  "which a Sequential stack cannot give it; use the functional API "
                                  "(polyframe.Input / polyframe.Model)")
            if layer.output_count() != 1:
                raise ConfigError(f"layer {layer.name or layer.kind!r} returns "
                                  f"{layer.output_count()} tensors; use the functional API "
                                  "(polyframe.Input / polyframe.Model) for it")
        shape = _check_shape(input_shape, "input_shape")
        self.inputs = (InputSpec(self.INPUT_NAME, shape),)
        self.nodes = tuple(self._place(layers, shape))
        self.outputs = (self.nodes[-1].name,)
        self.output_shapes = (self.nodes[-1].output_shape,)

    def _place(self, layers: Sequence[Layer], shape: Shape) -> Iterator[Node]:
        taken = {self.INPUT_NAME}
        previous = self.INPUT_NAME
        placed: set[int] = set()
        for layer in layers:
            given = (shape,) if layer.arity[1] > 1 else shape
            if id(layer) in placed and layer.params(given):
                raise ConfigError(f"the same {type(layer).__name__} object appears twice; polyframe "
                                  "does not share weights between layers, so create one per position")
            placed.add(id(layer))
            name = _check_name(layer.name, "a layer") if layer.name is not None else _unique(layer.kind, taken)
            if name in taken and layer.name:
                raise ConfigError(f"two layers are named {name!r}; layer names must be unique")
            taken.add(name)
            out = layer.output_shape(given)
            yield Node(name, layer, given, out, layer.params(given), (previous,))
            shape, previous = out, name

    def __repr__(self) -> str:
        return f"Sequential({list(self.layers)!r}, input_shape={self.input_shape})"
