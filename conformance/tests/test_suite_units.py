"""The suite's own machinery: the level registry, limitation files, the report's matrix and the
command line's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import polyframe as pf
from polyframe.cli import main
from polyframe_conformance import Level, load_limitations, register_level, registered_levels, select_levels
from polyframe_conformance._limitations import matching
from polyframe_conformance._report import build_report, write_report
from polyframe_conformance.plugin import _Test


def test_levels_are_numbered_and_quick_by_default() -> None:
    keys = [level.key for level in registered_levels()]
    assert keys[:8] == ["registration", "forward", "gradients", "optimizers", "trajectory",
                        "convergence", "determinism", "errors"]
    assert "convergence" not in [level.key for level in select_levels([])]
    assert [level.key for level in select_levels(["7", "forward"])] == ["forward", "determinism"]
    assert len(select_levels(["all"])) == len(registered_levels())


def test_a_level_key_or_number_is_taken_once() -> None:
    with pytest.raises(pf.ConfigError, match="already registered"):
        register_level(Level("forward", 99, "again", "x", "-"))
    with pytest.raises(pf.ConfigError, match="number 2 is already taken"):
        register_level(Level("checkpoint-again", 2, "x", "x", "-"))
    with pytest.raises(pf.ConfigError, match="unknown conformance level 'bogus'"):
        select_levels(["bogus"])


@pytest.mark.parametrize("content, message", [
    ("[]", "JSON object keyed by backend"),
    ('{"x": {}}', "must map to a list"),
    ('{"x": [{"level": "forward", "test": "*"}]}', "needs 'level', 'test' and 'reason'"),
    ('{"x": [{"level": "forward", "test": "*", "reason": "r"}]}', "neither"),
    ('{"x": [{"level": "forward", "test": "*", "reason": "r", "expect": "pass"}]}', "'expect' must be"),
    ('{"x": [{"level": "forward", "test": "*", "reason": "r", "rtol": -1}]}', "non-negative"),
    ('{"x": [{"level": "forward", "test": "*", "reason": "r", "rtol": 1, "why": 1}]}', "unknown limitation"),
    ("{", "not valid JSON"),
])
def test_bad_limitation_files_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "limits.json"
    path.write_text(content)
    with pytest.raises(pf.ConfigError, match=message):
        load_limitations([str(path)])


def test_limitation_patterns_treat_brackets_literally(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"mine": [
        {"level": "forward", "test": "test_forward[lstm]", "expect": "fail", "reason": "no LSTM"},
        {"level": "gradients", "test": "*gru*", "rtol": 1e-3, "reason": "fused kernel"}]}))
    found = load_limitations([str(path)])
    assert [lim.test for lim in matching(found, "mine", "forward", "test_forward[lstm]")] == ["test_forward[lstm]"]
    assert not matching(found, "mine", "forward", "test_forward[l]")
    assert not matching(found, "other", "forward", "test_forward[lstm]")
    assert matching(found, "mine", "gradients", "test_gradients[gru]")[0].rtol == 1e-3


def test_report_matrix_and_files(tmp_path: Path) -> None:
    tests = [_Test("a", "torch", "forward", "test_forward[x]", [], "passed", duration=1.5,
                   observations=[{"quantity": "q", "max_abs": 1e-7, "max_rel": 1e-6, "rtol": 1e-5,
                                  "atol": 1e-6, "used": 0.1, "passed": True}]),
             _Test("b", "torch", "forward", "test_forward[y]", [], "failed", "too far", 0.5),
             _Test("c", "torch", "errors", "test_error[z]", [], "xfailed", "declared", 0.2)]
    report = build_report(tests, [], 2.0, [lvl.key for lvl in registered_levels()], ["torch"])
    assert report["matrix"]["torch"]["forward"]["status"] == "FAIL"
    assert report["matrix"]["torch"]["errors"]["status"] == "pass"
    assert report["level_seconds"] == {"forward": 2.0, "errors": 0.2}
    md, js = write_report(report, str(tmp_path / "out" / "r.md"))
    text = Path(md).read_text()
    assert "| torch | FAIL 1/2 | pass 1/1 (1 xfail) |" in text
    assert "abs 1e-07, rel 1e-06" in text and "`b`: too far" in text
    assert json.loads(Path(js).read_text())["tests"][0]["worst"]["quantity"] == "q"


@pytest.mark.parametrize("argv, message", [
    (["conformance", "--backend", "nope"], "unknown backend 'nope'"),
    (["conformance", "--level", "bogus"], "unknown conformance level 'bogus'"),
    (["conformance", "--limitations", "/no/such/file.json"], "cannot read limitations file"),
])
def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("polyframe: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_welch_p_value_matches_scipy_and_handles_constant_samples() -> None:
    from scipy import stats

    from polyframe_conformance.levels.test_convergence import welch_p_value

    a, b = [0.91, 0.93, 0.92, 0.95, 0.90], [0.89, 0.90, 0.88, 0.91, 0.90]
    assert welch_p_value(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    assert welch_p_value([0.9] * 5, [0.9] * 5) == 1.0
    assert welch_p_value([0.9] * 5, [0.8] * 5) == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda tmp: str(tmp), "is a directory"),
    (lambda tmp: "", "non-empty file name"),
    (lambda tmp: "  ", "non-empty file name"),
    (lambda tmp: str(_file(tmp) / "report.md"), "is not a directory"),
])
def test_an_unwritable_report_path_is_refused_before_the_suite_runs(tmp_path, capsys, make, message) -> None:
    path = make(tmp_path)
    code = main(["conformance", "--backend", "torch", "--level", "errors", "--report", path])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err
    assert "passed" not in out  # nothing ran


def _file(tmp: Path) -> Path:
    plain = tmp / "plain.txt"
    plain.write_text("keep me\n")
    return plain


def test_a_report_is_replaced_whole(tmp_path) -> None:
    report = build_report([], [], 0.0, [], [])
    target = tmp_path / "deep" / "r.md"
    written = write_report(report, str(target))
    assert written == [str(target), str(target.with_suffix(".json"))]
    assert json.loads(target.with_suffix(".json").read_text())["tests"] == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json", "r.md"]  # no staged files left
