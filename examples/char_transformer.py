"""A small decoder-only Transformer character model:
Embedding(vocab, 64) -> 2 x TransformerEncoderBlock(4 heads x 16, ff 128, causal, pre-norm)
-> LayerNorm -> Flatten -> Dense(vocab).

Causal self-attention lets position ``t`` see only characters ``<= t``, as in a decoder. The
blocks have no positional encoding; order enters through the causal mask and through the head,
a Dense over the flattened ``(context, 64)`` features with one weight row per position. The
model reads ``context`` character ids and predicts the next character (many-to-one); with
``--data text`` the CLI reports the validation perplexity.

    polyframe train examples/char_transformer.py --data text --backend tensorflow --epochs 3 \
        --batch-size 64
"""

import polyframe as pf

WIDTH, HEADS, FF, BLOCKS = 64, 4, 128, 2


def build_model(input_shape, num_classes):
    ids = pf.Input(input_shape, name="chars", dtype="int32")
    h = pf.Embedding(num_classes, WIDTH)(ids)
    for _ in range(BLOCKS):
        h = pf.TransformerEncoderBlock(HEADS, WIDTH // HEADS, FF, causal=True, norm_first=True)(h)
    h = pf.Flatten()(pf.LayerNorm()(h))
    return pf.Model(ids, pf.Dense(num_classes, name="next_char")(h))


def optimizer():
    return pf.Adam(1e-3)
