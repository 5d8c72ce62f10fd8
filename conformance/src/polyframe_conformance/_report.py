"""The conformance report: a backend x level matrix, observed errors against tolerances, declared
limitations and durations, as JSON (for machines) and Markdown (for people)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polyframe as pf
from polyframe.errors import ConfigError

from ._levels import get_level
from ._limitations import Limitation

__all__ = ["build_report", "matrix_lines", "report_paths", "write_report"]


def _cell(tests: list[Any]) -> dict[str, Any]:
    counts = {k: sum(t.outcome == k for t in tests)
              for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run")}
    ran = len(tests) - counts["skipped"] - counts["not run"]
    if counts["failed"] or counts["error"]:
        status = "FAIL"
    elif ran == 0:
        status = "skip" if counts["skipped"] else "not run"
    else:
        status = "pass"
    return {"status": status, **counts, "tests": len(tests), "seconds": round(sum(t.duration for t in tests), 3)}


def _worst(observations: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not observations:
        return None
    failing = [o for o in observations if not o["passed"]]
    pool = failing or observations
    return max(pool, key=lambda o: o.get("used", 0.0) if "used" in o else
               (o["observed"] / o["limit"] if isinstance(o.get("observed"), float) and o["limit"] else 0.0))


def _backend_info(name: str) -> dict[str, Any]:
    backend = pf.registered_backends().get(name)
    if backend is None:
        return {"registered": False}
    return {"registered": True, "framework": backend.framework, "version": backend.framework_version(),
            "adapter": backend.adapter_distribution, "class": f"{type(backend).__module__}.{type(backend).__name__}"}


def build_report(tests: Iterable[Any], limitations: list[Limitation], seconds: float,
                 level_order: list[str], backends: list[str]) -> dict[str, Any]:
    tests = list(tests)
    used_levels = [key for key in level_order if any(t.level == key for t in tests)]
    matrix = {b: {lvl: _cell([t for t in tests if t.backend == b and t.level == lvl]) for lvl in used_levels}
              for b in backends}
    records = []
    for t in tests:
        records.append({
            "test": t.nodeid, "backend": t.backend, "level": t.level, "case": t.case, "outcome": t.outcome,
            "seconds": round(t.duration, 3), "message": t.message,
            "limitations": [lim.describe() for lim in t.limitations],
            "worst": _worst(t.observations), "observations": t.observations,
        })
    declared = []
    for lim in limitations:
        if lim.backend not in backends:
            continue
        hit = [t for t in tests if lim in t.limitations]
        declared.append({"backend": lim.backend, "level": lim.level, "test": lim.test, "reason": lim.reason,
                         "expect": "fail" if lim.expect_fail else "looser tolerance",
                         "rtol": lim.rtol, "atol": lim.atol,
                         "outcomes": {t.case: t.outcome for t in hit}})
    return {
        "polyframe": pf.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "seconds": round(seconds, 1),
        "backends": {b: _backend_info(b) for b in backends},
        "levels": [{"key": key, "number": get_level(key).number, "title": get_level(key).title,
                    "tolerance": get_level(key).tolerance} for key in used_levels],
        "matrix": matrix,
        "level_seconds": {lvl: round(sum(matrix[b][lvl]["seconds"] for b in backends), 3) for lvl in used_levels},
        "limitations": declared,
        "unexpected_passes": [r["test"] for r in records if r["outcome"] == "xpassed"],
        "tests": records,
    }


def _status(cell: dict[str, Any]) -> str:
    text = cell["status"]
    ran = cell["tests"] - cell["skipped"] - cell["not run"]
    if text == "pass":
        text += f" {cell['passed'] + cell['xfailed'] + cell['xpassed']}/{ran}"
    elif text == "FAIL":
        text += f" {cell['failed'] + cell['error']}/{ran}"
    extras = [f"{cell[k]} {label}" for k, label in (("xfailed", "xfail"), ("xpassed", "unexpected pass"))
              if cell[k]]
    return text + (f" ({', '.join(extras)})" if extras else "")


def matrix_lines(report: dict[str, Any]) -> list[str]:
    """The matrix as aligned plain-text lines (for the terminal)."""
    levels = [lvl["key"] for lvl in report["levels"]]
    rows = [["backend", *levels]] + [[b, *(_status(report["matrix"][b][lvl]) for lvl in levels)]
                                     for b in report["matrix"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if report["unexpected_passes"]:
        lines.append("unexpected passes (declared limitations that no longer fail): "
                     + ", ".join(report["unexpected_passes"]))
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _observed(worst: dict[str, Any] | None) -> tuple[str, str, str, str]:
    if worst is None:
        return "-", "-", "-", "-"
    if "used" in worst:
        return (worst["quantity"], f"abs {_fmt(worst['max_abs'])}, rel {_fmt(worst['max_rel'])}",
                f"rtol {worst['rtol']:g}, atol {worst['atol']:g}", f"{worst['used']:.2g}")
    limit = worst["limit"]
    used = (f"{worst['observed'] / limit:.2g}" if isinstance(worst["observed"], float)
            and isinstance(limit, float) and limit else "-")
    return worst["quantity"], _fmt(worst["observed"]), _fmt(limit), used


def _markdown(report: dict[str, Any]) -> str:
    levels = report["levels"]
    backends = list(report["matrix"])
    out = ["# polyframe conformance report", "",
           f"polyframe {report['polyframe']}, Python {report['python']}, {report['machine']}; "
           f"{report['seconds']} s in all.", ""]
    out += ["| backend | framework | adapter |", "| --- | --- | --- |"]
    for name, info in report["backends"].items():
        framework = f"{info.get('framework')} {info.get('version')}" if info.get("registered") else "not registered"
        out.append(f"| {name} | {framework} | {info.get('adapter', '-')} |")
    out += ["", "## Backend x level", "",
            "| backend | " + " | ".join(f"{l['number']}. {l['key']}" for l in levels) + " |",
            "| --- |" + " --- |" * len(levels)]
    for b in backends:
        out.append(f"| {b} | " + " | ".join(_status(report["matrix"][b][l["key"]]) for l in levels) + " |")
    out += ["", "## Tolerances and durations", "",
            "| level | tolerance | " + " | ".join(f"{b} (s)" for b in backends) + " | total (s) |",
            "| --- | --- |" + " --- |" * (len(backends) + 1)]
    for l in levels:
        out.append(f"| {l['number']}. {l['title']} | {l['tolerance']} | "
                   + " | ".join(f"{report['matrix'][b][l['key']]['seconds']:.1f}" for b in backends)
                   + f" | {report['level_seconds'][l['key']]:.1f} |")
    out += ["", "## Observed maximum errors", "",
            "Per test, the quantity that came closest to its tolerance (`used` = observed error / "
            "allowed error; above 1 fails). The JSON report lists every quantity.", ""]
    for l in levels:
        rows = [r for r in report["tests"] if r["level"] == l["key"]]
        if not rows:
            continue
        out += [f"### {l['number']}. {l['title']}", "",
                "| case | backend | outcome | quantity | observed | tolerance | used |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(rows, key=lambda r: (r["case"], r["backend"])):
            quantity, observed, tolerance, used = _observed(r["worst"])
            out.append(f"| {r['case']} | {r['backend']} | {r['outcome']} | {quantity} | {observed} | "
                       f"{tolerance} | {used} |")
        out.append("")
    out += ["## Declared limitations", ""]
    if report["limitations"]:
        for lim in report["limitations"]:
            outcomes = ", ".join(f"{case}: {o}" for case, o in lim["outcomes"].items()) or "no matching test ran"
            tol = "" if lim["expect"] == "fail" else f" (rtol {lim['rtol']}, atol {lim['atol']})"
            out.append(f"- {lim['backend']}, {lim['level']} `{lim['test']}`: {lim['expect']}{tol}: "
                       f"{lim['reason']}. Outcome: {outcomes}")
    else:
        out.append("None declared for the backends tested.")
    if report["unexpected_passes"]:
        out += ["", "**Unexpected passes** (declared to fail, but passed; remove the limitation):", ""]
        out += [f"- `{t}`" for t in report["unexpected_passes"]]
    failures = [r for r in report["tests"] if r["outcome"] in ("failed", "error")]
    out += ["", "## Failures", ""]
    out += [f"- `{r['test']}`: {r['message']}" for r in failures] or ["None."]
    return "\n".join(out) + "\n"


def report_paths(path: str) -> tuple[Path, Path]:
    """The Markdown and JSON paths for ``--report path``, checked before the suite runs: a
    :class:`ConfigError` if either is a directory or cannot be written."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"the report path must be a non-empty file name, got {path!r}")
    md = Path(path)
    js = md.with_suffix(".json") if md.suffix.lower() != ".json" else md
    if md == js:
        md = js.with_suffix(".md")
    for file in (md, js):
        if file.is_dir():
            raise ConfigError(f"cannot write the report to {file}: it is a directory; give a file name")
    existing = next(d for d in (md.parent, *md.parent.parents) if d.exists() or d == Path(d.anchor))
    if not existing.is_dir():
        raise ConfigError(f"cannot write the report under {md.parent}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK) or any(f.exists() and not os.access(f, os.W_OK)
                                                          for f in (md, js)):
        raise ConfigError(f"cannot write the report to {md}: permission denied; choose another path")
    return md, js


def _write_atomic(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(text)
    os.replace(staged, path)


def write_report(report: dict[str, Any], path: str) -> list[str]:
    """Write ``path`` (Markdown) and the same name with ``.json``, each replaced whole; returns
    both paths."""
    md, js = report_paths(path)
    md.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(md, _markdown(report))
    _write_atomic(js, json.dumps(report, indent=1, default=str) + "\n")
    return [str(md), str(js)]
