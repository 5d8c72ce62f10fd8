"""Float64 forward and hand-written backward passes of LayerNorm, Embedding, MultiHeadAttention
and TransformerEncoderBlock, for :mod:`polyframe.reference`.

Each layer function returns ``(y, back)``; ``back(g, grads)`` stores the parameter gradients in
``grads`` under their model keys and returns the input gradient: one array for a single input,
a list (one per input, zeros for a key padding mask) when the layer was given a list. Dropout
is the identity, as everywhere in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .attention import MultiHeadAttention, TransformerEncoderBlock
from .layers import Embedding, LayerNorm
from .model import Node

__all__ = ["ATTENTION_LAYERS", "attention_layer"]

Array = np.ndarray
Back = Callable[[Array, dict], "Array | list[Array]"]

ATTENTION_LAYERS = (LayerNorm, Embedding, MultiHeadAttention, TransformerEncoderBlock)


def _layer_norm(x: Array, gamma: Array, beta: Array,
                epsilon: float) -> tuple[Array, Callable[[Array], tuple[Array, Array, Array]]]:
    """``(y, back)``; ``back(g) -> (grad_x, grad_gamma, grad_beta)``."""
    mean = x.mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + epsilon)
    xhat = (x - mean) * inv
    axes = tuple(range(x.ndim - 1))

    def back(g: Array) -> tuple[Array, Array, Array]:
        gh = g * gamma
        gx = inv * (gh - gh.mean(axis=-1, keepdims=True)
                    - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        return gx, (g * xhat).sum(axis=axes), g.sum(axis=axes)
    return gamma * xhat + beta, back


def _norm(key: Callable[[str], str], w: dict[str, Array], x: Array,
          epsilon: float) -> tuple[Array, Callable[[Array, dict], Array]]:
    """A LayerNorm whose ``gamma`` / ``beta`` live at ``key("gamma")`` / ``key("beta")``."""
    y, back = _layer_norm(x, w[key("gamma")], w[key("beta")], epsilon)

    def store(g: Array, grads: dict) -> Array:
        gx, grads[key("gamma")], grads[key("beta")] = back(g)
        return gx
    return y, store


def _dense(x: Array, kernel: Array,
           bias: Array | None) -> tuple[Array, Callable[[Array], tuple[Array, Array, Array | None]]]:
    """``x @ kernel + bias`` over the last axis; ``back(g) -> (grad_x, grad_kernel, grad_bias)``."""
    y = x @ kernel + (0.0 if bias is None else bias)

    def back(g: Array) -> tuple[Array, Array, Array | None]:
        rows, cols = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        return g @ kernel.T, rows.T @ cols, None if bias is None else cols.sum(axis=0)
    return y, back


def _allowed(n: int, length: int, keys: int, causal: bool, mask: Array | None) -> Array:
    """``(N, 1, L, S)`` booleans: may query ``i`` attend to key ``j``."""
    allowed = np.ones((n, 1, length, keys), dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((length, keys), dtype=bool))
    if mask is not None:
        allowed &= (mask != 0)[:, None, None, :]
    return allowed


def _attention(key: Callable[[str], str], w: dict[str, Array], layer: MultiHeadAttention,
               query: Array, value: Array, mask: Array | None) -> tuple[Array, Callable]:
    """``(y, back)``; ``back(g, grads) -> (grad_query, grad_value)``."""
    heads, dk, dv = layer.num_heads, layer.key_dim, layer.value_dim
    n, length, keys = len(query), query.shape[1], value.shape[1]

    def project(x: Array, name: str) -> tuple[Array, Callable]:
        bias = w[key(f"{name}_bias")] if layer.use_bias else None
        return _dense(x, w[key(f"{name}_kernel")], bias)

    q, q_back = project(query, "query")
    k, k_back = project(value, "key")
    v, v_back = project(value, "value")
    qh, kh, vh = (a.reshape(n, a.shape[1], heads, -1) for a in (q, k, v))
    scale = 1.0 / math.sqrt(dk)
    scores = np.einsum("nlhd,nshd->nhls", qh, kh) * scale
    allowed = _allowed(n, length, keys, layer.causal, mask)
    row_max = np.where(allowed, scores, -np.inf).max(axis=-1, keepdims=True)
    shift = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(allowed, np.exp(np.where(allowed, scores, shift) - shift), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total > 0, total, 1.0)
    heads_out = np.einsum("nhls,nshd->nlhd", p, vh).reshape(n, length, heads * dv)
    y, o_back = project(heads_out, "output")

    def back(g: Array, grads: dict) -> tuple[Array, Array]:
        def store(name: str, kernel_grad: Array, bias_grad: Array | None) -> None:
            grads[key(f"{name}_kernel")] = kernel_grad
            if bias_grad is not None:
                grads[key(f"{name}_bias")] = bias_grad

        g_heads, *rest = o_back(g)
        store("output", *rest)
        g_heads = g_heads.reshape(n, length, heads, dv)
        gp = np.einsum("nlhd,nshd->nhls", g_heads, vh)
        gv = np.einsum("nhls,nlhd->nshd", p, g_heads).reshape(v.shape)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True)) * scale
        gq = np.einsum("nhls,nshd->nlhd", gs, kh).reshape(q.shape)
        gk = np.einsum("nhls,nlhd->nshd", gs, qh).reshape(k.shape)
        grad_query, *rest = q_back(gq)
        store("query", *rest)
        grad_key, *rest = k_back(gk)
        store("key", *rest)
        grad_value, *rest = v_back(gv)
        store("value", *rest)
        return grad_query, grad_key + grad_value
    return y, back


def _block(key: Callable[[str], str], w: dict[str, Array], layer: TransformerEncoderBlock,
           x: Array, mask: Array | None) -> tuple[Array, Callable[[Array, dict], Array]]:
    from .reference import _activation

    def sub(prefix: str) -> Callable[[str], str]:
        return lambda name: key(f"{prefix}.{name}")

    def norm(h: Array, index: int) -> tuple[Array, Callable[[Array, dict], Array]]:
        return _norm(sub(f"norm_{index}"), w, h, layer.epsilon)

    def attend(h: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        y, b = _attention(sub("attention"), w, layer.attention, h, h, mask)

        def back(g: Array, grads: dict) -> Array:
            gq, gv = b(g, grads)
            return gq + gv
        return y, back

    def feed_forward(h: Array) -> tuple[Array, Callable[[Array, dict], Array]]:
        k1, k2 = sub("ff_1"), sub("ff_2")
        z, back_1 = _dense(h, w[k1("kernel")], w[k1("bias")])
        a, act_back = _activation(layer.activation, z)
        y, back_2 = _dense(a, w[k2("kernel")], w[k2("bias")])

        def back(g: Array, grads: dict) -> Array:
            ga, grads[k2("kernel")], grads[k2("bias")] = back_2(g)
            gh, grads[k1("kernel")], grads[k1("bias")] = back_1(act_back(ga))
            return gh
        return y, back

    if layer.norm_first:
        n1, n1_back = norm(x, 1)
        a, a_back = attend(n1)
        h = x + a
        n2, n2_back = norm(h, 2)
        f, f_back = feed_forward(n2)

        def back(g: Array, grads: dict) -> Array:
            gh = g + n2_back(f_back(g, grads), grads)
            return gh + n1_back(a_back(gh, grads), grads)
        return h + f, back

    a, a_back = attend(x)
    h, n1_back = norm(x + a, 1)
    f, f_back = feed_forward(h)
    y, n2_back = norm(h + f, 2)

    def back_post(g: Array, grads: dict) -> Array:
        gr2 = n2_back(g, grads)
        gh = gr2 + f_back(gr2, grads)
        gr1 = n1_back(gh, grads)
        return gr1 + a_back(gr1, grads)
    return y, back_post


def attention_layer(node: Node, weights: dict[str, Array], x: Array | list[Array]) -> tuple[Array, Back]:
    """Forward pass of one of :data:`ATTENTION_LAYERS` and its backward function."""
    layer, key = node.layer, node.param_key
    listed = isinstance(x, (list, tuple))
    inputs = [np.asarray(v, dtype=np.float64) for v in x] if listed else [x]
    if isinstance(layer, LayerNorm):
        return _norm(key, weights, inputs[0], layer.epsilon)
    if isinstance(layer, Embedding):
        ids = np.rint(inputs[0]).astype(np.int64)
        table = weights[key("embeddings")]

        def back_embedding(g: Array, grads: dict) -> Array:
            grad = np.zeros_like(table)
            np.add.at(grad, ids, g)
            grads[key("embeddings")] = grad
            return np.zeros(inputs[0].shape)
        return table[ids], back_embedding

    mask = inputs[-1] if len(inputs) == layer.arity[1] else None
    if isinstance(layer, MultiHeadAttention):
        query, value = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        y, attention_back = _attention(key, weights, layer, query, value, mask)

        def back_attention(g: Array, grads: dict) -> Array | list[Array]:
            gq, gv = attention_back(g, grads)
            if len(inputs) == 1:
                return [gq + gv] if listed else gq + gv
            return [gq, gv, *([np.zeros(mask.shape)] if mask is not None else [])]
        return y, back_attention

    y, block_back = _block(key, weights, layer, inputs[0], mask)

    def back_block(g: Array, grads: dict) -> Array | list[Array]:
        gx = block_back(g, grads)
        if not listed:
            return gx
        return [gx, *([np.zeros(mask.shape)] if mask is not None else [])]
    return y, back_block
