"""Batch order, validation split and the real datasets."""

import gzip
import struct

import numpy as np
import pytest

import polyframe as pf
from polyframe.data import batch_indices, split_validation
from polyframe.datasets import read_idx


def test_each_epoch_visits_every_sample_once_in_a_seeded_order():
    epoch0 = list(batch_indices(103, 10, seed=3, epoch=0, shuffle=True))
    assert [len(b) for b in epoch0] == [10] * 10 + [3]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(103))
    again = list(batch_indices(103, 10, seed=3, epoch=0, shuffle=True))
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, again))
    epoch1 = np.concatenate(list(batch_indices(103, 10, seed=3, epoch=1, shuffle=True)))
    other_seed = np.concatenate(list(batch_indices(103, 10, seed=4, epoch=0, shuffle=True)))
    assert not np.array_equal(np.concatenate(epoch0), epoch1)
    assert not np.array_equal(np.concatenate(epoch0), other_seed)


def test_no_shuffle_keeps_the_order():
    order = np.concatenate(list(batch_indices(7, 3, seed=0, epoch=5, shuffle=False)))
    np.testing.assert_array_equal(order, np.arange(7))


def test_validation_split_holds_out_the_tail():
    x, y = np.arange(10)[:, None], np.arange(10)
    xt, yt, xv, yv = split_validation(x, y, 0.3)
    np.testing.assert_array_equal(yt, np.arange(7))
    np.testing.assert_array_equal(yv, [7, 8, 9])
    with pytest.raises(pf.ConfigError):
        split_validation(x[:1], y[:1], 0.5)


def test_digits_are_nhwc_in_unit_range(digits):
    assert digits.x_train.shape[1:] == (8, 8, 1) and digits.x_train.dtype == np.float32
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert len(digits.x_test) == round(1797 * 0.2)
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() == 1.0
    assert set(np.unique(digits.y_train)) == set(range(10))


def test_mnist_test_split_becomes_8000_train_and_2000_test(mnist_dir):
    split = pf.datasets.mnist(mnist_dir)
    assert split.x_train.shape == (8000, 28, 28, 1) and split.x_test.shape == (2000, 28, 28, 1)
    labels = np.concatenate([split.y_train, split.y_test])
    # label counts per digit published with the data
    np.testing.assert_array_equal(np.bincount(labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert split.x_train.max() == 1.0 and split.x_train.min() == 0.0
    again = pf.datasets.mnist(mnist_dir)
    np.testing.assert_array_equal(split.y_test, again.y_test)


def _write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_with_both_splits(tmp_path, compress):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), compress)
    split = pf.datasets.mnist(tmp_path)
    assert split.x_train.shape == (6, 28, 28, 1) and split.x_test.shape == (4, 28, 28, 1)
    raw = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_allclose(split.x_train[..., 0], raw / 255.0, rtol=1e-6)


def test_keras_style_npz(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
             y_train=np.arange(5), x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
             y_test=np.arange(3))
    split = pf.datasets.mnist(tmp_path)
    assert len(split.x_train) == 5 and len(split.x_test) == 3
    np.testing.assert_array_equal(split.y_test, [0, 1, 2])


def test_missing_directory_names_the_files_looked_for(tmp_path):
    with pytest.raises(pf.DataError) as info:
        pf.datasets.mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert "does not exist" in message and "t10k-images-idx3-ubyte" in message and "mnist.npz" in message


def test_truncated_idx_file_is_detected(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28)), compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), compress=False)
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(pf.DataError, match="truncated"):
        pf.datasets.mnist(tmp_path)


def test_not_an_idx_file(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"hello world, not idx")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"nope")
    with pytest.raises(pf.DataError, match="not an IDX file"):
        pf.datasets.mnist(tmp_path)


def _idx_pair(directory, images, labels):
    _write_idx(directory / "t10k-images-idx3-ubyte", images, compress=False)
    _write_idx(directory / "t10k-labels-idx1-ubyte", labels, compress=False)


def test_zero_sample_idx_files(tmp_path):
    _idx_pair(tmp_path, np.zeros((0, 28, 28)), np.zeros(0))
    with pytest.raises(pf.DataError, match="non-empty"):
        pf.datasets.mnist(tmp_path)


def test_idx_header_whose_size_overflows(tmp_path):
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 2**31, 2**31, 2**31)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), compress=False)
    with pytest.raises(pf.DataError, match="truncated"):
        pf.datasets.mnist(tmp_path)


def test_labels_file_missing_is_named(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28)), compress=False)
    with pytest.raises(pf.DataError, match="t10k-labels-idx1-ubyte"):
        pf.datasets.mnist(tmp_path)


@pytest.mark.parametrize("x, y", [
    (np.array([["a"] * 28] * 28)[None].repeat(5, 0), np.arange(5)),          # string pixels
    (np.zeros((5, 28, 28), np.uint8), np.array([0.0, 1.7, 2.0, 3.0, 4.0])),  # float labels
    (np.zeros((5, 28, 28), np.uint8), np.array([0, 1, 2, 3, 40])),           # not a digit
])
def test_npz_with_bad_contents(tmp_path, x, y):
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(pf.DataError):
        pf.datasets.mnist(tmp_path)


def test_npz_with_pickled_objects(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.array([object()]), y_train=np.arange(1),
             x_test=np.zeros((1, 2, 2)), y_test=np.arange(1))
    with pytest.raises(pf.DataError, match="Python objects"):
        pf.datasets.mnist(tmp_path)


def test_a_split_without_test_samples_is_refused(digits):
    with pytest.raises(pf.DataError, match="test split"):
        pf.datasets.digits(test_fraction=1e-6)
