"""``polyframe conformance``: runs the level modules with pytest, in this process."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources

import polyframe as pf

from ._levels import level_paths, select_levels
from ._limitations import load_limitations
from ._report import report_paths

__all__ = ["run"]


def run(backends: Sequence[str] = (), levels: Sequence[str] = (), report: str | None = None,
        limitations: Sequence[str] = (), pytest_args: Sequence[str] = ()) -> int:
    """Run the conformance suite; returns pytest's exit status (0 when every test passed).

    ``backends``: names (default every registered backend); ``levels``: keys or numbers, or
    ``all`` (default every quick level); ``report``: Markdown path, JSON written beside it.
    Bad arguments raise a :class:`polyframe.PolyframeError` before anything runs.
    """
    import pytest

    for name in backends:
        pf.get_backend(name)
    selected = select_levels(list(levels))
    load_limitations(tuple(limitations))
    if report is not None:
        report_paths(report)
    ini = resources.files("polyframe_conformance").joinpath("pytest-conformance.ini")
    args = ["-c", str(ini), "--rootdir", str(ini.parent), "-p", "no:cacheprovider", "-q",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", *level_paths(selected)]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "polyframe_conformance.plugin"]
    for name in backends:
        args += ["--pf-backend", name]
    for level in selected:
        args += ["--pf-level", level.key]
    for path in limitations:
        args += ["--pf-limitations", path]
    if report is not None:
        args += ["--pf-report", report]
    return int(pytest.main([*args, *pytest_args]))
