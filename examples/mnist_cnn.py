"""The seed CNN: Conv2D(32, 3x3, relu) -> MaxPool2D(2) -> Flatten -> Dense(128, relu) -> Dense(10).

    polyframe train examples/mnist_cnn.py --backend jax
    polyframe train examples/mnist_cnn.py --data mnist --data-dir ../shared/data/mnist --epochs 5
"""

import polyframe as pf


def build_model(input_shape, num_classes):
    return pf.Sequential(
        [
            pf.Conv2D(32, 3, activation="relu"),
            pf.MaxPool2D(2),
            pf.Flatten(),
            pf.Dense(128, activation="relu"),
            pf.Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def optimizer():
    return pf.Adam(1e-3)
