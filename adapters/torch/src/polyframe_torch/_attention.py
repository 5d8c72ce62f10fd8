"""LayerNorm, Embedding, MultiHeadAttention and TransformerEncoderBlock as torch modules.

Sequences stay NCL between layers, as everywhere in this adapter: each module here reads NCL
(``(batch, features, length)``), works in ``(batch, length, features)`` and hands back NCL, so
its neighbours (Conv1D, LSTM, Flatten, softmax over axis 1...) need no special case; a
Transformer block permutes once on the way in and once on the way out. Key padding masks are
rank 2 ``(batch, keys)`` and arrive unpermuted.

Projections and feed-forward layers are ``nn.Linear`` (canonical kernels transposed, as for
Dense); LayerNorm is ``nn.LayerNorm`` (biased variance: polyframe's formula). Attention is
written out rather than ``nn.MultiheadAttention`` / ``F.scaled_dot_product_attention``: torch's
packed ``in_proj_weight`` needs equal head sizes, its ``key_padding_mask`` marks padding with
``True`` (the opposite of polyframe's), and a query with no allowed key gives NaN, where
polyframe defines zero attention weights.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polyframe.activations import CHANNEL_WISE
from polyframe.attention import MultiHeadAttention, TransformerEncoderBlock, input_shapes
from polyframe.layers import Embedding, LayerNorm
from polyframe.model import Node

__all__ = ["build_attention_layer", "ATTENTION_LAYERS"]

ATTENTION_LAYERS = (LayerNorm, Embedding, MultiHeadAttention, TransformerEncoderBlock)

Registered = dict[str, tuple[torch.Tensor, str, None]]
"""Canonical key -> (tensor, layout kind, rows), as the compiler's parameter table stores it."""


def _inputs(x: Any) -> list[torch.Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _channel_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1) if x.dim() >= 3 else x


def _channel_first(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1) if x.dim() >= 3 else x


class _LayerNorm(nn.Module):
    """``nn.LayerNorm`` over the canonical last axis: the channels, axis 1 here."""

    def __init__(self, features: int, epsilon: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features, eps=epsilon)

    def forward(self, x: Any) -> torch.Tensor:
        return _channel_first(self.norm(_channel_last(_inputs(x)[0])))


class _Embedding(nn.Module):
    """``nn.Embedding`` on ids rounded from float32; the ``(N, L, D)`` result goes out as NCL."""

    def __init__(self, layer: Embedding) -> None:
        super().__init__()
        self.embedding = nn.Embedding(layer.input_dim, layer.output_dim)

    def forward(self, x: Any) -> torch.Tensor:
        ids = torch.round(_inputs(x)[0]).long()
        return self.embedding(ids).movedim(-1, 1)


class _Attention(nn.Module):
    """Multi-head attention over ``(batch, length, features)`` tensors."""

    def __init__(self, layer: MultiHeadAttention, query_features: int, value_features: int) -> None:
        super().__init__()
        self.layer = layer
        keys, values = layer.num_heads * layer.key_dim, layer.num_heads * layer.value_dim  # type: ignore[operator]
        bias = layer.use_bias
        self.query = nn.Linear(query_features, keys, bias=bias)
        self.key = nn.Linear(value_features, keys, bias=bias)
        self.value = nn.Linear(value_features, values, bias=bias)
        self.output = nn.Linear(values, query_features, bias=bias)

    def registered(self, key: Any) -> Registered:
        table: Registered = {}
        for part in ("query", "key", "value", "output"):
            linear = getattr(self, part)
            table[key(f"{part}_kernel")] = (linear.weight, "dense", None)
            if linear.bias is not None:
                table[key(f"{part}_bias")] = (linear.bias, "bias", None)
        return table

    def forward(self, query: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        layer = self.layer
        n, length, keys, heads = query.shape[0], query.shape[1], value.shape[1], layer.num_heads
        q = self.query(query).view(n, length, heads, layer.key_dim).transpose(1, 2)
        k = self.key(value).view(n, keys, heads, layer.key_dim).transpose(1, 2)
        v = self.value(value).view(n, keys, heads, layer.value_dim).transpose(1, 2)  # type: ignore[arg-type]
        scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(layer.key_dim))
        allowed = torch.ones((1, 1, length, keys), dtype=torch.bool)
        if layer.causal:
            allowed = allowed & torch.from_numpy(np.tril(np.ones((length, keys), dtype=bool)))
        if mask is not None:
            allowed = allowed & (mask != 0)[:, None, None, :]
        row_max = scores.masked_fill(~allowed, float("-inf")).amax(dim=-1, keepdim=True).detach()
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        e = torch.where(allowed, torch.exp(torch.where(allowed, scores, row_max) - row_max),
                        torch.zeros_like(scores))
        total = e.sum(dim=-1, keepdim=True)
        p = e / torch.where(total > 0, total, torch.ones_like(total))
        p = F.dropout(p, layer.dropout, self.training)
        out = (p @ v).transpose(1, 2).reshape(n, length, heads * layer.value_dim)  # type: ignore[operator]
        return self.output(out)


