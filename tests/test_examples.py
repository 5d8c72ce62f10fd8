"""The examples' datasets, the perplexity metric, and cross-backend agreement of each example.

Each example model file is trained briefly on every backend from the same canonical weights
and batches; the backends' per-step losses and final validation metrics must agree within
:data:`SHORT_RTOL`. The full recorded runs (examples/README.md) are marked slow.
"""

from __future__ import annotations

import platform
import re
import sys

import numpy as np
import pytest

import polyframe as pf
from polyframe.cli import main
from polyframe.datasets import VOCABULARY, encode, stdlib_corpus
from polyframe.errors import DataError
from polyframe.modelfile import load_model_file

from conftest import ROOT, require

EXAMPLES = ROOT / "examples"
SHORT_RTOL = 1e-3
"""Relative agreement of per-step losses and validation loss/perplexity over the first 16-27
steps. Observed spread across the three backends: at most 4e-5 (the Transformer), 9e-6 for the
others; planted semantic differences move the same figures by 2.5e-2 to 1.6e-1 (a LayerNorm
epsilon of 1e-3 instead of 1e-5; a zero LSTM forget-gate bias). See examples/README.md."""
LONG_RTOL = 0.03
"""Relative agreement of the final validation perplexity after the recorded 3-epoch runs
(observed at most 1.0%, the Transformer; 0.5% the LSTM)."""
LONG_ACCURACY_ATOL = 0.01
"""Absolute agreement of final validation accuracies after the recorded runs (observed at most
0.52 points), or one sample on test splits under 100 samples."""


# -- datasets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, features, classes", [("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_tables_are_standardised_with_training_statistics_only(name, features, classes):
    pytest.importorskip("sklearn")
    split = pf.datasets.load(name)
    assert split.input_shape == (features,) and split.num_classes == classes
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(split.x_train.std(axis=0), 1.0, rtol=1e-4)
    assert np.abs(split.x_test.mean(axis=0)).max() > 1e-3  # test rows did not shape the scaling
    again = pf.datasets.load(name)
    np.testing.assert_array_equal(again.x_test, split.x_test)
    assert len(split.x_train) + len(split.x_test) == {"wine": 178, "breast_cancer": 569}[name]


def test_text_windows_predict_the_next_character_and_validate_on_the_end_of_the_text():
    split = pf.datasets.text(context=16, stride=5)
    version = ".".join(platform.python_version_tuple()[:2])
    assert split.name == f"text-py{version}" and split.num_classes == len(VOCABULARY) + 1
    assert split.input_shape == (16,) and split.metrics == ("accuracy", "perplexity")
    ids = encode(stdlib_corpus())
    cut = int(round(len(ids) * 0.9))
    np.testing.assert_array_equal(split.x_train[3], ids[15:31])
    assert split.y_train[3] == ids[31]
    np.testing.assert_array_equal(split.x_test[0], ids[cut:cut + 16])
    assert split.y_test[0] == ids[cut + 16]
    assert len(split.x_train) == len(range(0, cut - 16, 5))
    assert split.x_train.max() < split.num_classes and split.x_train.min() >= 0


def test_encode_maps_each_vocabulary_character_to_its_own_id_and_the_rest_to_unknown():
    ids = encode("\t\n ~a\u00e9\x7f\r")
    np.testing.assert_array_equal(ids, [1, 2, 3, len(VOCABULARY), 1 + VOCABULARY.index("a"), 0, 0, 0])


def test_bad_dataset_requests_are_polyframe_errors():
    with pytest.raises(DataError, match="use one of digits, mnist, wine, breast_cancer, text"):
        pf.datasets.load("imagenet")
    with pytest.raises(DataError, match="use one of wine, breast_cancer"):
        pf.datasets.tabular("iris")
    with pytest.raises(DataError, match="no window"):
        pf.datasets.text(context=10**7)
    with pytest.raises(DataError, match="cannot read the standard-library file"):
        pf.datasets.text(modules=("no_such_module.py",))


# -- perplexity ----------------------------------------------------------------------------------
def test_perplexity_is_exp_of_the_mean_cross_entropy_over_every_update():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, size=10)
    metric = pf.metrics.get_metric("perplexity")
    metric.update(labels[:4], logits[:4])
    metric.update(labels[4:], logits[4:])
    log_probs = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    expected = np.exp(-log_probs[np.arange(10), labels].mean())
    assert metric.result() == pytest.approx(expected, rel=1e-12)
    one_hot = pf.metrics.Perplexity()
    one_hot.update(np.eye(7)[labels], logits)
    assert one_hot.result() == pytest.approx(expected, rel=1e-12)
    uniform = pf.metrics.Perplexity()
    uniform.update(labels, np.full((10, 7), 1e4, np.float32))  # huge but equal logits: stable
    assert uniform.result() == pytest.approx(7.0, rel=1e-12)
    metric.reset()
    assert np.isnan(metric.result())


