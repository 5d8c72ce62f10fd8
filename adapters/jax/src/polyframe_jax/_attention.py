"""LayerNorm, Embedding, MultiHeadAttention and TransformerEncoderBlock as pure JAX functions.

The attention softmax is written out (not ``jax.nn.dot_product_attention``) so that a query with
no allowed key gets zero weights, polyframe's rule, instead of a uniform or NaN row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from polyframe.attention import MultiHeadAttention, TransformerEncoderBlock
from polyframe.layers import Embedding, LayerNorm
from polyframe.model import Node

__all__ = ["ATTENTION_BUILDERS"]

Params = dict[str, jax.Array]
Apply = Callable[[Params, Any, "jax.Array | None", Params], jax.Array]


def _inputs(x: Any) -> list[jax.Array]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _layer_norm(x: jax.Array, gamma: jax.Array, beta: jax.Array, epsilon: float) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(variance + epsilon) * gamma + beta


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _site_key(key: jax.Array | None, index: int, site: int) -> jax.Array | None:
    """A dropout key per layer (``index``) and per dropout site inside it."""
    return None if key is None else jax.random.fold_in(jax.random.fold_in(key, index), site)


def _attention(params: Params, name: Callable[[str], str], layer: MultiHeadAttention,
               query: jax.Array, value: jax.Array, mask: jax.Array | None,
               key: jax.Array | None) -> jax.Array:
    heads = layer.num_heads

    def project(x: jax.Array, part: str) -> jax.Array:
        y = x @ params[name(f"{part}_kernel")]
        return y + params[name(f"{part}_bias")] if layer.use_bias else y

    n, length, keys = query.shape[0], query.shape[1], value.shape[1]
    q = project(query, "query").reshape(n, length, heads, layer.key_dim)
    k = project(value, "key").reshape(n, keys, heads, layer.key_dim)
    v = project(value, "value").reshape(n, keys, heads, layer.value_dim)
    scores = jnp.einsum("nlhd,nshd->nhls", q, k) * (1.0 / math.sqrt(layer.key_dim))
    allowed = jnp.ones((1, 1, length, keys), dtype=bool)
    if layer.causal:
        allowed = allowed & np.tril(np.ones((length, keys), dtype=bool))
    if mask is not None:
        allowed = allowed & (mask != 0)[:, None, None, :]
    row_max = jnp.max(jnp.where(allowed, scores, -jnp.inf), axis=-1, keepdims=True)
    row_max = lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    e = jnp.where(allowed, jnp.exp(jnp.where(allowed, scores, row_max) - row_max), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    p = _dropout(e / jnp.where(total > 0, total, 1.0), layer.dropout, key)
    out = jnp.einsum("nhls,nshd->nlhd", p, v).reshape(n, length, heads * layer.value_dim)
    return project(out, "output")


def _layer_norm_layer(node: Node, index: int) -> Apply:
    gamma, beta, epsilon = node.param_key("gamma"), node.param_key("beta"), node.layer.epsilon

    def apply(params: Params, x: Any, key: jax.Array | None, new_state: Params) -> jax.Array:
        return _layer_norm(_inputs(x)[0], params[gamma], params[beta], epsilon)

    return apply


def _embedding(node: Node, index: int) -> Apply:
    table = node.param_key("embeddings")

    def apply(params: Params, x: Any, key: jax.Array | None, new_state: Params) -> jax.Array:
        ids = jnp.round(_inputs(x)[0]).astype(jnp.int32)
        return jnp.take(params[table], ids, axis=0)

    return apply


def _multi_head_attention(node: Node, index: int) -> Apply:
    layer: MultiHeadAttention = node.layer  # type: ignore[assignment]

    def apply(params: Params, x: Any, key: jax.Array | None, new_state: Params) -> jax.Array:
        inputs = _inputs(x)
        value = inputs[1] if len(inputs) > 1 else inputs[0]
        mask = inputs[2] if len(inputs) > 2 else None
        return _attention(params, node.param_key, layer, inputs[0], value, mask,
                          _site_key(key, index, 0))

    return apply


def _transformer_encoder_block(node: Node, index: int) -> Apply:
    layer: TransformerEncoderBlock = node.layer  # type: ignore[assignment]
    attention = layer.attention
    ff_1, _ = layer.feed_forward(1)
    from ._executable import _ACTIVATIONS
    activation = _ACTIVATIONS[ff_1.activation]  # type: ignore[index]

    def name(prefix: str) -> Callable[[str], str]:
        return lambda part: node.param_key(f"{prefix}.{part}")

    def apply(params: Params, x: Any, key: jax.Array | None, new_state: Params) -> jax.Array:
        inputs = _inputs(x)
        h, mask = inputs[0], (inputs[1] if len(inputs) > 1 else None)

        def norm(t: jax.Array, i: int) -> jax.Array:
            p = name(f"norm_{i}")
            return _layer_norm(t, params[p("gamma")], params[p("beta")], layer.epsilon)

        def attend(t: jax.Array) -> jax.Array:
            y = _attention(params, name("attention"), attention, t, t, mask, _site_key(key, index, 0))
            return _dropout(y, layer.dropout, _site_key(key, index, 1))

        def feed_forward(t: jax.Array) -> jax.Array:
            f1, f2 = name("ff_1"), name("ff_2")
            t = activation(t @ params[f1("kernel")] + params[f1("bias")])
            y = t @ params[f2("kernel")] + params[f2("bias")]
            return _dropout(y, layer.dropout, _site_key(key, index, 2))

        if layer.norm_first:
            h = h + attend(norm(h, 1))
            return h + feed_forward(norm(h, 2))
        h = norm(h + attend(h), 1)
        return norm(h + feed_forward(h), 2)

    return apply


ATTENTION_BUILDERS: dict[type, Callable[[Node, int], Apply]] = {
    LayerNorm: _layer_norm_layer,
    Embedding: _embedding,
    MultiHeadAttention: _multi_head_attention,
    TransformerEncoderBlock: _transformer_encoder_block,
}