class _MultiHeadAttention(nn.Module):
    def __init__(self, node: Node, layer: MultiHeadAttention) -> None:
        super().__init__()
        shapes = input_shapes(node.input_shape)
        self.attention = _Attention(layer, shapes[0][-1], shapes[min(1, len(shapes) - 1)][-1])

    def forward(self, x: Any) -> torch.Tensor:
        inputs = _inputs(x)
        query = _channel_last(inputs[0])
        value = _channel_last(inputs[1]) if len(inputs) > 1 else query
        mask = inputs[2] if len(inputs) > 2 else None
        return _channel_first(self.attention(query, value, mask))


def _position_wise(name: str) -> nn.Module:
    """The activation for ``(batch, length, features)`` tensors (softmax over the last axis)."""
    from ._executable import _ACTIVATIONS

    if name == "linear":
        return nn.Identity()
    if name in CHANNEL_WISE:
        return nn.Softmax(dim=-1) if name == "softmax" else nn.LogSoftmax(dim=-1)
    return _ACTIVATIONS[name]()


class _TransformerEncoderBlock(nn.Module):
    def __init__(self, node: Node, layer: TransformerEncoderBlock) -> None:
        super().__init__()
        features = input_shapes(node.input_shape)[0][-1]
        self.layer = layer
        self.attention = _Attention(layer.attention, features, features)
        self.norm_1 = nn.LayerNorm(features, eps=layer.epsilon)
        self.norm_2 = nn.LayerNorm(features, eps=layer.epsilon)
        self.ff_1 = nn.Linear(features, layer.ff_dim)
        self.ff_2 = nn.Linear(layer.ff_dim, features)
        self.activation = _position_wise(layer.activation)

    def registered(self, key: Any) -> Registered:
        table = self.attention.registered(lambda part: key(f"attention.{part}"))
        for name in ("norm_1", "ff_1", "ff_2", "norm_2"):
            module = getattr(self, name)
            dense = isinstance(module, nn.Linear)
            table[key(f"{name}.{'kernel' if dense else 'gamma'}")] = (
                module.weight, "dense" if dense else "vector", None)
            table[key(f"{name}.{'bias' if dense else 'beta'}")] = (module.bias, "bias", None)
        return table

    def forward(self, x: Any) -> torch.Tensor:
        inputs = _inputs(x)
        h, mask = _channel_last(inputs[0]), (inputs[1] if len(inputs) > 1 else None)
        rate, training = self.layer.dropout, self.training

        def attend(t: torch.Tensor) -> torch.Tensor:
            return F.dropout(self.attention(t, t, mask), rate, training)

        def feed_forward(t: torch.Tensor) -> torch.Tensor:
            return F.dropout(self.ff_2(self.activation(self.ff_1(t))), rate, training)

        if self.layer.norm_first:
            h = h + attend(self.norm_1(h))
            h = h + feed_forward(self.norm_2(h))
        else:
            h = self.norm_1(h + attend(h))
            h = self.norm_2(h + feed_forward(h))
        return _channel_first(h)


def build_attention_layer(node: Node) -> tuple[nn.Module, Registered]:
    """The module for one of :data:`ATTENTION_LAYERS` and where its canonical arrays live."""
    layer, key = node.layer, node.param_key
    if isinstance(layer, LayerNorm):
        norm = _LayerNorm(node.input_shape[-1], layer.epsilon)
        return norm, {key("gamma"): (norm.norm.weight, "vector", None),
                      key("beta"): (norm.norm.bias, "vector", None)}
    if isinstance(layer, Embedding):
        embedding = _Embedding(layer)
        return embedding, {key("embeddings"): (embedding.embedding.weight, "vector", None)}
    if isinstance(layer, MultiHeadAttention):
        attention = _MultiHeadAttention(node, layer)
        return attention, attention.attention.registered(key)
    block = _TransformerEncoderBlock(node, layer)  # type: ignore[arg-type]
    return block, block.registered(key)
