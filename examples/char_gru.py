"""The character-level language model of ``char_lstm.py`` with a GRU(128) in place of the LSTM.

    polyframe train examples/char_gru.py --data text --backend torch --epochs 3 --batch-size 64
"""

import polyframe as pf

from char_lstm import char_model, optimizer  # noqa: F401  (optimizer is part of the model file)


def build_model(input_shape, num_classes):
    return char_model(input_shape, num_classes, pf.GRU)
