"""Tier 3: the answer. :func:`recommend` runs the three tiers and returns a :class:`Recommendation`:
the kept backends ranked, each with its evidence and a confidence, and the excluded ones with
the rule and reason that removed them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..bench.runner import RunResult
from ..errors import ConfigError
from ..hardware import Machine, probe
from ._constraints import Exclusion, apply_constraints, candidates, target_device
from ._evidence import (Evidence, TrialSettings, cached_evidence, estimated_evidence,
                        measured_evidence)
from ._rules import Rules, load_rules
from ._workload import Workload

__all__ = ["Ranked", "Recommendation", "recommend", "close_call", "CLOSE_CALL"]

CLOSE_CALL = 0.05
"""Two timed backends within this relative difference are 'too close to call'."""

_NOISY = 0.3
"""A timing whose IQR is wider than this fraction of its median is only medium confidence."""

_FEW_RUNS = 3
"""A timing over fewer processes than this is only medium confidence: process-to-process
variance on a shared machine is as large as most differences between backends."""


@dataclass(frozen=True)
class Ranked:
    """One kept backend in the ranking."""

    backend: str
    rank: int
    evidence: str
    confidence: str
    detail: str
    step_ms: float | None = None
    relative_speed: float | None = None
    """1.0 for the first; for timings the fastest's step time over this one's."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """The ranked backends, the excluded ones, and what the ranking rests on."""

    workload: Workload
    machine: Machine
    described: bool
    device: str
    ranking: list[Ranked]
    excluded: list[Exclusion]
    basis: str
    """``measured``, ``cached``, ``cached+estimated``, ``estimated``, ``rule`` or ``none``."""
    basis_text: str
    confidence: str
    notes: list[str] = field(default_factory=list)
    considered: list[str] = field(default_factory=list)

    @property
    def best(self) -> str | None:
        usable = [r for r in self.ranking if r.step_ms is not None or r.evidence in ("estimated", "rule")]
        return usable[0].backend if usable else None

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "basis": self.basis, "basis_text": self.basis_text,
                "confidence": self.confidence, "device": self.device, "described_machine": self.described,
                "machine": self.machine.to_dict(), "workload": self.workload.to_dict(),
                "considered": self.considered, "ranking": [r.to_dict() for r in self.ranking],
                "excluded": [e.to_dict() for e in self.excluded], "notes": self.notes}


def _order(evidence: dict[str, Evidence]) -> list[Evidence]:
    """Timed rows by step time, then untimed by speed; failed trials last."""
    def key(e: Evidence) -> tuple[int, float]:
        if e.step_ms is not None:
            return 0, e.step_ms
        return (1, -e.speed) if e.speed is not None else (2, 0.0)
    return sorted(evidence.values(), key=key)


def _confidence(e: Evidence) -> str:
    if e.kind == "estimated":
        return "low"
    if e.step_ms and e.iqr_ms and (e.iqr_ms[1] - e.iqr_ms[0]) / e.step_ms > _NOISY:
        return "medium"
    if e.runs is not None and e.runs < _FEW_RUNS:
        return "medium"
    return "high"


def _rank(evidence: dict[str, Evidence]) -> list[Ranked]:
    ordered = _order(evidence)
    first = ordered[0] if ordered else None
    rows = []
    for i, e in enumerate(ordered, 1):
        if e.step_ms is not None and first is not None and first.step_ms is not None:
            relative = first.step_ms / e.step_ms
        elif e.speed is not None and first is not None and first.speed:
            relative = e.speed / first.speed
        else:
            relative = None
        rows.append(Ranked(e.backend, i, e.kind, _confidence(e) if e.speed is not None else "none", e.detail,
                           e.step_ms, relative))
    return rows


def close_call(ranking: list[Ranked]) -> str | None:
    """A note when the two fastest timed backends are within :data:`CLOSE_CALL`, or the two
    first have the same estimate; else ``None``."""
    if (len(ranking) >= 2 and ranking[0].evidence == ranking[1].evidence == "estimated"
            and ranking[1].relative_speed == 1.0):
        return (f"{ranking[0].backend} and {ranking[1].backend} have the same estimate: the prior "
                f"cannot order them, so the order between them is arbitrary")
    timed = [r for r in ranking if r.step_ms is not None]
    if len(timed) < 2 or timed[0].evidence == "estimated":
        return None
    a, b = timed[0], timed[1]
    if b.step_ms / a.step_ms - 1 <= CLOSE_CALL:
        return (f"{a.backend} and {b.backend} are within {100 * (b.step_ms / a.step_ms - 1):.1f}% of each "
                f"other: too close to call from this evidence; either is a sound choice")
    return None


def recommend(workload: Workload, *, machine: Machine | None = None, described: bool = False,
              device: str = "auto", measure: bool = False, use_cache: bool = True,
              backends: tuple[str, ...] | None = None, rules: Rules | None = None,
              trial: TrialSettings | None = None,
              on_trial: Callable[[RunResult], None] = lambda r: None) -> Recommendation:
    """Recommend a backend for ``workload`` on ``machine`` (default: this one, probed).

    ``described=True`` marks ``machine`` as one that is not this one: nothing is measured, only
    rules and cached evidence apply. ``measure`` runs a short trial of each kept backend here.
    ``use_cache=False`` ignores cached bench results (the estimate alone, without ``measure``).
    """
    rules = rules or load_rules()
    notes: list[str] = []
    if measure and described:
        raise ConfigError("--measure times the backends on this machine, so it cannot measure a described "
                          "machine; drop --measure or --hardware")
    if machine is None:
        if described:
            raise ConfigError("a described machine needs its description")
        machine = probe()
    if described and not machine.versions:
        machine = dataclasses.replace(machine, versions=probe().versions)
        notes.append("the hardware description lists no framework versions; assumed this environment's builds")
    device = target_device(machine, device)
    found = candidates(machine, rules, described=described, backends=backends)
    kept, excluded, checks = apply_constraints(workload, machine, device, found, rules)
    notes += checks
    if workload.activations_per_sample is None:
        notes.append("activation memory not estimated (no model given); the memory check covers weights "
                     "and optimizer state only")
    where = "the described machine" if described else "this machine"

    if not kept:
        basis, text, evidence = "none", "no backend is left after the constraints; see the exclusions", {}
    elif len(kept) == 1 and not measure:
        only = kept[0]
        basis, text = "rule", f"{only} is the only backend the constraints leave on {where}"
        evidence = {only: Evidence(only, "rule", 1.0, "the only backend left after the constraints")}
        cached = cached_evidence(workload, machine, kept) if use_cache else {}
        if only in cached:
            evidence = {only: dataclasses.replace(cached[only], kind="rule",
                                                  detail=f"only backend left; {cached[only].detail}")}
    elif measure:
        trial = trial or TrialSettings()
        evidence = measured_evidence(workload, kept, trial, on_trial)
        basis = "measured"
        text = (f"measured on this machine: a short trial of each backend, each in its own process "
                f"({trial.warmup} warm-up + {trial.steps} timed steps, {trial.threads} threads)")
        if workload.precision != "float32":
            notes.append(f"the trial timed float32 steps: polyframe bench does not time "
                         f"{workload.precision} yet; the backends that cannot run it are excluded above")
    else:
        cached = cached_evidence(workload, machine, kept) if use_cache else {}
        missing = [b for b in kept if b not in cached]
        if not missing:
            basis = "cached"
            text = (f"cached `polyframe bench` results for this model, batch size {workload.batch_size}, "
                    f"{workload.precision} and {where} (fingerprint {machine.fingerprint()})")
            evidence = cached
        else:
            evidence = {**estimated_evidence(workload, device, missing, rules, cached), **cached}
            if described:
                why = "nothing can be measured on a described machine"
            else:
                why = "--measure was not given" + ("" if use_cache else " and the cache was not consulted")
            have = (f"cached results cover only {', '.join(sorted(cached))}; " if cached else
                    "no cached `polyframe bench` result matches this model, batch size, precision and machine; ")
            basis = "cached+estimated" if cached else "estimated"
            text = (f"ESTIMATE for {', '.join(missing)}: {have}{why}. The ranking of "
                    f"{'those backends' if cached else 'the backends'} comes from a prior (relative "
                    f"throughput factors by model family and work per step in {rules.source}, from "
                    f"{rules.prior['source']}), not from a measurement, so its confidence is low"
                    + ("" if described else "; run with --measure, or `polyframe bench`, for evidence"))
    ranking = _rank(evidence)
    confidence = ranking[0].confidence if ranking else "none"
    close = close_call(ranking)
    if close:
        notes.append(close)
        confidence = "medium" if confidence == "high" else confidence
    if basis == "measured" and ranking and ranking[0].step_ms is None:
        confidence = "none"
        notes.append("every trial failed; see the details")
    if described:
        notes.insert(0, "described machine: nothing can be measured there; only rules and cached "
                        "(published) evidence apply")
    return Recommendation(workload, machine, described, device, ranking, excluded, basis, text, confidence,
                          notes, [c.name for c in found])
