"""A character-level language model: Embedding(vocab, 32) -> LSTM(128) -> Dense(vocab).

Reads ``context`` character ids and predicts the next character (many-to-one). With
``--data text`` (the Python standard library's own source) the CLI reports the validation
perplexity, ``exp`` of the mean cross-entropy in nats.

    polyframe train examples/char_lstm.py --data text --backend jax --epochs 3 --batch-size 64
"""

import polyframe as pf

EMBEDDING, UNITS = 32, 128


def char_model(input_shape, num_classes, cell, units=UNITS, embedding=EMBEDDING):
    """Embedding -> ``cell(units)`` (last state only) -> Dense logits over the vocabulary."""
    ids = pf.Input(input_shape, name="chars", dtype="int32")
    h = pf.Embedding(num_classes, embedding)(ids)
    h = cell(units)(h)
    return pf.Model(ids, pf.Dense(num_classes, name="next_char")(h))


def build_model(input_shape, num_classes):
    return char_model(input_shape, num_classes, pf.LSTM)


def optimizer():
    return pf.Adam(2e-3)
