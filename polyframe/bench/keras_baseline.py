"""Keras 3 baseline: the same model as a ``keras.Sequential``, stepped with ``train_on_batch``.

``train_keras`` uses whatever backend Keras was imported with: set ``KERAS_BACKEND`` (``jax``,
``tensorflow`` or ``torch``) before the first ``import keras`` in the process (the harness runs
each baseline in its own subprocess); :func:`keras_backend` reports it via
``keras.backend.backend()``. The model is compiled with Keras' own defaults (``jit_compile="auto"``:
XLA on jax, eager on torch, a ``tf.function`` without XLA on a CPU-only tensorflow), as a Keras user
would run it.

Known differences from polyframe's canonical semantics, kept because they are Keras' own:

- ``keras.optimizers.Adam`` uses the "epsilon hat" form,
  ``p -= lr * sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)``, i.e. the canonical update with
  ``eps`` scaled by ``sqrt(1-b2^t)``: identical first loss, updates differ slightly while
  ``eps`` is not negligible against ``sqrt(v)``;
- ``keras.optimizers.SGD`` keeps ``v = momentum*v - lr*g``, equivalent to the canonical
  torch form at a constant learning rate;
- dropout masks come from Keras' RNG.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..data import check_inputs
from ..layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from ..losses import Loss, MeanSquaredError
from ..model import Node, Sequential
from ..optimizers import Adam, Optimizer
from .native import PREDICT_BATCH, NativeRun, OnStep, check_supported, checked_data

__all__ = ["keras_available", "keras_backend", "train_keras"]

_FORMAT = "channels_last"


def keras_available() -> bool:
    """Whether Keras is installed (without importing it)."""
    return importlib.util.find_spec("keras") is not None


def keras_backend() -> str:
    """The backend Keras runs on in this process (imports Keras)."""
    import keras
    return keras.backend.backend()


def _keras_layer(keras: Any, node: Node) -> Any:
    layer, layers = node.layer, keras.layers
    if isinstance(layer, Conv2D):
        return layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                             activation=layer.activation, use_bias=layer.use_bias, data_format=_FORMAT)
    if isinstance(layer, MaxPool2D):
        return layers.MaxPooling2D(layer.pool_size, layer.strides, padding=layer.padding, data_format=_FORMAT)
    if isinstance(layer, Flatten):
        return layers.Flatten(data_format=_FORMAT)
    if isinstance(layer, Dense):
        return layers.Dense(layer.units, activation=layer.activation, use_bias=layer.use_bias)
    if isinstance(layer, Dropout):
        return layers.Dropout(layer.rate)
    assert isinstance(layer, Activation)
    return layers.Activation(layer.activation)


def _keras_model(keras: Any, model: Sequential, weights: dict[str, np.ndarray]) -> Any:
    built = [_keras_layer(keras, node) for node in model.nodes]
    net = keras.Sequential([keras.Input(shape=model.input_shape), *built])
    for layer, node in zip(built, model.nodes):
        if node.params:
            layer.set_weights([weights[node.param_key(p.name)] for p in node.params])
    return net


def _keras_optimizer(keras: Any, spec: Optimizer) -> Any:
    if isinstance(spec, Adam):
        return keras.optimizers.Adam(learning_rate=spec.learning_rate, beta_1=spec.beta_1,
                                     beta_2=spec.beta_2, epsilon=spec.epsilon)
    return keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=spec.momentum)


def _keras_loss(keras: Any, loss: Loss) -> Any:
    if isinstance(loss, MeanSquaredError):
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=loss.from_logits)


def train_keras(model: Sequential, weights: dict[str, np.ndarray], loss: Loss, optimizer: Optimizer,
                x: np.ndarray, y: np.ndarray, order: list[np.ndarray], on_step: OnStep) -> NativeRun:
    """Train one ``train_on_batch`` step per batch in ``order`` on Keras' current backend.

    Same contract as :func:`polyframe.bench.native.train_native`: ``on_step()`` right after each
    step's loss is on the host; returns the per-step losses and a predictor of canonical outputs.
    """
    check_supported(model, loss, optimizer, where="keras baseline")
    weights, x, y = checked_data(model, weights, loss, x, y)
    import keras
    net = _keras_model(keras, model, weights)
    net.compile(optimizer=_keras_optimizer(keras, optimizer), loss=_keras_loss(keras, loss))
    losses = []
    for idx in order:
        losses.append(float(net.train_on_batch(x[idx], y[idx], return_dict=False)))
        on_step()

    def predict(inputs: np.ndarray) -> np.ndarray:
        inputs = check_inputs(inputs, model.input_shape)
        return np.asarray(net.predict(inputs, batch_size=PREDICT_BATCH, verbose=0))

    return NativeRun(losses, predict)
