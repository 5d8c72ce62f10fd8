"""The pytest plugin (entry point ``pytest11``): backend parametrization, levels, declared
limitations, observed errors and the report.

Options: ``--pf-backend NAME`` (repeatable; default every registered backend),
``--pf-level KEY`` (repeatable; default every level collected), ``--pf-limitations FILE``,
``--pf-report FILE.md`` (also writes FILE.json). Importing this module imports no framework.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

import polyframe as pf

from ._compare import Checker
from ._levels import registered_levels, select_levels
from ._limitations import Limitation, load_limitations, matching

__all__ = ["pytest_addoption", "pytest_configure", "pytest_generate_tests",
           "pytest_collection_modifyitems", "pf_backend", "pf_check"]

ENV_REQUIRE = "POLYFRAME_REQUIRE_BACKENDS"
_STATE = pytest.StashKey["_State"]()
_CHECKER = pytest.StashKey[Checker]()


@dataclass
class _Test:
    nodeid: str
    backend: str
    level: str
    case: str
    limitations: list[Limitation]
    outcome: str = "not run"
    message: str = ""
    duration: float = 0.0
    observations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _State:
    requested_backends: list[str]
    levels: list[str] | None
    limitations: list[Limitation]
    report: str | None
    tests: dict[str, _Test] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    imported: bool = False
    _backends: list[str] | None = None

    @property
    def requested(self) -> bool:
        return bool(self.requested_backends)

    @property
    def backends(self) -> list[str]:
        """The backends under test: those asked for, else every registered one (looked up only
        when a conformance test is collected, so other test sessions never load plugins here)."""
        if self._backends is None:
            self._backends = self.requested_backends or list(pf.registered_backends())
        return self._backends


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("polyframe-conformance", "polyframe conformance suite")
    group.addoption("--pf-backend", action="append", default=[], metavar="NAME",
                    help="backend to test (repeatable; default: every registered backend)")
    group.addoption("--pf-level", action="append", default=[], metavar="KEY",
                    help="conformance level to run (repeatable; key or number, or 'all')")
    group.addoption("--pf-limitations", action="append", default=[], metavar="FILE",
                    help="JSON file of declared limitations keyed by backend (repeatable)")
    group.addoption("--pf-report", metavar="FILE.md",
                    help="write the conformance report as Markdown here and as JSON beside it")
    parser.addini("pf_cases", "conformance cases to run from the tables: 'all' (default) or "
                  "'smoke' (SMOKE_CASES of polyframe_conformance.cases, for a repository's quick "
                  "test command)", default="all")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pf_level(key): the conformance level a test belongs to")
    requested = list(config.getoption("pf_backend") or [])
    chosen_levels = config.getoption("pf_level") or None
    config.stash[_STATE] = _State(
        requested_backends=requested,
        levels=[level.key for level in select_levels(chosen_levels)] if chosen_levels else None,
        limitations=load_limitations(config.getoption("pf_limitations") or ()),
        report=config.getoption("pf_report"),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pf_backend" in metafunc.fixturenames:
        state = metafunc.config.stash[_STATE]
        metafunc.parametrize("pf_backend", state.backends, ids=state.backends, indirect=True)


def _import_frameworks(state: _State) -> None:
    """Import the selected backends' frameworks once, in registry (priority) order: some
    frameworks must load before others in one process (torch before tensorflow)."""
    if state.imported:
        return
    state.imported = True
    registered = pf.registered_backends()
    for name, backend in registered.items():
        if name in state.backends and backend.availability().available:
            try:
                importlib.import_module(backend.framework)
            except ImportError:
                pass


@pytest.fixture
def pf_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; skipped when it cannot run here, unless it was asked for."""
    name = request.param
    state = request.config.stash[_STATE]
    required = state.requested or name in os.environ.get(ENV_REQUIRE, "").split(",")
    backends = pf.registered_backends()
    reason = (f"backend {name!r} is not registered" if name not in backends
              else backends[name].availability().reason)
    if name in backends and backends[name].availability().available:
        _import_frameworks(state)
        return name
    if required:
        pytest.fail(f"required backend unusable: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pf_check(request: pytest.FixtureRequest) -> Checker:
    """Comparisons that record observed errors; looser tolerances come from declared limitations."""
    return request.node.stash.setdefault(_CHECKER, Checker())


def _level_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("pf_level")
    return marker.args[0] if marker else None


def _case_of(item: pytest.Item, backend: str) -> str:
    """The test's name without the backend's id, e.g. ``test_forward[conv2d-same-uneven]``."""
    name = item.name
    for before, after in ((f"[{backend}]", ""), (f"[{backend}-", "["), (f"-{backend}]", "]"),
                          (f"-{backend}-", "-")):
        if before in name:
            return name.replace(before, after, 1)
    return name


def _in_smoke(item: pytest.Item) -> bool:
    """Whether a table-driven test's case (if it has one) is one of the smoke cases."""
    from .cases import SMOKE_CASES, LossCase, ModelCase, OptimizerCase

    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    return not isinstance(case, (ModelCase, LossCase, OptimizerCase)) or case.id in SMOKE_CASES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    kept, dropped = [], []
    smoke = config.getini("pf_cases") == "smoke"
    for item in items:
        level = _level_of(item)
        if (state.levels is not None and level is not None and level not in state.levels) or (
                smoke and level is not None and not _in_smoke(item)):
            dropped.append(item)
            continue
        kept.append(item)
        callspec = getattr(item, "callspec", None)
        if level is None or callspec is None or "pf_backend" not in callspec.params:
            continue
        backend = callspec.params["pf_backend"]
        case = _case_of(item, backend)
        found = matching(state.limitations, backend, level, case)
        state.tests[item.nodeid] = _Test(item.nodeid, backend, level, case, found)
        overrides = {k: v for lim in found for k, v in (("rtol", lim.rtol), ("atol", lim.atol))
                     if v is not None}
        item.stash[_CHECKER] = Checker(overrides)
        failing = [lim for lim in found if lim.expect_fail]
        if failing:
            item.add_marker(pytest.mark.xfail(reason="declared limitation: " + failing[0].reason,
                                              strict=False))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Tests deselected (``-k``, ``-m``, levels not chosen) leave the report."""
    if _current_state is not None:
        for item in items:
            _current_state.tests.pop(item.nodeid, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    test = item.config.stash[_STATE].tests.get(item.nodeid)
    if test is not None and report.when == "call" and _CHECKER in item.stash:
        test.observations = list(item.stash[_CHECKER].observations)
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    state = _current_state
    if state is None or report.nodeid not in state.tests:
        return
    test = state.tests[report.nodeid]
    test.duration += report.duration
    xfail = hasattr(report, "wasxfail")
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            test.outcome = "xpassed" if xfail else "passed"
        elif report.skipped:
            test.outcome = "xfailed" if xfail else "skipped"
        else:
            test.outcome = "failed" if report.when == "call" else "error"
        if not report.passed and report.longrepr is not None:
            test.message = _short(report)
    elif report.when == "teardown" and report.failed:
        test.outcome, test.message = "error", _short(report)


def _short(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail") and report.skipped:
        return str(report.wasxfail)
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300]
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])[:300]
    return str(report.longrepr).strip().splitlines()[-1][:300]


_current_state: _State | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _current_state
    _current_state = session.config.stash[_STATE]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[_STATE]
    if all(test.outcome == "not run" for test in state.tests.values()):
        return
    from ._report import build_report, matrix_lines, write_report

    report = build_report(state.tests.values(), state.limitations, time.perf_counter() - state.started,
                          [lvl.key for lvl in registered_levels()], state.backends)
    terminalreporter.section("polyframe conformance")
    for line in matrix_lines(report):
        terminalreporter.write_line(line)
    if state.report:
        written = write_report(report, state.report)
        terminalreporter.write_line("report: " + ", ".join(written))
