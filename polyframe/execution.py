"""The graph walk and loss sum every backend runs, written once over any framework's tensors.

A backend compiles one callable per :class:`~polyframe.model.Node`; :class:`GraphProgram` feeds
each the values it reads and stores what it returns, so the same code executes a Sequential
stack or a multi-input, multi-output graph in torch, TensorFlow or JAX (inside ``jit`` /
``tf.function`` too: it is plain Python over the traced values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from .model import Model, Node

__all__ = ["GraphProgram", "as_tuple", "single_or_tuple", "weighted_sum"]

F = TypeVar("F")
T = TypeVar("T")


def as_tuple(value: Any) -> tuple[Any, ...]:
    """A tuple of per-input (or per-output) values from one value or a list/tuple of them."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def single_or_tuple(values: Sequence[T]) -> T | tuple[T, ...]:
    """The only value, or all of them as a tuple (how steps hand back outputs)."""
    return values[0] if len(values) == 1 else tuple(values)


def weighted_sum(terms: Sequence[T], weights: Sequence[float] | None) -> T:
    """``sum(w_i * t_i)`` (``w_i = 1`` when no weights): the total loss of a multi-output model."""
    if weights is None:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total
    total = terms[0] * weights[0]
    for term, weight in zip(terms[1:], weights[1:]):
        total = total + term * weight
    return total


class GraphProgram(Generic[F]):
    """A model's nodes paired with one compiled callable each, run in node order."""

    def __init__(self, model: Model, compiled: Sequence[F]) -> None:
        self.input_names = tuple(spec.name for spec in model.inputs)
        self.output_keys = model.outputs
        self.steps: tuple[tuple[Node, F], ...] = tuple(zip(model.nodes, compiled))

    def run(self, inputs: Sequence[Any], invoke: Callable[[F, Any], Any]) -> tuple[Any, ...]:
        """The model's outputs for ``inputs`` (one per model input, in order).

        ``invoke(fn, value)`` applies a node's callable: ``value`` is one tensor, or a list for a
        layer that takes several inputs. A layer with several outputs returns a tuple.
        """
        values = dict(zip(self.input_names, inputs))
        for node, fn in self.steps:
            args = [values[key] for key in node.inputs]
            out = invoke(fn, args if node.multiple_inputs else args[0])
            keys = node.output_keys
            if len(keys) == 1:
                values[keys[0]] = out
            else:
                values.update(zip(keys, out))
        return tuple(values[key] for key in self.output_keys)
