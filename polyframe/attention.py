"""Attention layer specs: multi-head attention and a Transformer encoder block.

Sequences are ``(length, features)`` per sample (batch excluded). Projection kernels are 2-D,
``(in, heads * head_dim)``, with head ``h`` owning columns ``[h * head_dim, (h + 1) * head_dim)``
(Keras' and Flax's ``(in, heads, head_dim)`` kernels reshaped row-major; PyTorch's ``(out, in)``
Linear weights transposed). docs/semantics.md gives each framework's mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._checks import check_bool, check_float, check_int
from .activations import check_activation
from .errors import ConfigError, ShapeError
from .layers import Dense, Layer, LayerNorm, ParamSpec, Shape

__all__ = ["MultiHeadAttention", "TransformerEncoderBlock", "input_shapes"]


def input_shapes(input_shape: Shape | tuple[Shape, ...]) -> tuple[Shape, ...]:
    """The per-input shapes a multi-input layer receives; a bare shape counts as one input."""
    if all(isinstance(d, int) for d in input_shape):
        return (tuple(input_shape),)  # type: ignore[arg-type]
    return tuple(tuple(s) for s in input_shape)  # type: ignore[union-attr]


def _show(shape: Shape) -> str:
    return "(batch, " + ", ".join(str(d) for d in shape) + ")"


def _rate(value: object, where: str) -> float:
    return check_float(value, f"{where}: dropout", low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class MultiHeadAttention(Layer):
    """Scaled dot-product attention with ``num_heads`` heads.

    Inputs: ``[query]`` (self-attention), ``[query, value]`` (keys are the values) or
    ``[query, value, key_padding_mask]``; query ``(L, E)``, value ``(S, Ev)``, mask ``(S,)``
    (nonzero: a real token that may be attended; zero: padding). Output ``(L, E)``.

    With ``H = num_heads``, ``Dk = key_dim``, ``Dv = value_dim`` (default ``key_dim``) and each
    head ``h`` using its column slice of the projections::

        q = query @ query_kernel + query_bias          (L, H*Dk)
        k = value @ key_kernel + key_bias              (S, H*Dk)
        v = value @ value_kernel + value_bias          (S, H*Dv)
        s_h = q_h k_h^T / sqrt(Dk); p_h = softmax over the allowed keys of s_h
        y = concat_h(p_h v_h) @ output_kernel + output_bias

    Key ``j`` is allowed for query ``i`` when its mask entry is nonzero and, with ``causal``,
    ``j <= i``. A query with no allowed key gets ``p_h = 0``: its output is ``output_bias``
    (finite, no NaN). ``dropout`` zeroes attention probabilities in training (inverted scaling).
    Kernels glorot-uniform, biases zeros.
    """

    kind: ClassVar[str] = "multi_head_attention"
    arity: ClassVar[tuple[int, int]] = (1, 3)
    num_heads: int
    key_dim: int
    value_dim: int | None = None
    dropout: float = 0.0
    use_bias: bool = True
    causal: bool = False

    def __post_init__(self) -> None:
        where = "MultiHeadAttention"
        object.__setattr__(self, "num_heads", check_int(self.num_heads, f"{where}: num_heads"))
        object.__setattr__(self, "key_dim", check_int(self.key_dim, f"{where}: key_dim"))
        value_dim = self.key_dim if self.value_dim is None else self.value_dim
        object.__setattr__(self, "value_dim", check_int(value_dim, f"{where}: value_dim"))
        object.__setattr__(self, "dropout", _rate(self.dropout, where))
        object.__setattr__(self, "use_bias", check_bool(self.use_bias, f"{where}: use_bias"))
        object.__setattr__(self, "causal", check_bool(self.causal, f"{where}: causal"))

    def _split(self, input_shape: Shape | tuple[Shape, ...]) -> tuple[Shape, Shape, Shape | None]:
        """``(query, value, mask)`` shapes, checked; ``value`` is the query for self-attention."""
        shapes = input_shapes(input_shape)
        if not 1 <= len(shapes) <= 3:
            raise ConfigError(f"layer {self.name or self.kind!r} (MultiHeadAttention) takes 1 to 3 "
                              f"inputs [query, value, key_padding_mask], got {len(shapes)}")
        query = shapes[0]
        value = shapes[1] if len(shapes) > 1 else query
        mask = shapes[2] if len(shapes) > 2 else None
        for role, shape in (("query", query), ("value", value)):
            if len(shape) != 2:
                raise self._shape_error(
                    f"a 3-D {role} (batch, length, features)", shape,
                    "give sequences as (N, length, features), e.g. via Embedding or Reshape",
                )
        if mask is not None and mask != (value[0],):
            raise ShapeError(
                f"layer {self.name or self.kind!r} (MultiHeadAttention): key_padding_mask must "
                f"have shape {_show((value[0],))} (one entry per key position), got {_show(mask)}; "
                "give 1 for real tokens and 0 for padding"
            )
        return query, value, mask

    def output_shape(self, input_shape: Shape | tuple[Shape, ...]) -> Shape:
        query, _, _ = self._split(input_shape)
        return query

    def params(self, input_shape: Shape | tuple[Shape, ...]) -> tuple[ParamSpec, ...]:
        query, value, _ = self._split(input_shape)
        keys, values = self.num_heads * self.key_dim, self.num_heads * self.value_dim  # type: ignore[operator]
        specs = []
        for name, rows, cols in (("query", query[-1], keys), ("key", value[-1], keys),
                                 ("value", value[-1], values), ("output", values, query[-1])):
            specs.append(ParamSpec(f"{name}_kernel", (rows, cols), "glorot_uniform"))
            if self.use_bias:
                specs.append(ParamSpec(f"{name}_bias", (cols,), "zeros"))
        return tuple(specs)


@dataclass(frozen=True)
class TransformerEncoderBlock(Layer):
    """A Transformer encoder layer over ``(L, E)``: self-attention and a feed-forward network,
    each with a residual connection and a LayerNorm.

    Inputs ``[x]`` or ``[x, key_padding_mask]`` (mask ``(L,)`` as for
    :class:`MultiHeadAttention`); output ``(L, E)``. With ``A`` the self-attention
    (``MultiHeadAttention(num_heads, key_dim, dropout=dropout, causal=causal)``),
    ``F(h) = act(h @ W1 + b1) @ W2 + b2`` (``W1`` ``(E, ff_dim)``, ``W2`` ``(ff_dim, E)``) and
    ``D`` dropout with rate ``dropout`` (training only)::

        norm_first=False (post-norm, the original Transformer's and PyTorch's default):
            h = LN1(x + D(A(x)));        y = LN2(h + D(F(h)))
        norm_first=True (pre-norm):
            h = x + D(A(LN1(x)));        y = h + D(F(LN2(h)))

    ``activation`` defaults to ``"relu"`` (PyTorch's and KerasHub's default); LayerNorms use
    ``epsilon`` (default 1e-5). Parameters, prefixed by sub-layer: ``attention.*`` (see
    :class:`MultiHeadAttention`), ``norm_1.gamma/beta``, ``ff_1.kernel/bias``,
    ``ff_2.kernel/bias``, ``norm_2.gamma/beta``.
    """

    kind: ClassVar[str] = "transformer_encoder_block"
    arity: ClassVar[tuple[int, int]] = (1, 2)
    num_heads: int
    key_dim: int
    ff_dim: int
    dropout: float = 0.0
    causal: bool = False
    norm_first: bool = False
    activation: str = "relu"
    epsilon: float = 1e-5

    def __post_init__(self) -> None:
        where = "TransformerEncoderBlock"
        object.__setattr__(self, "num_heads", check_int(self.num_heads, f"{where}: num_heads"))
        object.__setattr__(self, "key_dim", check_int(self.key_dim, f"{where}: key_dim"))
        object.__setattr__(self, "ff_dim", check_int(self.ff_dim, f"{where}: ff_dim"))
        object.__setattr__(self, "dropout", _rate(self.dropout, where))
        object.__setattr__(self, "causal", check_bool(self.causal, f"{where}: causal"))
        object.__setattr__(self, "norm_first", check_bool(self.norm_first, f"{where}: norm_first"))
        object.__setattr__(self, "activation", check_activation(self.activation, where))
        object.__setattr__(self, "epsilon", check_float(self.epsilon, f"{where}: epsilon",
                                                        low=0.0, low_open=True))

    @property
    def attention(self) -> MultiHeadAttention:
        """The self-attention sub-layer."""
        return MultiHeadAttention(self.num_heads, self.key_dim, dropout=self.dropout,
                                  causal=self.causal, name="attention")

    def norm(self, index: int) -> LayerNorm:
        """LayerNorm ``norm_1`` (after/before attention) or ``norm_2`` (feed-forward)."""
        return LayerNorm(self.epsilon, name=f"norm_{index}")

    def feed_forward(self, features: int) -> tuple[Dense, Dense]:
        """The two position-wise Dense layers ``ff_1`` (with the activation) and ``ff_2``."""
        return (Dense(self.ff_dim, activation=self.activation, name="ff_1"),
                Dense(features, name="ff_2"))

    def _attention_shapes(self, input_shape: Shape | tuple[Shape, ...]) -> tuple[Shape, ...]:
        shapes = input_shapes(input_shape)
        if not 1 <= len(shapes) <= 2:
            raise ConfigError(f"layer {self.name or self.kind!r} (TransformerEncoderBlock) takes "
                              f"1 or 2 inputs [x, key_padding_mask], got {len(shapes)}")
        x = shapes[0]
        return (x, x, *shapes[1:])

    def output_shape(self, input_shape: Shape | tuple[Shape, ...]) -> Shape:
        return self.attention.output_shape(self._attention_shapes(input_shape))

    def params(self, input_shape: Shape | tuple[Shape, ...]) -> tuple[ParamSpec, ...]:
        shapes = self._attention_shapes(input_shape)
        features = self.output_shape(input_shape)[-1]
        ff_1, ff_2 = self.feed_forward(features)
        parts = ((self.attention, self.attention.params(shapes)),
                 (self.norm(1), self.norm(1).params((features,))),
                 (ff_1, ff_1.params((features,))),
                 (ff_2, ff_2.params((self.ff_dim,))),
                 (self.norm(2), self.norm(2).params((features,))))
        return tuple(ParamSpec(f"{layer.name}.{p.name}", p.shape, p.initializer, p.trainable)
                     for layer, ps in parts for p in ps)
