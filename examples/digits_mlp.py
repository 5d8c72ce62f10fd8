"""An MLP: Flatten -> Dense(256, relu) -> Dense(256, relu) -> Dense(classes), trained with Adam.

    polyframe train examples/digits_mlp.py --backend torch
    polyframe recommend examples/digits_mlp.py --batch-size 256
"""

import polyframe as pf


def build_model(input_shape, num_classes):
    return pf.Sequential(
        [
            pf.Flatten(),
            pf.Dense(256, activation="relu"),
            pf.Dense(256, activation="relu"),
            pf.Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def optimizer():
    return pf.Adam(1e-3)
