"""A wider CNN: Conv2D(64, 3x3, same, relu) -> MaxPool2D(2) -> Conv2D(64, 3x3, same, relu) ->
MaxPool2D(2) -> Flatten -> Dense(classes).

    polyframe train examples/wide_cnn.py --backend tensorflow
    polyframe recommend examples/wide_cnn.py --batch-size 64 --measure
"""

import polyframe as pf


def build_model(input_shape, num_classes):
    return pf.Sequential(
        [
            pf.Conv2D(64, 3, padding="same", activation="relu"),
            pf.MaxPool2D(2),
            pf.Conv2D(64, 3, padding="same", activation="relu"),
            pf.MaxPool2D(2),
            pf.Flatten(),
            pf.Dense(num_classes),
        ],
        input_shape=input_shape,
    )


def optimizer():
    return pf.Adam(1e-3)
