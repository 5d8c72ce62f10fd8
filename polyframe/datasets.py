"""Real datasets, returned as NHWC float32 images in [0, 1] and int64 labels.

* :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (no download; needs
  ``scikit-learn``, e.g. ``pip install polyframe[digits]``).
* :func:`mnist`: MNIST from a directory of IDX files (gzipped or not) or a Keras-style
  ``mnist.npz``. When only one split is present (e.g. just the 10,000-image test split), it is
  split into train and test with a fixed seed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .random import generator

__all__ = ["Split", "digits", "mnist", "read_idx", "load"]


@dataclass(frozen=True)
class Split:
    """A train/test split of one dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"input {self.input_shape}, {self.num_classes} classes")


def _random_split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    order = generator(seed, "split").permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Split(name, x[train], y[train], x[test], y[test], int(y.max()) + 1)


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1,797 8x8 digits, pixels scaled from 0..16 to [0, 1], shape (N, 8, 8, 1)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits dataset ships with scikit-learn, which is not installed; "
            "install it with: pip install 'polyframe[digits]' (or scikit-learn)"
        ) from None
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    return _random_split("digits", x, y, test_fraction, seed)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into an array, checking its header against its size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number); re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header incomplete); re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header {dims} needs {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _scale(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., None]


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{where}: expected images (N, H, W) and labels (N,), got {images.shape} and "
            f"{labels.shape}; check that the files belong together"
        )


def mnist(path: str | Path, *, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """MNIST from ``path``: a directory with IDX files or ``mnist.npz``, or the ``.npz`` itself.

    With both official splits present they are used as they are; with only one, it is split
    ``1 - test_fraction`` / ``test_fraction`` by a permutation seeded with ``seed``
    (10,000 test images -> 8,000 train / 2,000 test).
    """
    path = Path(path)
    npz = path if path.suffix == ".npz" else path / "mnist.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as data:
                parts = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(
                f"{npz} is not a Keras-style mnist.npz (needs x_train, y_train, x_test, y_test): {exc}"
            ) from None
        _check_pair(parts["x_train"], parts["y_train"], str(npz))
        _check_pair(parts["x_test"], parts["y_test"], str(npz))
        return Split("mnist", _scale(parts["x_train"]), parts["y_train"].astype(np.int64),
                     _scale(parts["x_test"]), parts["y_test"].astype(np.int64), 10)

    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if path.is_dir():
        for split, (image_stem, label_stem) in _IDX_NAMES.items():
            images, labels = _find(path, image_stem), _find(path, label_stem)
            if images and labels:
                pair = read_idx(images), read_idx(labels)
                _check_pair(*pair, str(images))
                found[split] = pair
    if not found:
        looked = ", ".join(f"{stem}[.gz]" for pair in _IDX_NAMES.values() for stem in pair)
        state = "does not exist" if not path.exists() else "has none of them"
        raise DataError(
            f"no MNIST data at {path} ({state}); looked for mnist.npz and the IDX files {looked}. "
            "Pass --data-dir pointing at a directory that holds them"
        )
    if len(found) == 2:
        (xtr, ytr), (xte, yte) = found["train"], found["test"]
        return Split("mnist", _scale(xtr), ytr.astype(np.int64), _scale(xte), yte.astype(np.int64), 10)
    images, labels = next(iter(found.values()))
    return _random_split("mnist", _scale(images), labels.astype(np.int64), test_fraction, seed)


def load(name: str, data_dir: str | Path | None = None, *, split_seed: int = 0) -> Split:
    """A dataset by name: ``"digits"`` or ``"mnist"`` (which needs ``data_dir``).

    The train/test split is fixed by ``split_seed``, independent of the training seed.
    """
    if name == "digits":
        return digits(seed=split_seed)
    if name == "mnist":
        if data_dir is None:
            raise DataError("the mnist dataset needs a directory: pass --data-dir DIR (or data_dir=)")
        return mnist(data_dir, seed=split_seed)
    raise DataError(f"unknown dataset {name!r}; use 'digits' or 'mnist'")
