"""A small MLP with dropout for the checkpoint tests (trained on the wine data)."""

import polyframe as pf


def build_model(input_shape, num_classes):
    return pf.Sequential([pf.Dense(16, activation="relu"), pf.Dropout(0.2), pf.Dense(num_classes)],
                         input_shape=input_shape)


def optimizer():
    return pf.Adam(1e-2)
