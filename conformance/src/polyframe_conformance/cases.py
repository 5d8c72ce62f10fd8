"""The data-driven tables the forward, gradient and optimizer levels run over.

A new layer, loss, optimizer or schedule is covered by appending a row: a :class:`ModelCase`
to :data:`MODEL_CASES` (forward and gradient levels), a :class:`LossCase` to :data:`LOSS_CASES`
(gradient level) or an :class:`OptimizerCase` to :data:`OPTIMIZER_CASES`. Models are built
lazily, so a row may name a layer that only some polyframe versions have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import polyframe as pf
from polyframe.losses import Loss
from polyframe.optimizers import Optimizer

__all__ = ["ModelCase", "LossCase", "OptimizerCase", "MODEL_CASES", "LOSS_CASES", "OPTIMIZER_CASES",
           "SMOKE_CASES",
           "normal_inputs", "token_inputs", "targets_for", "case_weights", "seed_cnn"]

Inputs = Callable[[np.random.Generator, tuple[int, ...], int], np.ndarray]


def normal_inputs(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    """Standard-normal float32 samples of ``shape``."""
    return rng.normal(size=(n, *shape)).astype(np.float32)


def token_inputs(vocabulary: int) -> Inputs:
    """Integer token ids in ``[0, vocabulary)``, as float32 (the model-input convention)."""
    def draw(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
        return rng.integers(0, vocabulary, size=(n, *shape)).astype(np.float32)
    return draw


@dataclass(frozen=True)
class ModelCase:
    """One model with its inputs and loss, checked at the forward and gradient levels.

    ``dropout``: the model has active dropout, so only inference outputs are comparable.
    ``input_gradient``: the input is differentiable (not token ids), so the gradient level also
    checks the input gradient.
    """

    id: str
    build: Callable[[], pf.Model]
    loss: Loss = pf.MeanSquaredError()
    batch: int = 6
    inputs: Inputs = normal_inputs
    dropout: bool = False
    input_gradient: bool = True


def seed_cnn(input_shape: tuple[int, ...], num_classes: int = 10, dropout: float = 0.0) -> pf.Sequential:
    """The seed network of the examples (optionally with dropout before the head)."""
    layers: list[pf.Layer] = [pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                              pf.Dense(128, activation="relu")]
    if dropout:
        layers.append(pf.Dropout(dropout))
    layers.append(pf.Dense(num_classes))
    return pf.Sequential(layers, input_shape=input_shape)


def _seq(shape: tuple[int, ...], *layers: Callable[[], pf.Layer]) -> Callable[[], pf.Sequential]:
    return lambda: pf.Sequential([make() for make in layers], input_shape=shape)


_CE = pf.SparseCategoricalCrossentropy()
_IMAGE = (7, 6, 3)

MODEL_CASES: list[ModelCase] = [
    ModelCase("dense", _seq((7,), lambda: pf.Dense(5), lambda: pf.Dense(3, use_bias=False))),
    ModelCase("activations-relu-tanh-sigmoid", _seq(
        (6,), lambda: pf.Dense(8, activation="relu"), lambda: pf.Activation("tanh"),
        lambda: pf.Dense(8, activation="sigmoid"), lambda: pf.Dense(4))),
    ModelCase("activations-gelu-silu-leaky-softplus", _seq(
        (6,), lambda: pf.Dense(8, activation="gelu"), lambda: pf.Activation("silu"),
        lambda: pf.Dense(8, activation="leaky_relu"), lambda: pf.Activation("softplus"),
        lambda: pf.Dense(4))),
    ModelCase("softmax-log-softmax", _seq(
        (6,), lambda: pf.Dense(8, activation="log_softmax"), lambda: pf.Dense(4, activation="softmax")),
        loss=pf.SparseCategoricalCrossentropy(from_logits=False)),
    ModelCase("conv2d-valid-strided", _seq(
        _IMAGE, lambda: pf.Conv2D(4, (3, 2), strides=(2, 1), activation="relu"), lambda: pf.Flatten(),
        lambda: pf.Dense(3))),
    ModelCase("conv2d-same-uneven", _seq(
        (9, 8, 2), lambda: pf.Conv2D(3, 4, strides=2, padding="same"),
        lambda: pf.Conv2D(2, (2, 3), padding="same", activation="tanh"), lambda: pf.Flatten(),
        lambda: pf.Dense(3))),
    ModelCase("maxpool-same", _seq(
        (9, 8, 2), lambda: pf.Conv2D(3, 3), lambda: pf.MaxPool2D(3, strides=2, padding="same"),
        lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("avgpool-valid-same", _seq(
        (9, 8, 2), lambda: pf.AvgPool2D(2), lambda: pf.Conv2D(3, 1),
        lambda: pf.AvgPool2D(3, strides=2, padding="same"), lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("global-pools", _seq(
        _IMAGE, lambda: pf.Conv2D(4, 3, padding="same"), lambda: pf.GlobalAvgPool2D(),
        lambda: pf.Dense(3))),
    ModelCase("global-max-pool", _seq(
        _IMAGE, lambda: pf.Conv2D(4, 3), lambda: pf.GlobalMaxPool2D(), lambda: pf.Dense(3))),
    ModelCase("conv1d-dilated-same", _seq(
        (10, 3), lambda: pf.Conv1D(4, 3, dilation=2, padding="same", activation="tanh"),
        lambda: pf.Conv1D(2, 2, strides=2), lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("reshape", _seq(
        (4, 6, 2), lambda: pf.Reshape((8, 6)), lambda: pf.Conv1D(3, 2), lambda: pf.Reshape((7, 3, 1)),
        lambda: pf.Conv2D(2, 2), lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("batchnorm-dense", _seq(
        (5,), lambda: pf.Dense(6), lambda: pf.BatchNorm(), lambda: pf.Dense(3)), batch=8),
    ModelCase("batchnorm-image", _seq(
        _IMAGE, lambda: pf.Conv2D(4, 3), lambda: pf.BatchNorm(momentum=0.9, epsilon=1e-5),
        lambda: pf.Activation("relu"), lambda: pf.Flatten(), lambda: pf.Dense(3)), batch=8),
    ModelCase("lstm", _seq(
        (5, 3), lambda: pf.LSTM(4, return_sequences=True), lambda: pf.LSTM(3), lambda: pf.Dense(2))),
    ModelCase("gru", _seq(
        (5, 3), lambda: pf.GRU(4, return_sequences=True), lambda: pf.GRU(3), lambda: pf.Dense(2))),
    ModelCase("flatten-conv-dense", _seq(
        (5, 4, 3), lambda: pf.Conv2D(3, 2), lambda: pf.Flatten(), lambda: pf.Dense(4)), loss=_CE),
    ModelCase("flatten-output", _seq((4, 3, 2), lambda: pf.Conv2D(3, 2), lambda: pf.Flatten())),
    ModelCase("dropout", _seq(
        (6,), lambda: pf.Dense(16, activation="relu"), lambda: pf.Dropout(0.5), lambda: pf.Dense(3)),
        dropout=True),
    ModelCase("seed-cnn", lambda: seed_cnn((8, 8, 1)), loss=_CE, batch=16,
              inputs=lambda rng, shape, n: rng.uniform(size=(n, *shape)).astype(np.float32)),
    ModelCase("conv2d-dilation-groups", _seq(
        (9, 8, 4), lambda: pf.Conv2D(6, 3, dilation=2, groups=2, padding="same", activation="relu"),
        lambda: pf.Conv2D(4, (2, 3), dilation=(2, 1), groups=2, strides=2), lambda: pf.Flatten(),
        lambda: pf.Dense(3))),
    ModelCase("layernorm", _seq(
        (5, 4), lambda: pf.Conv1D(6, 2), lambda: pf.LayerNorm(epsilon=1e-3), lambda: pf.Flatten(),
        lambda: pf.Dense(8), lambda: pf.LayerNorm(), lambda: pf.Dense(3))),
    ModelCase("embedding", _seq(
        (6,), lambda: pf.Embedding(11, 4), lambda: pf.Conv1D(3, 2), lambda: pf.Flatten(), lambda: pf.Dense(3)),
        inputs=token_inputs(11), input_gradient=False),
    ModelCase("multi-head-attention", _seq(
        (5, 4), lambda: pf.MultiHeadAttention(num_heads=2, key_dim=3), lambda: pf.Flatten(),
        lambda: pf.Dense(3))),
    ModelCase("multi-head-attention-causal", _seq(
        (5, 4), lambda: pf.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=3, causal=True),
        lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("transformer-block", _seq(
        (5, 4), lambda: pf.TransformerEncoderBlock(num_heads=2, key_dim=2, ff_dim=8),
        lambda: pf.TransformerEncoderBlock(num_heads=2, key_dim=2, ff_dim=6, norm_first=True,
                                           activation="gelu"),
        lambda: pf.Flatten(), lambda: pf.Dense(3))),
    ModelCase("functional-add-concatenate", lambda: _functional(), input_gradient=False),
]


def _functional() -> pf.Model:
    """A two-branch graph joined by Add and Concatenate (the functional API)."""
    x = pf.Input((6,))
    left = pf.Dense(5, activation="tanh")(x)
    right = pf.Dense(5)(x)
    joined = pf.Concatenate()(pf.Add()(left, right), pf.Multiply()(left, right))
    return pf.Model(x, pf.Dense(3)(joined))


@dataclass(frozen=True)
class LossCase:
    """One loss on a small model whose last layer gives the loss its expected kind of output."""

    id: str
    loss: Loss
    head: Callable[[], pf.Layer]


LOSS_CASES: list[LossCase] = [
    LossCase("cross-entropy-from-logits", pf.SparseCategoricalCrossentropy(), lambda: pf.Dense(4)),
    LossCase("cross-entropy-from-probabilities", pf.SparseCategoricalCrossentropy(from_logits=False),
             lambda: pf.Dense(4, activation="softmax")),
    LossCase("mean-squared-error", pf.MeanSquaredError(), lambda: pf.Dense(4)),
    LossCase("categorical-cross-entropy-smoothed", pf.CategoricalCrossentropy(label_smoothing=0.1),
             lambda: pf.Dense(4)),
    LossCase("binary-cross-entropy-from-logits", pf.BinaryCrossentropy(), lambda: pf.Dense(4)),
    LossCase("binary-cross-entropy-from-probabilities", pf.BinaryCrossentropy(from_logits=False),
             lambda: pf.Dense(4, activation="sigmoid")),
    LossCase("mean-absolute-error", pf.MeanAbsoluteError(), lambda: pf.Dense(4)),
    LossCase("huber", pf.Huber(delta=0.5), lambda: pf.Dense(4)),
]


@dataclass(frozen=True)
class OptimizerCase:
    """One optimizer (or optimizer with a learning-rate schedule) and its settings."""

    id: str
    make: Callable[[], Optimizer]


OPTIMIZER_CASES: list[OptimizerCase] = [
    OptimizerCase("sgd", lambda: pf.SGD(0.1)),
    OptimizerCase("sgd-momentum", lambda: pf.SGD(0.05, momentum=0.9)),
    OptimizerCase("adam-defaults", lambda: pf.Adam()),
    OptimizerCase("adam-custom", lambda: pf.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-4)),
    OptimizerCase("adamw", lambda: pf.AdamW(0.01, weight_decay=0.1)),
    OptimizerCase("rmsprop", lambda: pf.RMSprop(0.01)),
    OptimizerCase("rmsprop-centered-momentum", lambda: pf.RMSprop(0.005, rho=0.8, momentum=0.5, centered=True)),
    OptimizerCase("sgd-step-decay", lambda: pf.SGD(pf.StepDecay(0.2, step_size=7, gamma=0.5), momentum=0.5)),
    OptimizerCase("adam-exponential-decay", lambda: pf.Adam(pf.ExponentialDecay(0.02, 0.5, 10, staircase=True))),
    OptimizerCase("adam-cosine-warmup", lambda: pf.Adam(pf.CosineDecay(0.02, decay_steps=40, warmup_steps=5))),
    OptimizerCase("sgd-clip-norm", lambda: pf.SGD(0.5, clip_norm=0.1)),
    OptimizerCase("adam-clip-value", lambda: pf.Adam(0.01, clip_value=0.05)),
]


def targets_for(loss: Loss, output_shape: tuple[int, ...], rng: np.random.Generator, n: int) -> np.ndarray:
    """Random targets of the kind ``loss`` takes: class indices, one-hot rows, 0/1 labels, or
    standard-normal arrays."""
    if isinstance(loss, pf.SparseCategoricalCrossentropy):
        return rng.integers(0, output_shape[-1], size=n).astype(np.int64)
    if isinstance(loss, pf.CategoricalCrossentropy):
        return np.eye(output_shape[-1], dtype=np.float32)[rng.integers(0, output_shape[-1], size=n)]
    if isinstance(loss, pf.BinaryCrossentropy):
        return rng.integers(0, 2, size=(n, *output_shape)).astype(np.float32)
    return rng.normal(size=(n, *output_shape)).astype(np.float32)


def case_weights(model: pf.Model, seed: int) -> dict[str, np.ndarray]:
    """Canonical initial weights, with every constant-initialised array (biases, BatchNorm's
    gamma, beta and moving statistics) replaced by random values, so a layout or offset mistake
    in them cannot hide behind zeros and ones."""
    weights = model.init_weights(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
    for key, spec in model.param_specs():
        if spec.initializer == "zeros":
            weights[key] = rng.normal(0.0, 0.3, size=spec.shape).astype(np.float32)
        elif spec.initializer == "ones":
            weights[key] = rng.uniform(0.5, 1.5, size=spec.shape).astype(np.float32)
    return weights


SMOKE_CASES = frozenset({
    "conv2d-same-uneven", "batchnorm-image", "lstm", "flatten-conv-dense", "dropout", "seed-cnn",
    "transformer-block", "cross-entropy-from-logits", "binary-cross-entropy-from-logits",
    "adam-custom", "rmsprop-centered-momentum", "adam-cosine-warmup",
})
"""A few rows of each table that together touch padding, normalisation state, recurrence,
layouts, dropout, attention, a loss of each kind and optimizer state: what a repository's quick
test command runs (``pf_cases = "smoke"`` in its pytest settings). The error table always runs
in full; ``polyframe conformance`` always runs every row."""
