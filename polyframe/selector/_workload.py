"""What is to be trained: a :class:`Workload`, from a polyframe model or from plain numbers.

FLOPs count a multiply-add as two; a training step costs about three forward passes (forward,
plus a backward pass of about twice the forward's work).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .._checks import check_int
from ..errors import ConfigError
from ..layers import Activation, Conv2D, Dense, Dropout, MaxPool2D
from ..losses import Loss
from ..model import Model, Node
from ..optimizers import SGD, Adam, Optimizer
from ._rules import FAMILIES, PARALLELISM, PRECISIONS, Rules

__all__ = ["Workload", "workload_from_model", "forward_flops", "memory_estimate", "TRAIN_FLOPS_FACTOR"]

TRAIN_FLOPS_FACTOR = 3
"""A training step's FLOPs per sample, in forward passes."""


@dataclass(frozen=True)
class Workload:
    """A training workload: model family and size, batch, data size, precision, parallelism.

    ``flops_per_sample`` is the forward pass; ``activations_per_sample`` (values kept for the
    backward pass) and ``input_values_per_sample`` size the memory estimate when known.
    ``model_file``/``data``/``data_dir`` let a trial run it; ``signature`` finds cached results.
    """

    family: str
    params: int
    flops_per_sample: int
    batch_size: int
    dataset_size: int | None = None
    precision: str = "float32"
    parallel: str = "single"
    layers: tuple[str, ...] = ()
    activations_per_sample: int | None = None
    input_values_per_sample: int | None = None
    optimizer: str = "adam"
    name: str = "workload"
    model_file: str | None = None
    data: str | None = None
    data_dir: str | None = None
    signature: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"model family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.parallel not in PARALLELISM:
            raise ConfigError(f"parallel must be 'single' (one device) or 'data' (data-parallel), "
                              f"got {self.parallel!r}")
        check_int(self.params, "parameter count", minimum=0)
        check_int(self.flops_per_sample, "FLOPs per sample", minimum=0)
        check_int(self.batch_size, "batch size")
        if self.dataset_size is not None:
            check_int(self.dataset_size, "dataset size")

    @property
    def train_flops_per_step(self) -> int:
        return TRAIN_FLOPS_FACTOR * self.flops_per_sample * self.batch_size

    def describe(self) -> str:
        data = f"{self.dataset_size:,} samples" if self.dataset_size else "dataset size unknown"
        return (f"{self.family}, {self.params:,} parameters, {_si(self.flops_per_sample)}FLOPs/sample "
                f"forward ({_si(self.train_flops_per_step)}FLOPs per training step), batch {self.batch_size}, "
                f"{data}, {self.precision}, "
                f"{'one device' if self.parallel == 'single' else 'data-parallel'}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers": list(self.layers), "train_flops_per_step": self.train_flops_per_step}


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:g} "


