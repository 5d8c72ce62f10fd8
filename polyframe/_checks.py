"""Argument checks shared by specs, the trainer and the datasets: one message style everywhere."""

from __future__ import annotations

import inspect
import math
from numbers import Integral, Real

import numpy as np

from .errors import ConfigError

__all__ = ["check_int", "check_float", "check_bool", "MAX_SEED", "SpecMeta"]

MAX_SEED = 2**63 - 1
"""Largest seed accepted: every framework's seeding takes a signed 64-bit integer."""

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_int(value: object, what: str, *, minimum: int = 1, maximum: int | None = None,
              error: type[Exception] = ConfigError) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``; bools and non-integers are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise error(f"{what} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise error(f"{what} must be >= {minimum}{upper}, got {value}")
    return value


def check_float(value: object, what: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False,
                error: type[Exception] = ConfigError) -> float:
    """``value`` as a finite float (representable in float32) within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise error(f"{what} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise error(f"{what} must be a finite float32 number, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open or high is None else "]"
        bounds = f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}"
        raise error(f"{what} must be in {bounds}, got {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    """``value`` if it is a real bool (numpy bools included); truthy strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{what} must be True or False, got {value!r}")
    return bool(value)


class SpecMeta(type):
    """Metaclass of polyframe's specs (layers, losses, optimizers, schedules): a misspelt or
    missing option is a :class:`ConfigError` that lists the valid ones, not a bare TypeError."""

    def __call__(cls, *args: object, **kwargs: object) -> object:
        signature = inspect.signature(cls.__init__)
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as error:
            options = ", ".join(list(signature.parameters)[1:])
            raise ConfigError(f"{cls.__name__}: {error}; its options are: {options}") from None
        return super().__call__(*args, **kwargs)
