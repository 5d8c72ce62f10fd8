"""Model files: plain Python files that describe a model for the CLI.

Convention: the file defines ``build_model(input_shape, num_classes)`` returning a
:class:`polyframe.Sequential` or a functional :class:`polyframe.Model` with one input and one output, sized to the data it is given. It may also define
``optimizer()`` (default ``Adam(1e-3)``) and ``loss()`` (default sparse categorical
cross-entropy from logits)::

    import polyframe as pf

    def build_model(input_shape, num_classes):
        return pf.Sequential([pf.Flatten(), pf.Dense(num_classes)], input_shape=input_shape)

    def optimizer():
        return pf.SGD(0.1, momentum=0.9)
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .errors import ModelFileError, PolyframeError
from .losses import Loss, SparseCategoricalCrossentropy
from .model import Model
from .optimizers import Adam, Optimizer

__all__ = ["ModelRecipe", "load_model_file"]


@dataclass(frozen=True)
class ModelRecipe:
    """What a model file defines, resolved for one dataset."""

    name: str
    model: Model
    loss: Loss
    optimizer: Optimizer


def _where(exc: BaseException, path: Path) -> str:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else str(path)


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise ModelFileError(f"model file {path} {state}; pass the path of a .py file "
                             "that defines build_model(input_shape, num_classes)")
    spec = importlib.util.spec_from_file_location(f"polyframe_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path} cannot be loaded as Python; model files are .py files")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # lets a model file import modules beside it
    try:
        spec.loader.exec_module(module)
    except PolyframeError:
        raise
    except SystemExit as exc:
        raise ModelFileError(f"{path} called sys.exit({exc.code!r}) while loading; model files "
                             "must only define build_model()") from None
    except SyntaxError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # the user's code: report it in one line, with its location
        raise ModelFileError(f"{_where(exc, path)}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _call(module: ModuleType, path: Path, name: str, *args: object) -> object:
    try:
        return getattr(module, name)(*args)
    except PolyframeError:
        raise
    except (Exception, SystemExit) as exc:
        raise ModelFileError(f"{_where(exc, path)}: {name}() failed: {type(exc).__name__}: {exc}") from None


def load_model_file(path: str | Path, input_shape: tuple[int, ...], num_classes: int) -> ModelRecipe:
    """Import a model file and build its model, loss and optimizer for the given data."""
    path = Path(path).resolve()
    module = _import(path)
    if not callable(getattr(module, "build_model", None)):
        raise ModelFileError(f"{path} defines no build_model(input_shape, num_classes) function; "
                             "add one that returns a polyframe.Sequential or polyframe.Model")
    model = _call(module, path, "build_model", tuple(input_shape), int(num_classes))
    if not isinstance(model, Model):
        raise ModelFileError(f"{path}: build_model() returned {type(model).__name__}, "
                             "not a polyframe model (Sequential or Model)")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(f"{path}: the model has {len(model.inputs)} input(s) and "
                             f"{len(model.outputs)} output(s); model files (polyframe train, bench, "
                             "recommend) take one of each; train it from Python (docs/models.md)")
    loss = _call(module, path, "loss") if hasattr(module, "loss") else SparseCategoricalCrossentropy()
    optimizer = _call(module, path, "optimizer") if hasattr(module, "optimizer") else Adam(1e-3)
    if not isinstance(loss, Loss) or not isinstance(optimizer, Optimizer):
        raise ModelFileError(f"{path}: loss() must return a polyframe loss and optimizer() a "
                             "polyframe optimizer")
    sys.modules.pop(module.__name__, None)
    return ModelRecipe(path.stem, model, loss, optimizer)
