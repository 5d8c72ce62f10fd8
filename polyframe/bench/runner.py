"""Runs every (implementation, backend, batch size) in its own subprocess and summarises them.

A run that raises, dies or exceeds the time limit is recorded as failed, with its error, and the
others go on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from ._worker import RunSpec, default_threads, thread_environment

__all__ = ["BenchConfig", "RunResult", "run_bench", "summarise", "LOSS_AGREEMENT_RTOL"]

NATIVE_FRAMEWORKS = ("torch", "tensorflow", "jax")
LOSS_AGREEMENT_RTOL = 1e-3
"""Per-step training losses of two backends 'agree' when within this relative difference."""


@dataclass(frozen=True)
class BenchConfig:
    """What ``polyframe bench`` measures."""

    model_file: str
    backends: tuple[str, ...] = ("torch", "tensorflow", "jax")
    batch_sizes: tuple[int, ...] = (32,)
    steps: int = 50
    warmup: int = 10
    repeats: int = 3
    threads: int = field(default_factory=default_threads)
    precision: str = "float32"
    baselines: tuple[str, ...] = ("native", "keras")
    data: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("steps", "repeats", "threads"):
            check_int(getattr(self, name), name)
        check_int(self.warmup, "warmup", minimum=0)
        for batch in self.batch_sizes:
            check_int(batch, "batch size")
        if not self.backends:
            raise ConfigError("give at least one backend to benchmark")
        unknown = set(self.baselines) - {"native", "keras"}
        if unknown:
            raise ConfigError(f"unknown baselines {sorted(unknown)}; use native and/or keras")
        if self.precision != "float32":
            raise ConfigError(f"precision {self.precision!r} is not supported yet; polyframe "
                              "benchmarks float32 only (mixed precision is not implemented)")
        if not self.timeout_s > 0:
            raise ConfigError(f"the time limit must be > 0 seconds, got {self.timeout_s}")


@dataclass
class RunResult:
    """One subprocess: its spec, whether it finished, and what it measured."""

    spec: RunSpec
    status: str  # "ok", "failed", "timeout" or "skipped"
    error: str | None = None
    wall_s: float = 0.0
    result: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.spec.impl}/{self.spec.backend}/batch {self.spec.batch_size}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_one(spec: RunSpec, timeout_s: float) -> RunResult:
    """Run one spec in a fresh interpreter with pinned threads and a time limit."""
    keras_backend = spec.backend if spec.impl == "keras" else None
    env = {**os.environ, **thread_environment(spec.threads, keras_backend)}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "polyframe.bench._worker", spec.to_json()],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return RunResult(spec, "timeout", f"exceeded the time limit of {timeout_s:g} s and was killed",
                         time.perf_counter() - started)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return RunResult(spec, "failed", f"exit status {proc.returncode}: "
                         f"{_last_line(proc.stderr) or 'no error output'}", wall)
    try:
        return RunResult(spec, "ok", None, wall, json.loads(_last_line(proc.stdout)))
    except json.JSONDecodeError:
        return RunResult(spec, "failed", "the worker printed no result", wall)


def _skip_reason(impl: str, backend: str) -> str | None:
    if impl == "native" and backend not in NATIVE_FRAMEWORKS:
        return f"no hand-written native loop for backend {backend!r}"
    if impl == "keras":
        if backend not in NATIVE_FRAMEWORKS:
            return f"Keras 3 has no {backend!r} backend"
        if importlib.util.find_spec("keras") is None:
            return "keras is not installed"
    if impl != "polyframe" and importlib.util.find_spec(backend) is None:
        return f"the {backend!r} framework is not installed"
    return None


def plan(config: BenchConfig) -> list[RunSpec]:
    """Every run, repeats interleaved so that slow drifts of the machine hit all alike."""
    impls = ("polyframe", *config.baselines)
    specs = []
    for batch in config.batch_sizes:
        for repeat in range(config.repeats):
            for backend in config.backends:
                ordered = impls if repeat % 2 == 0 else tuple(reversed(impls))
                for impl in ordered:
                    specs.append(RunSpec(impl, backend, config.model_file, batch, config.steps,
                                         config.warmup, config.threads, config.data, config.data_dir,
                                         config.seed))
    return specs


def run_bench(config: BenchConfig, on_result: Callable[[RunResult], None] = lambda r: None
              ) -> list[RunResult]:
    """Run the whole plan; a failed run never stops the others."""
    results = []
    for spec in plan(config):
        reason = _skip_reason(spec.impl, spec.backend)
        result = RunResult(spec, "skipped", reason) if reason else run_one(spec, config.timeout_s)
        results.append(result)
        on_result(result)
    return results


def _group(results: list[RunResult]) -> dict[tuple[int, str, str], list[RunResult]]:
    groups: dict[tuple[int, str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.spec.batch_size, r.spec.backend, r.spec.impl), []).append(r)
    return groups


def _summary_row(batch: int, backend: str, impl: str, runs: list[RunResult]) -> dict[str, Any]:
    ok = [r.result for r in runs if r.status == "ok" and r.result]
    row: dict[str, Any] = {"batch_size": batch, "backend": backend, "impl": impl,
                           "runs": len(runs), "ok_runs": len(ok)}
    if not ok:
        row["status"] = runs[0].status
        row["error"] = next((r.error for r in runs if r.error), None)
        return row
    medians = [float(np.median(r["step_s"])) for r in ok]
    pooled = np.concatenate([r["step_s"] for r in ok])
    q1, q3 = np.percentile(pooled, [25, 75])
    step = float(np.median(medians))
    row.update({
        "status": "ok" if len(ok) == len(runs) else "partial",
        "error": next((r.error for r in runs if r.error), None),
        "median_step_ms": step * 1e3,
        "iqr_step_ms": [q1 * 1e3, q3 * 1e3],
        "per_run_median_ms": [m * 1e3 for m in medians],
        "samples_per_s": batch / step,
        "first_step_ms": float(np.median([r["first_step_s"] for r in ok])) * 1e3,
        "peak_rss_mib": float(max(r["peak_rss_mib"] for r in ok)),
        "final_loss": float(np.median([np.mean(r["losses"][-5:]) for r in ok])),
        "eval_accuracy": float(np.median([r["eval_accuracy"] for r in ok])),
        "losses": ok[0]["losses"],
        "framework_version": ok[0].get("framework_version"),
    })
    return row


def _agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    curves = {r["backend"]: np.array(r["losses"]) for r in rows
              if r["impl"] == "polyframe" and "losses" in r}
    if len(curves) < 2:
        return {"compared": sorted(curves), "max_relative_difference": None, "agreed": None}
    length = min(len(c) for c in curves.values())
    names = sorted(curves)
    worst = 0.0
    for a in names:
        for b in names:
            if a < b:
                x, y = curves[a][:length], curves[b][:length]
                worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12))))
    return {"compared": names, "steps": length, "max_relative_difference": worst,
            "tolerance": LOSS_AGREEMENT_RTOL, "agreed": worst <= LOSS_AGREEMENT_RTOL}


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Per (batch, backend, impl) statistics, overhead ratios and loss agreement per batch."""
    rows = [_summary_row(b, be, i, runs) for (b, be, i), runs in _group(results).items()]
    for row in rows:
        if row["impl"] != "polyframe" or "median_step_ms" not in row:
            continue
        for other in rows:
            if (other["batch_size"], other["backend"]) == (row["batch_size"], row["backend"]) \
                    and other["impl"] != "polyframe" and "median_step_ms" in other:
                row[f"vs_{other['impl']}"] = row["median_step_ms"] / other["median_step_ms"]
    batches = sorted({r["batch_size"] for r in rows})
    agreement = {b: _agreement([r for r in rows if r["batch_size"] == b]) for b in batches}
    return {"rows": rows, "loss_agreement": agreement}


