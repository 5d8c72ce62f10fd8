"""An MLP on a standardised scikit-learn table: Dense(64, relu) -> Dense(64, relu) -> Dense(classes).

    polyframe train examples/tabular_mlp.py --data wine --backend torch --epochs 30 --batch-size 16
    polyframe train examples/tabular_mlp.py --data breast_cancer --backend jax --epochs 30 --batch-size 16
"""

import polyframe as pf


def build_model(input_shape, num_classes):
    return pf.Sequential(
        [
            pf.Dense(64, activation="relu"),
            pf.Dense(64, activation="relu"),
            pf.Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def optimizer():
    return pf.Adam(1e-3)
