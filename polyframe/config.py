"""Architecture serialization: a model as JSON-ready data, and back.

The config holds each layer's class and its spec fields, the graph's wiring and the inputs; no
weights. polyframe's own layers are named by class (``"Dense"``); any other
:class:`~polyframe.Layer` subclass by ``"module:QualName"``, imported on load. Rebuilding gives
the same node names, shapes and parameter keys, so ``from_config(to_config(m)).to_config()``
equals ``to_config(m)``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import ConfigError
from .layers import Layer
from .model import Input, Model, Sequential, SymbolicTensor

__all__ = ["model_to_config", "model_from_config", "layer_to_config", "layer_from_config"]

FORMAT = "polyframe.model"
VERSION = 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_restored(v) for v in value)
    return value


def _class_name(cls: type) -> str:
    if cls.__module__.split(".")[0] == "polyframe":
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def _all_layer_classes() -> dict[str, type[Layer]]:
    found: dict[str, type[Layer]] = {}
    pending = [Layer]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if not sub.__name__.startswith("_"):
                found.setdefault(_class_name(sub), sub)
    return found


def _layer_class(name: Any) -> type[Layer]:
    """The loaded Layer subclass named ``name``. Configs never import modules: a third-party
    layer's package must be imported before its config is read."""
    if not isinstance(name, str):
        raise ConfigError(f"a layer's 'class' must be a string, got {name!r}")
    known = _all_layer_classes()
    if name in known:
        return known[name]
    if ":" in name:
        raise ConfigError(f"layer class {name!r} is not loaded; import the package that defines "
                          "it before reading the config (configs never import modules)")
    raise ConfigError(f"unknown layer class {name!r}; polyframe knows "
                      f"{', '.join(sorted(n for n in known if ':' not in n))}")


def layer_to_config(layer: Layer) -> dict[str, Any]:
    """``{"class": ..., "config": {field: value}}`` for one layer spec."""
    fields = {f.name: _jsonable(getattr(layer, f.name)) for f in dataclasses.fields(layer)}
    return {"class": _class_name(type(layer)), "config": fields}


def layer_from_config(data: Any) -> Layer:
    """The layer spec :func:`layer_to_config` described (its checks run again)."""
    if not isinstance(data, dict) or "class" not in data:
        raise ConfigError(f"a layer config must be a dict with 'class' and 'config', got {data!r}")
    cls = _layer_class(data["class"])
    fields = data.get("config", {})
    if not isinstance(fields, dict):
        raise ConfigError(f"the config of layer class {data['class']!r} must be a dict")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"layer class {data['class']!r} has no option(s) {', '.join(unknown)}; "
                          f"its options are {', '.join(sorted(known))}")
    try:
        return cls(**{k: _restored(v) for k, v in fields.items()})
    except TypeError as error:
        raise ConfigError(f"layer class {data['class']!r}: {error}") from None


def model_to_config(model: Model) -> dict[str, Any]:
    """JSON-ready data describing ``model``'s architecture."""
    config: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if isinstance(model, Sequential):
        config.update(kind="Sequential", input_shape=list(model.input_shape),
                      layers=[layer_to_config(node.layer) for node in model.nodes])
        return config
    config.update(
        kind="Model",
        inputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs],
        layers=[{**layer_to_config(node.layer), "node": node.name, "inputs": list(node.inputs)}
                for node in model.nodes],
        outputs=list(model.outputs),
    )
    return config


def _field(config: dict[str, Any], name: str, kind: type) -> Any:
    if name not in config:
        raise ConfigError(f"the model config has no {name!r} entry; is it from Model.to_config()?")
    value = config[name]
    if not isinstance(value, kind):
        raise ConfigError(f"the model config's {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def model_from_config(config: dict[str, Any] | str) -> Model:
    """Rebuild a model from :func:`model_to_config`'s data or its JSON text."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as error:
            raise ConfigError(f"the model config is not valid JSON: {error}") from None
        except RecursionError:
            raise ConfigError("the model config is nested too deeply to be a model config") from None
    try:
        return _model_from_config(config)
    except RecursionError:
        raise ConfigError("the model config is nested too deeply to be a model config") from None


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} in a model config must be a list of names (strings), got {value!r}")
    return value


def _shape(value: Any, what: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{what} in a model config must be a list of ints, got {value!r}")
    return tuple(value)


def _model_from_config(config: Any) -> Model:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ConfigError("this is not a polyframe model config (expected 'format': "
                          f"{FORMAT!r}); create one with model.to_config()")
    if config.get("version") != VERSION:
        raise ConfigError(f"model config version {config.get('version')!r} is not supported; "
                          f"this polyframe reads version {VERSION}")
    layers = [layer_from_config(entry) for entry in _field(config, "layers", list)]
    kind = config.get("kind")
    if kind == "Sequential":
        return Sequential(layers, input_shape=_shape(_field(config, "input_shape", list), "input_shape"))
    if kind != "Model":
        raise ConfigError(f"the model config's kind must be 'Sequential' or 'Model', got {kind!r}")
    values: dict[str, SymbolicTensor] = {}
    for spec in _field(config, "inputs", list):
        if not isinstance(spec, dict) or not {"name", "shape"} <= set(spec):
            raise ConfigError(f"each input in a model config needs 'name' and 'shape', got {spec!r}")
        values[spec["name"]] = Input(_shape(spec["shape"], "an input's shape"), name=spec["name"],
                                     dtype=spec.get("dtype", "float32"))
    inputs = list(values.values())
    for entry, layer in zip(config["layers"], layers):
        node = entry.get("node")
        if not isinstance(node, str):
            raise ConfigError(f"each layer of a model config needs its 'node' name (a string), got {node!r}")
        reads = _names(entry.get("inputs"), f"layer {node!r}'s inputs")
        if not reads:
            raise ConfigError(f"layer {node!r} in the model config lists no inputs")
        missing = [k for k in reads if k not in values]
        if missing:
            raise ConfigError(f"layer {entry.get('node')!r} reads {missing}, which no earlier "
                              "input or layer in the config produces")
        out = layer(*(values[k] for k in reads))
        produced = out if isinstance(out, tuple) else (out,)
        for i, tensor in enumerate(produced):
            values[node if i == 0 else f"{node}:{i}"] = tensor
    outputs = _names(_field(config, "outputs", list), "outputs")
    unknown = [k for k in outputs if k not in values]
    if unknown:
        raise ConfigError(f"the model config's outputs {unknown} are produced by no layer")
    model = Model(inputs, [values[k] for k in outputs])
    names = [entry.get("node") for entry in config["layers"]]
    if [node.name for node in model.nodes] != names:
        raise ConfigError("the rebuilt model names its layers differently from the config "
                          f"({[n.name for n in model.nodes]} vs {names}); the config was edited "
                          "inconsistently")
    return model