# -- the examples on every backend ---------------------------------------------------------------
def _tiny(example: str) -> tuple[pf.datasets.Split, int, int]:
    """A small slice of the example's data, with epochs and batch size for a few-second run."""
    if example == "tabular_mlp":
        pytest.importorskip("sklearn")
        return pf.datasets.tabular("wine"), 3, 16
    if example == "residual_cnn":  # the MNIST network, on 8x8 digits
        pytest.importorskip("sklearn")
        d = pf.datasets.digits()
        return pf.datasets.Split("digits", d.x_train[:256], d.y_train[:256], d.x_test[:256],
                                 d.y_test[:256], 10), 2, 32
    d = pf.datasets.text(context=8, stride=16)
    return pf.datasets.Split(d.name, d.x_train[:512], d.y_train[:512], d.x_test[:256],
                             d.y_test[:256], d.num_classes, d.metrics), 2, 64


def _train(example: str, backend: str, data: pf.datasets.Split, epochs: int, batch: int
           ) -> tuple[list[float], dict[str, float]]:
    recipe = load_model_file(EXAMPLES / f"{example}.py", data.input_shape, data.num_classes)
    trainer = pf.Trainer(recipe.model, loss=recipe.loss, optimizer=recipe.optimizer,
                         backend=backend, metrics=data.metrics, seed=0)
    history = trainer.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch, progress=False)
    return history.step_losses, trainer.evaluate(data.x_test, data.y_test)


PAIRS = {"tabular_mlp": ("torch", "tensorflow", "jax"), "residual_cnn": ("torch", "jax"),
         "char_lstm": ("torch", "tensorflow"), "char_gru": ("tensorflow", "jax"),
         "char_transformer": ("torch", "jax")}
"""Backends each example is compared on in the default suite (every pair is covered; the slow
test compares all three on the full runs)."""


@pytest.mark.parametrize("example", PAIRS)
def test_each_example_trains_the_same_way_on_two_backends(example):
    backends = PAIRS[example]
    for name in backends:
        require(name)
    data, epochs, batch = _tiny(example)
    runs = {b: _train(example, b, data, epochs, batch) for b in backends}
    first, (losses, result) = backends[0], runs[backends[0]]
    assert np.mean(losses[-3:]) < losses[0]  # it learns, so agreement is not agreement on noise
    for other in backends[1:]:
        other_losses, other_result = runs[other]
        np.testing.assert_allclose(other_losses, losses, rtol=SHORT_RTOL,
                                   err_msg=f"{example}: step losses {other} vs {first}")
        for key in ("loss", "perplexity"):
            if key in result:
                assert other_result[key] == pytest.approx(result[key], rel=SHORT_RTOL), \
                    f"{example}: validation {key} {other} vs {first}"
        assert abs(other_result["accuracy"] - result["accuracy"]) <= 1.5 / len(data.x_test)


def test_cli_trains_an_example_on_a_table(capsys):
    pytest.importorskip("sklearn")
    assert main(["train", str(EXAMPLES / "tabular_mlp.py"), "--data", "wine", "--epochs", "2",
                 "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "data wine: 142 train / 36 test, input (13,), 3 classes" in out
    assert re.search(r"test accuracy 0\.\d{4}  loss \d\.\d{4}  \(36 samples\)", out)


# -- the recorded runs (slow) --------------------------------------------------------------------
RECORDED = [("tabular_mlp", "wine", 30, 16), ("tabular_mlp", "breast_cancer", 30, 16),
            ("residual_cnn", "mnist", 3, 64), ("char_lstm", "text", 3, 64),
            ("char_gru", "text", 3, 64), ("char_transformer", "text", 3, 64)]


@pytest.mark.slow
@pytest.mark.parametrize("example, dataset, epochs, batch", RECORDED)
def test_recorded_runs_agree_across_backends(example, dataset, epochs, batch, all_backends, request):
    data_dir = request.getfixturevalue("mnist_dir") if dataset == "mnist" else None
    if dataset != "text":
        pytest.importorskip("sklearn")
    data = pf.datasets.load(dataset, data_dir)
    results = {b: _train(example, b, data, epochs, batch)[1] for b in all_backends}
    print(f"\n{example} on {dataset}: {results}", file=sys.stderr)
    base = results[all_backends[0]]
    for other in all_backends[1:]:
        atol = max(LONG_ACCURACY_ATOL, 1.5 / len(data.x_test))
        assert abs(results[other]["accuracy"] - base["accuracy"]) <= atol
        if "perplexity" in base:
            assert results[other]["perplexity"] == pytest.approx(base["perplexity"], rel=LONG_RTOL)
