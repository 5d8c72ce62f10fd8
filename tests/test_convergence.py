"""Real training runs reach the accuracy the seed example promises, on every backend.

The digits run (10 epochs, a few seconds) is in the default suite; the MNIST run (5 epochs on
8,000 images) is marked slow: `make test-slow`.
"""

import pytest

import polyframe as pf

from conftest import seed_cnn


def _train(data, backend, epochs, seed=0):
    trainer = pf.Trainer(seed_cnn(data.input_shape), optimizer=pf.Adam(1e-3), backend=backend, seed=seed)
    trainer.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, progress=False)
    return trainer.evaluate(data.x_test, data.y_test)["accuracy"]


def test_digits_reach_95_percent_in_10_epochs(backend, digits):
    assert _train(digits, backend, epochs=10) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_mnist_reaches_96_percent_in_5_epochs(backend, mnist_dir, seed):
    assert _train(pf.datasets.mnist(mnist_dir), backend, epochs=5, seed=seed) >= 0.96
