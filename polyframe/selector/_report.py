"""The recommendation as text: the three tiers, each stated, then the answer."""

from __future__ import annotations

import textwrap

from ._recommend import Recommendation

__all__ = ["format_recommendation"]


def _wrap(text: str, indent: str, then: str | None = None) -> list[str]:
    return textwrap.wrap(text, 100, initial_indent=indent, subsequent_indent=then or indent,
                         break_on_hyphens=False, break_long_words=False)


def _excluded_lines(rec: Recommendation) -> list[str]:
    groups: dict[tuple[str, str, str], list[str]] = {}
    for e in rec.excluded:
        groups.setdefault((e.rule, e.reason, e.hint), []).append(e.backend)
    lines = []
    for (rule, reason, hint), names in groups.items():
        who = "all backends" if len(names) > 1 and set(names) == set(rec.considered) else ", ".join(names)
        lines += _wrap(f"- {who} [{rule}]: {reason}" + (f"; to fix: {hint}" if hint else ""), "   ", "     ")
    return lines or ["   - none excluded"]


def _table(rec: Recommendation) -> list[str]:
    head = ("#", "backend", "step ms", "relative", "evidence", "confidence", "why")
    rows = [head]
    for r in rec.ranking:
        rows.append((str(r.rank), r.backend, f"{r.step_ms:.2f}" if r.step_ms is not None else "-",
                     f"{r.relative_speed:.2f}" if r.relative_speed is not None else "-",
                     r.evidence, r.confidence, r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    return ["   " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows]


def format_recommendation(rec: Recommendation, command: str | None = None) -> str:
    """Plain text for the terminal; ``command`` is the train command to suggest (``{backend}``
    is replaced by the answer)."""
    w, m = rec.workload, rec.machine
    where = "described machine" if rec.described else "this machine"
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items()) or "unknown"
    lines = [
        f"recommend: {w.name}" + (f" on {w.data}" if w.data else "") + f", batch {w.batch_size}",
        f"workload:  {w.describe()}",
        f"machine:   {m.describe()} ({where}); target device: {rec.device}",
        f"           frameworks: {versions}",
        "",
        f"1. constraints (rules exclude, never rank); considered {', '.join(rec.considered) or 'nothing'}:",
        *_excluded_lines(rec),
        "2. evidence (ranks what is left):",
        *_wrap(rec.basis_text, "   "),
        "3. ranking:",
    ]
    lines += _table(rec) if rec.ranking else ["   (empty)"]
    for note in rec.notes:
        lines += _wrap(f"note: {note}", "   ", "         ")
    lines.append("")
    best = rec.best
    if best is None:
        lines.append("answer: no backend can run this workload here; fix one of the exclusions above"
                     + (f" (or pass --device cpu to rank the backends on the CPU)" if rec.device != "cpu" else ""))
    else:
        top = rec.ranking[0]
        evidence = {"estimated": "an estimate, not a measurement", "measured": "measured here",
                    "cached": "cached bench results", "rule": "the only one left by the rules"}
        lines.append(f"answer: {best} (confidence {rec.confidence}; evidence: "
                     f"{evidence.get(top.evidence, top.evidence)})")
        if command:
            lines.append(f"        {command.format(backend=best)}")
    return "\n".join(lines)
