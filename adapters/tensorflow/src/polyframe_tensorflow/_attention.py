"""LayerNorm, Embedding, MultiHeadAttention and TransformerEncoderBlock with low-level TF ops.

No Keras layers: Keras' ``LayerNormalization`` defaults to epsilon 1e-3 and its
``MultiHeadAttention`` masks with a large negative number, so a query with no allowed key would
attend uniformly; here it gets zero weights, polyframe's rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from polyframe.attention import MultiHeadAttention, TransformerEncoderBlock
from polyframe.layers import Embedding, LayerNorm
from polyframe.model import Node

from ._precision import cast_like
from ._startup import quiet_startup

with quiet_startup():
    import tensorflow as tf

__all__ = ["ATTENTION_BUILDERS"]

Tensor = tf.Tensor
Variables = dict[str, tf.Variable]
LayerFn = Callable[[Any, bool], Tensor]


def _inputs(x: Any) -> list[Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _layer_norm(x: Tensor, gamma: tf.Variable, beta: tf.Variable, epsilon: float) -> Tensor:
    """Normalised in float32 whatever ``x``'s type; returned in that type."""
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    return tf.cast((x32 - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta, x.dtype)


def _dropout(x: Tensor, rate: float, training: bool, rng: tf.random.Generator) -> Tensor:
    if not training or rate == 0.0:
        return x
    keep = rng.uniform(tf.shape(x), dtype=tf.float32) >= rate
    return tf.where(keep, x * (1.0 / (1.0 - rate)), tf.zeros_like(x))


def _attention(params: Variables, name: Callable[[str], str], layer: MultiHeadAttention,
               query: Tensor, value: Tensor, mask: Tensor | None, training: bool,
               rng: tf.random.Generator) -> Tensor:
    heads, length, keys = layer.num_heads, query.shape[1], value.shape[1]

    def project(x: Tensor, part: str, width: int) -> Tensor:
        y = tf.einsum("nlc,cw->nlw", x, cast_like(params[name(f"{part}_kernel")], x))
        if layer.use_bias:
            y = y + cast_like(params[name(f"{part}_bias")], x)
        return tf.reshape(y, tf.stack([tf.shape(x)[0], x.shape[1], heads, width]))

    q = project(query, "query", layer.key_dim)
    k = project(value, "key", layer.key_dim)
    v = project(value, "value", layer.value_dim)  # type: ignore[arg-type]
    scores = tf.cast(tf.einsum("nlhd,nshd->nhls", q, k), tf.float32) * (1.0 / math.sqrt(layer.key_dim))
    allowed = tf.ones((1, 1, length, keys), dtype=tf.bool)
    if layer.causal:
        allowed = tf.logical_and(allowed, np.tril(np.ones((length, keys), dtype=bool)))
    if mask is not None:
        allowed = tf.logical_and(allowed, tf.not_equal(mask, 0)[:, None, None, :])
    row_max = tf.reduce_max(tf.where(allowed, scores, -np.inf), axis=-1, keepdims=True)
    row_max = tf.stop_gradient(tf.where(tf.math.is_finite(row_max), row_max, 0.0))
    e = tf.where(allowed, tf.exp(tf.where(allowed, scores, row_max) - row_max), 0.0)
    total = tf.reduce_sum(e, axis=-1, keepdims=True)
    p = _dropout(e / tf.where(total > 0, total, 1.0), layer.dropout, training, rng)
    out = tf.einsum("nhls,nshd->nlhd", tf.cast(p, v.dtype), v)
    out = tf.reshape(out, tf.stack([tf.shape(out)[0], length, heads * layer.value_dim]))  # type: ignore[operator]
    y = tf.einsum("nlc,ce->nle", out, cast_like(params[name("output_kernel")], out))
    return y + cast_like(params[name("output_bias")], y) if layer.use_bias else y


def _layer_norm_layer(node: Node, params: Variables, rng: tf.random.Generator) -> LayerFn:
    gamma, beta = params[node.param_key("gamma")], params[node.param_key("beta")]
    epsilon = node.layer.epsilon  # type: ignore[attr-defined]
    return lambda x, training: _layer_norm(_inputs(x)[0], gamma, beta, epsilon)


@tf.custom_gradient
def _lookup(table: Tensor, ids: Tensor) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, None]]]:
    """``table[ids]`` whose table gradient is dense, as for every other weight (``tf.gather``'s
    is ``IndexedSlices``, which plain optimizer arithmetic does not take)."""
    rows, width = tf.shape(table)[0], tf.shape(table)[1]

    def grad(g: Tensor) -> tuple[Tensor, None]:
        return tf.math.unsorted_segment_sum(tf.reshape(g, [-1, width]), tf.reshape(ids, [-1]), rows), None

    return tf.gather(table, ids, axis=0), grad


def _embedding(node: Node, params: Variables, rng: tf.random.Generator) -> LayerFn:
    table = params[node.param_key("embeddings")]

    def embedding(x: Any, training: bool) -> Tensor:
        ids = tf.cast(tf.math.round(_inputs(x)[0]), tf.int32)
        return _lookup(tf.convert_to_tensor(table), ids)

    return embedding


def _multi_head_attention(node: Node, params: Variables, rng: tf.random.Generator) -> LayerFn:
    layer: MultiHeadAttention = node.layer  # type: ignore[assignment]

    def attention(x: Any, training: bool) -> Tensor:
        inputs = _inputs(x)
        value = inputs[1] if len(inputs) > 1 else inputs[0]
        mask = inputs[2] if len(inputs) > 2 else None
        return _attention(params, node.param_key, layer, inputs[0], value, mask, training, rng)

    return attention


def _transformer_encoder_block(node: Node, params: Variables, rng: tf.random.Generator) -> LayerFn:
    layer: TransformerEncoderBlock = node.layer  # type: ignore[assignment]
    attention = layer.attention
    from ._executable import _ACTIVATIONS
    activation = _ACTIVATIONS[layer.activation]

    def name(prefix: str) -> Callable[[str], str]:
        return lambda part: node.param_key(f"{prefix}.{part}")

    def block(x: Any, training: bool) -> Tensor:
        inputs = _inputs(x)
        h, mask = inputs[0], (inputs[1] if len(inputs) > 1 else None)

        def norm(t: Tensor, i: int) -> Tensor:
            p = name(f"norm_{i}")
            return _layer_norm(t, params[p("gamma")], params[p("beta")], layer.epsilon)

        def attend(t: Tensor) -> Tensor:
            y = _attention(params, name("attention"), attention, t, t, mask, training, rng)
            return _dropout(y, layer.dropout, training, rng)

        def feed_forward(t: Tensor) -> Tensor:
            f1, f2 = name("ff_1"), name("ff_2")
            t = tf.cast(activation(tf.einsum("nlc,cf->nlf", t, cast_like(params[f1("kernel")], t))
                                   + cast_like(params[f1("bias")], t)), t.dtype)
            y = tf.einsum("nlf,fc->nlc", t, cast_like(params[f2("kernel")], t)) + cast_like(params[f2("bias")], t)
            return _dropout(y, layer.dropout, training, rng)

        if layer.norm_first:
            h = h + attend(norm(h, 1))
            return h + feed_forward(norm(h, 2))
        h = norm(h + attend(h), 1)
        return norm(h + feed_forward(h), 2)

    return block


ATTENTION_BUILDERS: dict[type, Callable[[Node, Variables, tf.random.Generator], LayerFn]] = {
    LayerNorm: _layer_norm_layer,
    Embedding: _embedding,
    MultiHeadAttention: _multi_head_attention,
    TransformerEncoderBlock: _transformer_encoder_block,
}
