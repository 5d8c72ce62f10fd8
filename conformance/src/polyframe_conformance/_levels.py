"""The registry of conformance levels.

A level is a group of tests in one module, with the tolerances it holds a backend to. Later
levels (checkpoint portability, data parallelism) register themselves here with their own test
module; nothing else in the suite changes::

    register_level(Level("sharded-checkpoint", 11, "sharded checkpoints",
                         "my_package.test_sharded", "bitwise after a round trip"))
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from polyframe.errors import ConfigError

__all__ = ["Level", "register_level", "registered_levels", "get_level", "select_levels", "level_paths"]


@dataclass(frozen=True)
class Level:
    """One conformance level: ``key`` names it on the command line and in reports."""

    key: str
    number: int
    title: str
    module: str
    """Dotted name of the pytest module holding the level's tests."""
    tolerance: str
    """The tolerances the level applies, as the report states them."""
    slow: bool = False
    """Slow levels run only when asked for by name (``--level convergence``) or with ``all``."""


_LEVELS: dict[str, Level] = {}


def register_level(level: Level) -> Level:
    """Add ``level``; a key or number already taken is a :class:`ConfigError`."""
    if level.key in _LEVELS:
        raise ConfigError(f"a conformance level named {level.key!r} is already registered")
    if any(other.number == level.number for other in _LEVELS.values()):
        raise ConfigError(f"conformance level number {level.number} is already taken")
    _LEVELS[level.key] = level
    return level


def registered_levels() -> list[Level]:
    """Every registered level, in number order."""
    return sorted(_LEVELS.values(), key=lambda level: level.number)


def get_level(key: str) -> Level:
    try:
        return _LEVELS[key]
    except KeyError:
        raise ConfigError(f"unknown conformance level {key!r}; choose from "
                          f"{', '.join(l.key for l in registered_levels())} or 'all'") from None


def select_levels(names: list[str] | tuple[str, ...] | None) -> list[Level]:
    """The levels named (keys or numbers; ``all`` = every level); none named = every quick level."""
    if not names:
        return [level for level in registered_levels() if not level.slow]
    chosen: dict[str, Level] = {}
    for name in names:
        if name == "all":
            chosen.update((level.key, level) for level in registered_levels())
            continue
        by_number = [level for level in registered_levels() if str(level.number) == name]
        level = by_number[0] if by_number else get_level(name)
        chosen[level.key] = level
    return sorted(chosen.values(), key=lambda level: level.number)


def level_paths(selected: list[Level]) -> list[str]:
    """The files of the levels' test modules, for pytest to collect."""
    paths = []
    for level in selected:
        spec = importlib.util.find_spec(level.module)
        if spec is None or spec.origin is None:
            raise ConfigError(f"conformance level {level.key!r}: cannot find module {level.module!r}")
        paths.append(str(Path(spec.origin)))
    return paths


_BUILT_IN = "polyframe_conformance.levels."
for _level in (
    Level("registration", 1, "registration", _BUILT_IN + "test_registration",
          "exact: name, version, devices, availability, executable, initial weights bitwise"),
    Level("forward", 2, "forward", _BUILT_IN + "test_forward",
          "outputs vs float64 reference: rtol 1e-5, atol 1e-6"),
    Level("gradients", 3, "gradients", _BUILT_IN + "test_gradients",
          "loss rtol 1e-5; parameter and input gradients rtol 1e-4, atol 1e-6; "
          "training outputs and state after the step rtol 1e-5, atol 1e-6"),
    Level("optimizers", 4, "optimizers and schedules", _BUILT_IN + "test_optimizers",
          "one update rtol 1e-5, atol 1e-6; 50 updates rtol 1e-4, atol 1e-5"),
    Level("trajectory", 5, "training trajectory", _BUILT_IN + "test_trajectory",
          "per-step loss of 100 steps within 1e-3 relative of the reference and of every "
          "other conforming backend"),
    Level("convergence", 6, "convergence", _BUILT_IN + "test_convergence",
          "5 seeds; Welch t-test of test accuracy vs the float64 reference, p >= 0.01, "
          "or |difference of means| <= 0.005", slow=True),
    Level("determinism", 7, "determinism", _BUILT_IN + "test_determinism",
          "bitwise: batches seen, per-step losses and outputs, final weights"),
    Level("errors", 8, "errors", _BUILT_IN + "test_errors",
          "exact polyframe error type per bad input"),
    Level("data-parallel", 9, "data-parallel training", _BUILT_IN + "test_data_parallel",
          "2 workers vs 1, same global batch: per-step loss of 100 steps within 1e-3 relative"),
    Level("checkpoint", 10, "checkpoint portability", _BUILT_IN + "test_checkpoint",
          "same backend: bitwise after resuming; to and from each built-in backend: predictions "
          "rtol 1e-5, atol 1e-6, continued losses and weights rtol 1e-4, atol 1e-5"),
):
    register_level(_level)