_CONV_KINDS = {"conv2d", "conv1d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "global_max_pool2d"}
_RECURRENT_KINDS = {"lstm": 4, "gru": 3}
"""Recurrent layer kinds and their gate counts."""


def _size(shape: tuple) -> int:
    """Values in one sample of a node's input or output (summed over several tensors)."""
    if shape and isinstance(shape[0], tuple):
        return sum(math.prod(part) for part in shape)
    return math.prod(shape)


def _node_flops(node: Node) -> int:
    """One sample's forward FLOPs of one layer, from its kind and shapes (unknown kinds: 0)."""
    layer, kind = node.layer, node.layer.kind
    out, inp = _size(node.output_shape), _size(node.input_shape)
    act = out if getattr(layer, "activation", None) not in (None, "linear") else 0
    bias = out if getattr(layer, "use_bias", False) else 0
    if isinstance(layer, Dense):
        return 2 * node.input_shape[0] * layer.units + (layer.units if layer.use_bias else 0) + act
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel_size  # type: ignore[misc]
        return 2 * kh * kw * (node.input_shape[-1] // layer.groups) * out + bias + act
    if kind == "conv1d":
        return 2 * layer.kernel_size * node.input_shape[-1] * out + bias + act  # type: ignore[attr-defined]
    if isinstance(layer, MaxPool2D) or kind == "avg_pool2d":
        return math.prod(layer.pool_size) * out  # type: ignore[attr-defined]
    if kind in ("global_avg_pool2d", "global_max_pool2d"):
        return inp
    if kind == "batch_norm":
        return 4 * out
    if kind in _RECURRENT_KINDS:
        steps, features = node.input_shape
        units, gates = layer.units, _RECURRENT_KINDS[kind]  # type: ignore[attr-defined]
        return steps * (2 * (features + units) * gates * units + gates * units + 10 * units)
    if kind == "multi_head_attention":
        shapes = node.input_shape
        (length, width), (keys, value_width) = shapes[0], shapes[1] if len(shapes) > 1 else shapes[0]
        return _attention_flops(length, keys, width, value_width, layer.num_heads,  # type: ignore[attr-defined]
                                layer.key_dim, layer.value_dim)  # type: ignore[attr-defined]
    if kind == "transformer_encoder_block":
        length, width = node.input_shape[0] if isinstance(node.input_shape[0], tuple) else node.input_shape
        heads, key_dim, ff = layer.num_heads, layer.key_dim, layer.ff_dim  # type: ignore[attr-defined]
        return (_attention_flops(length, length, width, width, heads, key_dim, key_dim)
                + 4 * length * width * ff + 10 * length * width)
    if kind == "layer_norm":
        return 5 * out
    if isinstance(layer, (Activation, Dropout)):
        return out
    return 0  # Flatten, Reshape, Embedding (a lookup) and shape-only layers


def _attention_flops(length: int, keys: int, width: int, value_width: int, heads: int,
                     key_dim: int, value_dim: int) -> int:
    """Projections of queries, keys, values and the output, scores, softmax and the weighted sum."""
    projections = 2 * heads * (length * width * key_dim + keys * value_width * (key_dim + value_dim)
                               + length * value_dim * width)
    return projections + 2 * heads * length * keys * (key_dim + value_dim) + 5 * heads * length * keys


def forward_flops(model: Model) -> int:
    """FLOPs of one sample's forward pass (multiply-add = 2)."""
    return sum(_node_flops(node) for node in model.nodes)


def _family(model: Model) -> str:
    kinds = {n.layer.kind for n in model.nodes}
    if kinds & {"multi_head_attention", "transformer_encoder_block"}:
        return "Transformer"
    return "RNN" if kinds & set(_RECURRENT_KINDS) else "CNN" if kinds & _CONV_KINDS else "MLP"


def _optimizer_kind(optimizer: Optimizer) -> str:
    if isinstance(optimizer, Adam):
        return "adam"
    if isinstance(optimizer, SGD):
        return "sgd_momentum" if optimizer.momentum else "sgd"
    return type(optimizer).__name__.lower()


def workload_from_model(model: Model, loss: Loss, optimizer: Optimizer, *, batch_size: int,
                        dataset_size: int | None = None, precision: str = "float32",
                        parallel: str = "single", name: str = "model", model_file: str | None = None,
                        data: str | None = None, data_dir: str | None = None) -> Workload:
    """Describe training ``model`` with ``loss`` and ``optimizer`` at ``batch_size``."""
    from ..bench.cache import model_signature

    return Workload(
        family=_family(model), params=model.count_params(), flops_per_sample=forward_flops(model),
        batch_size=batch_size, dataset_size=dataset_size, precision=precision, parallel=parallel,
        layers=tuple(dict.fromkeys(n.layer.kind for n in model.nodes)),
        activations_per_sample=sum(_size(n.output_shape) for n in model.nodes),
        input_values_per_sample=sum(math.prod(shape) for shape in model.input_shapes), optimizer=_optimizer_kind(optimizer),
        name=name, model_file=model_file, data=data, data_dir=data_dir,
        signature=model_signature(model, loss, optimizer))


def memory_estimate(workload: Workload, backend: str, rules: Rules) -> dict[str, float]:
    """Training memory in MiB by part (``state``, ``activations``, ``dataset``, ``overhead``);
    parts that cannot be estimated from the workload are 0. See the rules' ``memory`` section."""
    mem = rules.memory
    value = mem["bytes_per_value"] / 2**20
    slots = mem["optimizer_slots"].get(workload.optimizer, mem["optimizer_slots"]["default"])
    state = workload.params * (2 + slots) * value
    activations = (workload.batch_size * workload.activations_per_sample * mem["activation_copies"] * value
                   if workload.activations_per_sample else 0.0)
    dataset = (workload.dataset_size * workload.input_values_per_sample * mem["dataset_copies"] * value
               if workload.dataset_size and workload.input_values_per_sample else 0.0)
    overhead = mem["framework_overhead_mib"].get(backend, mem["framework_overhead_mib"]["default"])
    return {"state": state, "activations": activations, "dataset": dataset, "overhead": float(overhead)}
