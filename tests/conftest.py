"""Shared fixtures: the backends under test, real datasets, and the seed model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import polyframe as pf

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("POLYFRAME_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
BACKENDS = ("torch", "tensorflow", "jax")
REQUIRED = {b for b in os.environ.get("POLYFRAME_REQUIRE_BACKENDS", "").split(",") if b}


def pytest_configure(config: pytest.Config) -> None:
    # torch must be imported before tensorflow when both share a process.
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401


def require(name: str) -> None:
    """Skip unless backend ``name`` can run; fail instead when CI requires it."""
    backends = pf.registered_backends()
    reason = None
    if name not in backends:
        reason = f"backend {name!r} is not registered"
    elif not backends[name].availability().available:
        reason = backends[name].availability().reason
    if reason:
        if name in REQUIRED:
            pytest.fail(f"required backend unusable: {reason}")
        pytest.skip(reason)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return request.param


@pytest.fixture(scope="session")
def all_backends() -> list[str]:
    usable = [b for b in BACKENDS if b in pf.registered_backends()
              and pf.registered_backends()[b].availability().available]
    missing = REQUIRED - set(usable)
    if missing:
        pytest.fail(f"required backends unusable: {sorted(missing)}")
    if len(usable) < 2:
        pytest.skip("cross-backend comparison needs at least two usable backends")
    return usable


@pytest.fixture(scope="session")
def digits() -> pf.datasets.Split:
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    return pf.datasets.digits()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test split not found at {MNIST_DIR}; set POLYFRAME_MNIST_DIR")
    return MNIST_DIR


def seed_cnn(input_shape: tuple[int, ...], num_classes: int = 10, dropout: float = 0.0) -> pf.Sequential:
    """The seed network of examples/mnist_cnn.py (optionally with dropout before the head)."""
    layers = [pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
              pf.Dense(128, activation="relu")]
    if dropout:
        layers.append(pf.Dropout(dropout))
    layers.append(pf.Dense(num_classes))
    return pf.Sequential(layers, input_shape=input_shape)


def max_relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def check_reference_gradients(ref, x, y, loss, rng, samples: int = 4) -> dict:
    """Compare the reference's parameter and input gradients with central finite differences
    at ``samples`` random entries of each array (rel 1e-5, abs 1e-9); returns the gradients."""
    _, grads, grad_x = ref.loss_and_grads(x, y, loss)

    def numeric(array, index, eps=1e-6):
        flat = array.reshape(-1)
        flat[index] += eps
        plus = ref.loss_and_grads(x, y, loss)[0]
        flat[index] -= 2 * eps
        minus = ref.loss_and_grads(x, y, loss)[0]
        flat[index] += eps
        return (plus - minus) / (2 * eps)

    for key, grad in grads.items():
        for i in rng.choice(grad.size, size=min(samples, grad.size), replace=False):
            assert grad.reshape(-1)[i] == pytest.approx(numeric(ref.weights[key], i), rel=1e-5, abs=1e-9), key
    for i in rng.choice(x.size, size=4, replace=False):
        assert grad_x.reshape(-1)[i] == pytest.approx(numeric(x, i), rel=1e-5, abs=1e-9)
    return grads


def regression_data(model: pf.Sequential, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` standard-normal float32 inputs and MSE targets shaped for ``model``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.input_shape)).astype(np.float32)
    return x, rng.normal(size=(n, *model.output_shape)).astype(np.float32)


def mse_trainer(model: pf.Sequential, backend: str, **kwargs) -> pf.Trainer:
    """A trainer with the MSE loss and no metrics, as the layer parity tests use."""
    return pf.Trainer(model, backend=backend, metrics=(), loss=pf.MeanSquaredError(), **kwargs)
