"""polyframe's exception types.

Every error polyframe raises on bad input is a :class:`PolyframeError`; its message says what is
wrong and what to do. The CLI prints the message on one line and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "PolyframeError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "ConfigError",
    "ShapeError",
    "DataError",
    "LabelError",
    "NonFiniteLossError",
    "ModelFileError",
    "CheckpointError",
    "DistributedError",
]


class PolyframeError(Exception):
    """Base class of every error polyframe raises about its input or environment."""


class BackendNotFoundError(PolyframeError):
    """No registered backend has the requested name."""


class BackendUnavailableError(PolyframeError):
    """The backend is registered, but its framework cannot be used here."""


class ConfigError(PolyframeError, ValueError):
    """A layer, loss, optimizer or trainer argument is invalid."""


class ShapeError(PolyframeError, ValueError):
    """A tensor's shape does not fit the layer or model it is given to."""


class DataError(PolyframeError):
    """A dataset is missing, unreadable or malformed."""


class LabelError(DataError, ValueError):
    """Labels do not fit the model's output (out of range, wrong dtype or shape)."""


class NonFiniteLossError(PolyframeError, ArithmeticError):
    """The training loss became NaN or infinite."""


class ModelFileError(PolyframeError):
    """A model file cannot be loaded or does not follow the model-file convention."""


class CheckpointError(PolyframeError):
    """A checkpoint cannot be written, is not a polyframe checkpoint, is truncated or corrupted,
    or does not fit the model / trainer it is loaded into (nothing is changed then)."""


class DistributedError(PolyframeError):
    """A data-parallel worker failed, died or stopped answering; the whole job was stopped."""
