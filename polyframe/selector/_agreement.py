"""Does a recommendation agree with what ``polyframe bench`` measured? (The agreement matrix.)"""

from __future__ import annotations

from typing import Any

__all__ = ["agreement", "agreement_rates", "WITHIN"]

WITHIN = 0.10
"""A pick 'nearly agrees' when its benched step time is within this fraction of the fastest's."""


def agreement(measured_ms: dict[str, float], recommended: str | None, estimated: str | None = None,
              within: float = WITHIN) -> dict[str, Any]:
    """Compare picks with benched median step times (``backend -> ms``; failed runs left out).

    ``match``: the recommendation is the measured fastest; ``within``: its benched time is at
    most ``(1 + within)`` times the fastest's; ``estimate_match``: the estimate-alone pick is the
    fastest. A pick the bench has no time for counts as no agreement.
    """
    timed = {b: float(ms) for b, ms in measured_ms.items() if ms is not None and ms > 0}
    if not timed:
        return {"fastest": None, "recommended": recommended, "estimated": estimated, "match": None,
                "within": None, "ratio": None, "estimate_match": None}
    fastest = min(timed, key=timed.__getitem__)
    ratio = timed[recommended] / timed[fastest] if recommended in timed else None
    return {"fastest": fastest, "recommended": recommended, "estimated": estimated,
            "match": recommended == fastest,
            "within": ratio is not None and ratio <= 1 + within + 1e-12,
            "ratio": ratio, "estimate_match": None if estimated is None else estimated == fastest}


def _pct(values: list[bool]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def agreement_rates(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentages over the cells the bench could time (``fastest`` known)."""
    judged = [c for c in cells if c.get("fastest") is not None]
    return {"cells": len(cells), "judged": len(judged),
            "fastest_match_pct": _pct([bool(c["match"]) for c in judged]),
            "within_pct": _pct([bool(c["within"]) for c in judged]),
            "estimate_match_pct": _pct([bool(c["estimate_match"]) for c in judged
                                        if c.get("estimate_match") is not None])}
