"""Real datasets, returned as NHWC float32 images in [0, 1] and int64 labels.

* :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (no download; needs
  ``scikit-learn``, e.g. ``pip install polyframe[digits]``).
* :func:`mnist`: MNIST from a directory of IDX files (gzipped or not) or a Keras-style
  ``mnist.npz``. When only one split is present (e.g. just the 10,000-image test split), it is
  split into train and test with a fixed seed.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._checks import MAX_SEED, check_float, check_int
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

    def __post_init__(self) -> None:
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if len(x) == 0 or len(x) != len(y):
                raise DataError(f"{self.name}: the {part} split has {len(x)} inputs and {len(y)} "
                                "labels; it needs at least one sample and one label per input")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{self.name}: train samples have shape {self.x_train.shape[1:]} but "
                            f"test samples {self.x_test.shape[1:]}; both splits must match")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"input {self.input_shape}, {self.num_classes} classes")


def _random_split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
                  num_classes: int) -> Split:
    check_float(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True,
                error=DataError)
    check_int(seed, "seed", minimum=0, maximum=MAX_SEED, error=DataError)
    order = generator(seed, "split").permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Split(name, x[train], y[train], x[test], y[test], num_classes)


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
    return _random_split("digits", x, y, test_fraction, seed, 10)


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
    expected = header + math.prod(dims) * dtype.itemsize
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


def _images_and_labels(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked MNIST arrays: pixels 0..255 scaled to [0, 1] as (N, H, W, 1), labels 0..9 as int64."""
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or not len(images):
        raise DataError(
            f"{where}: expected non-empty images (N, H, W) and labels (N,), got {images.shape} and "
            f"{labels.shape}; check that the files belong together"
        )
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise DataError(f"{where}: images must be numeric, got dtype {images.dtype}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{where}: MNIST labels must be integers 0..9, got dtype {labels.dtype} "
                        f"with values {labels.min()}..{labels.max()}; the file is not MNIST labels")
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int64)


def mnist(path: str | Path, *, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """MNIST from ``path``: a directory with IDX files or ``mnist.npz``, or the ``.npz`` itself.

    With both official splits present they are used as they are; with only one, it is split
    ``1 - test_fraction`` / ``test_fraction`` by a permutation seeded with ``seed``
    (10,000 test images -> 8,000 train / 2,000 test).
    """
    if not isinstance(path, (str, Path)):
        raise DataError(f"the MNIST path must be a directory or .npz path, got {path!r}")
    path = Path(path)
    try:
        return _read_mnist(path, test_fraction, seed)
    except OSError as exc:
        raise DataError(f"cannot read MNIST data at {path}: {exc.strerror or exc}; check the path "
                        "and its permissions") from None


def _read_mnist(path: Path, test_fraction: float, seed: int) -> Split:
    npz = path if path.suffix == ".npz" else path / "mnist.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as data:
                parts = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (ValueError, KeyError, EOFError) as exc:
            reason = "it holds Python objects" if "allow_pickle" in str(exc) else str(exc)
            raise DataError(f"{npz} is not a Keras-style mnist.npz with arrays x_train, y_train, "
                            f"x_test, y_test ({reason})") from None
        x_train, y_train = _images_and_labels(parts["x_train"], parts["y_train"], str(npz))
        x_test, y_test = _images_and_labels(parts["x_test"], parts["y_test"], str(npz))
        return Split("mnist", x_train, y_train, x_test, y_test, 10)

    if path.exists() and not path.is_dir():
        raise DataError(f"{path} is neither a directory nor a .npz file; pass the directory that "
                        "holds the MNIST files")
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (image_stem, label_stem) in _IDX_NAMES.items():
        images, labels = _find(path, image_stem), _find(path, label_stem)
        if images and labels:
            found[split] = _images_and_labels(read_idx(images), read_idx(labels), str(images))
        elif images or labels:
            missing = label_stem if images else image_stem
            raise DataError(f"{path} has {(images or labels).name} but not {missing}[.gz]; "  # type: ignore[union-attr]
                            "add the missing file")
    if not found:
        looked = ", ".join(f"{stem}[.gz]" for pair in _IDX_NAMES.values() for stem in pair)
        state = "does not exist" if not path.exists() else "has none of them"
        raise DataError(
            f"no MNIST data at {path} ({state}); looked for mnist.npz and the IDX files {looked}. "
            "Pass --data-dir pointing at a directory that holds them"
        )
    if len(found) == 2:
        return Split("mnist", *found["train"], *found["test"], 10)
    images, labels = next(iter(found.values()))
    return _random_split("mnist", images, labels, test_fraction, seed, 10)


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
