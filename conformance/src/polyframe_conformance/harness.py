"""What the level tests share: building a backend directly, the input-gradient probe, reference
runs (cached per process) and the real data they train on."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import polyframe as pf
from polyframe.backend import BuildOptions, Executable
from polyframe.data import batch_indices
from polyframe.losses import Loss, get_loss
from polyframe.optimizers import Optimizer, get_optimizer
from polyframe.reference import ReferenceModel, ReferenceOptimizer

__all__ = ["build", "Probe", "with_input_probe", "digits", "canonical_order", "reference_trajectory",
           "TRAJECTORY_STEPS", "TRAJECTORY_BATCH", "TRAJECTORY_SEED", "trajectory_model"]

PROBE = "conformance_input_probe"


def build(backend: str, model: pf.Model, weights: dict[str, np.ndarray], *,
          loss: Loss | str = "mse", optimizer: Optimizer | str = "sgd", seed: int = 0,
          deterministic: bool = False) -> Executable:
    """``backend``'s executable for ``model`` with exactly ``weights``, built as the trainer does."""
    return pf.get_backend(backend).build(model, model.check_weights(weights), get_loss(loss),
                                         get_optimizer(optimizer), BuildOptions(seed, deterministic))


@dataclass(frozen=True)
class Probe:
    """``model`` behind an identity Dense layer that leaves its input unchanged.

    Its parameter gradients make the model's input gradient ``G`` observable through the
    ordinary train step: the probe's bias gradient is ``sum_n G[n]`` and its kernel gradient
    ``x^T G`` (inputs flattened channel-last). ``keys`` maps the model's weight keys to the
    probed model's.
    """

    model: pf.Sequential
    keys: dict[str, str]
    kernel: str
    bias: str

    def weights(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = self.model.param_specs()[0][1].shape[0]
        probed = {self.kernel: np.eye(size, dtype=np.float32), self.bias: np.zeros(size, np.float32)}
        probed.update({self.keys[key]: value for key, value in weights.items()})
        return probed


def with_input_probe(model: pf.Sequential) -> Probe:
    shape = model.input_shape
    head: list[pf.Layer] = []
    if len(shape) > 1:
        head.append(pf.Flatten(name=f"{PROBE}_flatten"))
    head.append(pf.Dense(math.prod(shape), name=PROBE))
    if len(shape) > 1:
        head.append(pf.Reshape(shape, name=f"{PROBE}_reshape"))
    probed = pf.Sequential(head + [node.layer for node in model.nodes], input_shape=shape)
    keys = {}
    for node, twin in zip(model.nodes, probed.nodes[len(head):]):
        for spec in node.params:
            keys[node.param_key(spec.name)] = twin.param_key(spec.name)
    dense = probed.nodes[len(head) - 2] if len(shape) > 1 else probed.nodes[0]
    return Probe(probed, keys, dense.param_key("kernel"), dense.param_key("bias"))


@functools.cache
def digits() -> pf.datasets.Split:
    """scikit-learn's digits through polyframe.datasets (the real data the training levels use)."""
    return pf.datasets.digits()


def canonical_order(n: int, batch_size: int, seed: int, epochs: int) -> Iterator[np.ndarray]:
    """The batches of ``epochs`` epochs in polyframe's documented shuffled order."""
    for epoch in range(epochs):
        yield from batch_indices(n, batch_size, seed=seed, epoch=epoch, shuffle=True)


TRAJECTORY_STEPS = 100
TRAJECTORY_BATCH = 32
TRAJECTORY_SEED = 0


def trajectory_model() -> pf.Sequential:
    from .cases import seed_cnn

    return seed_cnn(digits().input_shape)


@functools.cache
def reference_trajectory() -> np.ndarray:
    """Per-step losses of the float64 reference for the trajectory level's run."""
    data, model = digits(), trajectory_model()
    epochs = -(-TRAJECTORY_STEPS * TRAJECTORY_BATCH // len(data.x_train))
    order = list(canonical_order(len(data.x_train), TRAJECTORY_BATCH, TRAJECTORY_SEED, epochs))
    ref = ReferenceModel(model, model.init_weights(TRAJECTORY_SEED))
    losses = ReferenceOptimizer(pf.Adam(1e-3)).train(
        ref, ((data.x_train[i], data.y_train[i]) for i in order[:TRAJECTORY_STEPS]),
        pf.SparseCategoricalCrossentropy())
    return np.array(losses)
