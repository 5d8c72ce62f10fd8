"""Declared limitations: what a backend does not support, or supports only within a looser tolerance.

Limitations are data, one JSON object keyed by backend name::

    {"my-backend": [
        {"level": "forward", "test": "test_forward[lstm*]", "expect": "fail",
         "reason": "LSTM is not implemented yet"},
        {"level": "gradients", "test": "*gru*", "rtol": 1e-3,
         "reason": "the fused GRU kernel accumulates in a different order"}
    ]}

``test`` is a pattern (``*`` and ``?`` wildcards; brackets are literal) over the case id (the test name with the backend left out,
e.g. ``test_forward[conv2d-same]``). ``"expect": "fail"`` turns the matching tests into expected
failures (an unexpected pass is reported); ``rtol`` / ``atol`` replace the level's tolerances.
The built-in file covers the built-in backends; ``--limitations FILE`` adds more.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from polyframe.errors import ConfigError

__all__ = ["Limitation", "load_limitations", "matching"]

_FIELDS = {"level", "test", "expect", "rtol", "atol", "reason"}


@dataclass(frozen=True)
class Limitation:
    backend: str
    level: str
    test: str
    reason: str
    expect_fail: bool = False
    rtol: float | None = None
    atol: float | None = None

    def describe(self) -> str:
        what = "expected failure" if self.expect_fail else ", ".join(
            f"{name} {value:g}" for name, value in (("rtol", self.rtol), ("atol", self.atol))
            if value is not None)
        return f"{self.level} {self.test}: {what} ({self.reason})"


def _parse(data: object, source: str) -> list[Limitation]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: limitations must be a JSON object keyed by backend name")
    found = []
    for backend, entries in data.items():
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: {backend!r} must map to a list of limitations")
        for entry in entries:
            if not isinstance(entry, dict) or not {"level", "test", "reason"} <= set(entry):
                raise ConfigError(f"{source}: each limitation of {backend!r} needs 'level', 'test' "
                                  f"and 'reason', got {entry!r}")
            unknown = set(entry) - _FIELDS
            if unknown:
                raise ConfigError(f"{source}: unknown limitation field(s) {sorted(unknown)}; "
                                  f"allowed: {sorted(_FIELDS)}")
            expect = entry.get("expect")
            if expect not in (None, "fail"):
                raise ConfigError(f"{source}: 'expect' must be \"fail\", got {expect!r}")
            tolerances = {k: entry.get(k) for k in ("rtol", "atol")}
            if expect is None and all(v is None for v in tolerances.values()):
                raise ConfigError(f"{source}: limitation {entry['test']!r} of {backend!r} says "
                                  "neither \"expect\": \"fail\" nor a looser rtol/atol")
            for name, value in tolerances.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or value < 0):
                    raise ConfigError(f"{source}: {name} must be a non-negative number, got {value!r}")
            found.append(Limitation(backend, entry["level"], entry["test"], str(entry["reason"]),
                                    expect == "fail", tolerances["rtol"], tolerances["atol"]))
    return found


def load_limitations(extra: list[str] | tuple[str, ...] = ()) -> list[Limitation]:
    """The built-in limitations, then those of each file in ``extra``."""
    text = resources.files("polyframe_conformance").joinpath("limitations.json").read_text()
    found = _parse(json.loads(text), "built-in limitations.json")
    for name in extra:
        path = Path(name)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read limitations file {name}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"limitations file {name} is not valid JSON: {exc}") from None
        found += _parse(data, name)
    return found


def matching(limitations: list[Limitation], backend: str, level: str, case: str) -> list[Limitation]:
    """The limitations that apply to one test."""
    return [lim for lim in limitations if lim.backend == backend and lim.level == level
            and fnmatch.fnmatchcase(case, lim.test.replace("[", "[[]"))]
