"""Tier 2: evidence that ranks the backends the constraints kept.

Three kinds, strongest first: a short trial of each backend (``measured``), results of
``polyframe bench`` cached for this model, batch size, precision and machine (``cached``), and,
with neither, the prior of the rules file (``estimated``: relative throughput factors, a guess).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..bench._worker import RunSpec, default_threads
from ..bench.cache import lookup
from ..bench.runner import RunResult, run_one
from ..errors import ConfigError
from ..hardware import Machine
from ._rules import Rules
from ._workload import Workload

__all__ = ["Evidence", "TrialSettings", "measured_evidence", "cached_evidence", "estimated_evidence"]


@dataclass(frozen=True)
class Evidence:
    """What is known about one backend's speed on the workload.

    ``speed`` orders backends (higher is faster): samples per second for timings, the prior's
    relative throughput for estimates. ``step_ms`` is ``None`` when no time is known.
    """

    backend: str
    kind: str
    speed: float | None
    detail: str
    step_ms: float | None = None
    iqr_ms: tuple[float, float] | None = None
    runs: int | None = None
    """Processes a timing was taken over (``None`` where unknown or not a timing)."""


@dataclass(frozen=True)
class TrialSettings:
    """How ``--measure`` times each backend: ``repeats`` fresh processes per backend, started in
    rotating order (so a slow spell of a shared machine does not fall on one backend), each
    timing ``steps`` steps after ``warmup``; the backend's step time is the median of its
    processes' medians."""

    steps: int = 20
    warmup: int = 5
    threads: int = field(default_factory=default_threads)
    timeout_s: float = 180.0
    seed: int = 0
    repeats: int = 3


def _timed(backend: str, kind: str, batch: int, step_ms: float, iqr: tuple[float, float] | None,
           detail: str, runs: int | None) -> Evidence:
    return Evidence(backend, kind, batch / (step_ms / 1e3), detail, step_ms, iqr, runs)


def measured_evidence(workload: Workload, backends: list[str], settings: TrialSettings,
                      on_result: Callable[[RunResult], None] = lambda r: None) -> dict[str, Evidence]:
    """Time each backend with short trials in their own processes (``polyframe bench``'s worker,
    polyframe implementation only), interleaved across backends."""
    if not workload.model_file or not workload.data:
        raise ConfigError("a measured trial needs a model file and a dataset; give MODEL_FILE "
                          "(and --data), or drop --measure")
    medians: dict[str, list[float]] = {b: [] for b in backends}
    pooled: dict[str, list[float]] = {b: [] for b in backends}
    first: dict[str, float] = {}
    failed: dict[str, str] = {}
    for round_index in range(settings.repeats):
        shift = round_index % len(backends)
        for backend in backends[shift:] + backends[:shift]:
            if backend in failed:
                continue
            spec = RunSpec("polyframe", backend, workload.model_file, workload.batch_size,
                           settings.steps, settings.warmup, settings.threads, workload.data,
                           workload.data_dir, settings.seed)
            result = run_one(spec, settings.timeout_s)
            on_result(result)
            if result.status != "ok" or not result.result:
                failed[backend] = f"the trial {result.status}: {result.error}"
                continue
            steps = np.asarray(result.result["step_s"]) * 1e3
            medians[backend].append(float(np.median(steps)))
            pooled[backend].extend(steps.tolist())
            first.setdefault(backend, 1e3 * result.result["first_step_s"])
    found = {}
    for backend in backends:
        if backend in failed:
            found[backend] = Evidence(backend, "measured", None, failed[backend])
            continue
        q1, q3 = (float(v) for v in np.percentile(pooled[backend], [25, 75]))
        median = statistics.median(medians[backend])
        found[backend] = _timed(
            backend, "measured", workload.batch_size, median, (q1, q3),
            f"trial: median of {len(medians[backend])} process medians, {settings.steps} steps "
            f"each after {settings.warmup} warm-up, {settings.threads} threads, IQR {q1:.2f}-{q3:.2f} ms, "
            f"first step {first[backend]:.0f} ms", len(medians[backend]))
    return found


def cached_evidence(workload: Workload, machine: Machine, backends: list[str]) -> dict[str, Evidence]:
    """Cached ``polyframe bench`` rows for exactly this model, batch, precision and machine."""
    if not workload.signature:
        return {}
    found = {}
    for backend in backends:
        row = lookup(machine, workload.signature, backend, workload.batch_size, workload.precision)
        if not row or "median_step_ms" not in row:
            continue
        iqr = tuple(row.get("iqr_step_ms") or ()) or None
        spread = f", IQR {iqr[0]:.2f}-{iqr[1]:.2f} ms" if iqr else ""
        runs = row.get("ok_runs")
        threads = f", {row['threads']} threads" if row.get("threads") else ""
        found[backend] = _timed(backend, "cached", workload.batch_size, float(row["median_step_ms"]), iqr,
                                f"polyframe bench: median over {runs if runs else '?'} run(s){threads}{spread}",
                                runs if isinstance(runs, int) else None)
    return found


def estimated_evidence(workload: Workload, device: str, backends: list[str], rules: Rules,
                       anchors: dict[str, Evidence] | None = None) -> dict[str, Evidence]:
    """The prior's relative throughput for each backend. With timed ``anchors`` (cached rows of
    other backends), a step time is scaled from them through the same factors."""
    factors = rules.prior_factors(device, workload.family, workload.train_flops_per_step) or {}
    band = rules.band(workload.train_flops_per_step)
    units = [a.step_ms * factors[b] for b, a in (anchors or {}).items() if a.step_ms and b in factors]
    unit = statistics.median(units) if units else None
    found = {}
    for backend in backends:
        if backend in factors:
            factor = float(factors[backend])
            detail = f"prior: relative throughput {factor:g} for a {band} {workload.family} step on {device}"
        else:
            factor = 1.0
            detail = (f"no prior for {backend} ({workload.family} on {device}); neutral factor 1 assumed"
                      if factors else f"no prior for {workload.family} on {device}; neutral factor 1")
        step = unit / factor if unit and backend in factors else None
        if step:
            detail += ", step time scaled from the cached backend(s)"
        found[backend] = Evidence(backend, "estimated", factor, detail, step)
    return found
