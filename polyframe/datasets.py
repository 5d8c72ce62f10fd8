"""Real datasets as float32 inputs and int64 labels.

* :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (no download; needs
  ``scikit-learn``, e.g. ``pip install polyframe[digits]``), NHWC images in [0, 1].
* :func:`mnist`: MNIST from a directory of IDX files (gzipped or not) or a Keras-style
  ``mnist.npz``. When only one split is present (e.g. just the 10,000-image test split), it is
  split into train and test with a fixed seed.
* :func:`tabular`: scikit-learn's bundled ``wine`` or ``breast_cancer`` table, standardised.
* :func:`text`: next-character prediction on the Python standard library's own source.
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

__all__ = ["DATASETS", "Split", "digits", "mnist", "read_idx", "tabular", "text", "load"]


@dataclass(frozen=True)
class Split:
    """A train/test split of one dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    metrics: tuple[str, ...] | None = None
    """Metrics worth reporting on this data; ``None`` leaves the choice to the trainer."""

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


def _sklearn_bunch(name: str) -> object:
    """scikit-learn's bundled table ``name`` (``load_<name>()``), or a :class:`DataError`."""
    try:
        from sklearn import datasets as bundled
    except ImportError:
        raise DataError(
            f"the {name} dataset ships with scikit-learn, which is not installed; "
            "install it with: pip install 'polyframe[digits]' (or scikit-learn)"
        ) from None
    return getattr(bundled, f"load_{name}")()


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1,797 8x8 digits, pixels scaled from 0..16 to [0, 1], shape (N, 8, 8, 1)."""
    bunch = _sklearn_bunch("digits")
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    return _random_split("digits", x, y, test_fraction, seed, 10)


TABLES = ("wine", "breast_cancer")


def tabular(name: str, *, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's bundled ``"wine"`` (178 x 13, 3 classes) or ``"breast_cancer"`` (569 x 30,
    2 classes) table, split by a permutation seeded with ``seed``.

    Every feature is standardised with the **training** split's mean and standard deviation
    (population form), so no statistic of the test rows leaks into the inputs.
    """
    if name not in TABLES:
        raise DataError(f"unknown table {name!r}; use one of {', '.join(TABLES)}")
    bunch = _sklearn_bunch(name)
    x = np.asarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]
    y = np.asarray(bunch.target, dtype=np.int64)  # type: ignore[attr-defined]
    raw = _random_split(name, x, y, test_fraction, seed, int(y.max()) + 1)
    mean, std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    std[std == 0] = 1.0

    def scale(part: np.ndarray) -> np.ndarray:
        return ((part - mean) / std).astype(np.float32)

    return Split(name, scale(raw.x_train), raw.y_train, scale(raw.x_test), raw.y_test,
                 raw.num_classes)


TEXT_MODULES = ("argparse.py", "dataclasses.py", "difflib.py", "textwrap.py")
"""The standard-library files (sorted, joined with a blank line) that form the text corpus."""
VOCABULARY = "\t\n" + "".join(chr(c) for c in range(32, 127))
"""Characters with their own id (``1 + position``); id 0 is every other character."""
UNKNOWN_ID = 0


def encode(chars: str) -> np.ndarray:
    """Character ids: ``1 + VOCABULARY.index(c)``, or :data:`UNKNOWN_ID` for other characters."""
    table = np.full(128, UNKNOWN_ID, dtype=np.int64)
    table[[ord(c) for c in VOCABULARY]] = np.arange(1, len(VOCABULARY) + 1)
    codes = np.fromiter(map(ord, chars), dtype=np.int64, count=len(chars))
    return np.where(codes < 128, table[np.minimum(codes, 127)], UNKNOWN_ID)


def stdlib_corpus(modules: tuple[str, ...] = TEXT_MODULES) -> str:
    """The source of ``modules`` from this interpreter's standard library, in the given order.

    The text is identical on every machine with the same Python minor version (the files are
    part of the interpreter) and differs between versions, so names built from it carry the
    version.
    """
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for module in modules:
        try:
            parts.append((root / module).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the standard-library file {module} under {root}: {exc}; "
                            "the text dataset needs the interpreter's own .py sources") from None
    return "\n\n".join(parts)


def _windows(ids: np.ndarray, context: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, len(ids) - context, stride)
    if not len(starts):
        raise DataError(f"text of {len(ids)} characters holds no window of {context} + 1; "
                        "use a shorter context or more text")
    x = ids[starts[:, None] + np.arange(context)].astype(np.float32)
    return x, ids[starts + context]


def text(*, context: int = 32, stride: int = 8, validation_fraction: float = 0.1,
         modules: tuple[str, ...] = TEXT_MODULES) -> Split:
    """Next-character prediction on :func:`stdlib_corpus`: many-to-one, one label per window.

    Inputs are ``(context,)`` float32 character ids (see :func:`encode`; use an ``int32``
    :func:`polyframe.Input` with an ``Embedding`` of ``num_classes`` rows), the label is the id
    of the character that follows. The split is by position: the last ``validation_fraction``
    of the text is the test split, so no window shares a character with the training text.
    Windows start every ``stride`` characters. The name records the Python version, e.g.
    ``text-py3.11``. Report ``perplexity`` (``exp`` of the mean cross-entropy in nats).
    """
    import platform

    check_int(context, "context", error=DataError)
    check_int(stride, "stride", error=DataError)
    check_float(validation_fraction, "validation_fraction", low=0.0, high=1.0, low_open=True,
                high_open=True, error=DataError)
    ids = encode(stdlib_corpus(tuple(modules)))
    cut = int(round(len(ids) * (1.0 - validation_fraction)))
    version = ".".join(platform.python_version_tuple()[:2])
    return Split(f"text-py{version}", *_windows(ids[:cut], context, stride),
                 *_windows(ids[cut:], context, stride), len(VOCABULARY) + 1,
                 metrics=("accuracy", "perplexity"))


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


DATASETS = ("digits", "mnist", *TABLES, "text")


def load(name: str, data_dir: str | Path | None = None, *, split_seed: int = 0) -> Split:
    """A dataset by name: one of :data:`DATASETS` (``"mnist"`` needs ``data_dir``).

    The train/test split is fixed by ``split_seed``, independent of the training seed
    (``"text"`` splits by position and ignores it).
    """
    if name == "digits":
        return digits(seed=split_seed)
    if name == "mnist":
        if data_dir is None:
            raise DataError("the mnist dataset needs a directory: pass --data-dir DIR (or data_dir=)")
        return mnist(data_dir, seed=split_seed)
    if name in TABLES:
        return tabular(name, seed=split_seed)
    if name == "text":
        return text()
    raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
