"""Benchmark outputs: a terminal table, ``bench.json``, ``bench.md`` and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..hardware import Machine
from .runner import BenchConfig, RunResult

__all__ = ["table", "write_outputs"]

_COLUMNS = ("batch", "backend", "impl", "step ms (median)", "IQR ms", "samples/s", "first step ms",
            "peak MiB", "final loss", "eval acc", "vs native", "vs keras")


def _cells(row: dict[str, Any]) -> list[str]:
    head = [str(row["batch_size"]), row["backend"], row["impl"]]
    if "median_step_ms" not in row:
        return head + [f"{row['status'].upper()}: {row.get('error') or ''}"]
    ratio = lambda key: f"{row[key]:.2f}x" if key in row else "-"  # noqa: E731
    q1, q3 = row["iqr_step_ms"]
    return head + [f"{row['median_step_ms']:.2f}", f"{q1:.2f}-{q3:.2f}", f"{row['samples_per_s']:.0f}",
                   f"{row['first_step_ms']:.0f}", f"{row['peak_rss_mib']:.0f}",
                   f"{row['final_loss']:.4f}", f"{row['eval_accuracy']:.4f}",
                   ratio("vs_native"), ratio("vs_keras")]


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {"polyframe": 0, "native": 1, "keras": 2}
    return sorted(rows, key=lambda r: (r["batch_size"], r["backend"], rank.get(r["impl"], 9)))


def table(summary: dict[str, Any]) -> str:
    """The summary as an aligned plain-text table plus the loss-agreement lines."""
    rows = [list(_COLUMNS)] + [_cells(r) for r in _ordered(summary["rows"])]
    widths = [max(len(r[i]) for r in rows if i < len(r) and len(r) == len(_COLUMNS)) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) if len(r) == len(_COLUMNS)
             else "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    lines += [_agreement_line(b, a) for b, a in summary["loss_agreement"].items()]
    return "\n".join(lines)


def _agreement_line(batch: int, agreement: dict[str, Any]) -> str:
    if agreement.get("agreed") is None:
        return f"batch {batch}: loss agreement not checked (fewer than two polyframe backends finished)"
    verdict = "agree" if agreement["agreed"] else "DISAGREE"
    return (f"batch {batch}: polyframe losses of {', '.join(agreement['compared'])} {verdict} over "
            f"{agreement['steps']} steps (max relative difference {agreement['max_relative_difference']:.2e}, "
            f"tolerance {agreement['tolerance']:g}; models with dropout differ by design)")


def _markdown(config: BenchConfig, machine: Machine, summary: dict[str, Any], command: str) -> str:
    header = "| " + " | ".join(_COLUMNS) + " |\n|" + "---|" * len(_COLUMNS) + "\n"
    body = ""
    for row in _ordered(summary["rows"]):
        cells = _cells(row)
        body += "| " + " | ".join(cells + [""] * (len(_COLUMNS) - len(cells))) + " |\n"
    notes = "\n".join(f"- {_agreement_line(b, a)}" for b, a in summary["loss_agreement"].items())
    return (f"# polyframe bench: {Path(config.model_file).name}\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: {machine.describe()}; versions: "
            f"{', '.join(f'{k} {v}' for k, v in machine.versions.items())}\n\n"
            f"Settings: data {config.data}, {config.steps} timed steps after {config.warmup} warm-up "
            f"steps, {config.repeats} repeats per cell (each in its own process), {config.threads} "
            f"threads per framework, precision {config.precision}, seed {config.seed}. Step time is "
            "the median over repeats of each process's median step; the IQR pools every timed "
            "step. `vs native` / `vs keras`: polyframe's median step over that baseline's on the "
            "same backend (below 1 is faster).\n\n"
            f"{header}{body}\n{notes}\n")


def _plots(summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _ordered(summary["rows"]) if "median_step_ms" in r]
    paths = []
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    labels = [f"{r['backend']}\n{r['impl']}\nb{r['batch_size']}" for r in rows]
    medians = [r["median_step_ms"] for r in rows]
    low = [r["median_step_ms"] - r["iqr_step_ms"][0] for r in rows]
    high = [r["iqr_step_ms"][1] - r["median_step_ms"] for r in rows]
    colours = {"polyframe": "tab:blue", "native": "tab:green", "keras": "tab:orange"}
    ax.bar(range(len(rows)), medians, yerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]],
           color=[colours.get(r["impl"], "grey") for r in rows], capsize=3)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("train step (ms), median with IQR")
    ax.set_title("Step time per backend, implementation and batch size")
    fig.tight_layout()
    paths.append(out / "step_time.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, (ax, diff) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    reference = next((r for r in rows if r["impl"] == "polyframe"), rows[0])
    base = np.asarray(reference["losses"])
    for r in rows:
        style = {"polyframe": "-", "native": "--", "keras": ":"}.get(r["impl"], "-.")
        label = f"{r['backend']} {r['impl']} b{r['batch_size']}"
        ax.plot(r["losses"], style, label=label, linewidth=1)
        if r is not reference and r["batch_size"] == reference["batch_size"]:
            curve = np.asarray(r["losses"][:len(base)])
            rel = np.abs(curve - base[:len(curve)]) / np.maximum(np.abs(base[:len(curve)]), 1e-12)
            diff.semilogy(np.maximum(rel, 1e-9), style, label=label, linewidth=1)
    ax.set_ylabel("training loss")
    ax.set_title("Training loss of every run (first repeat)")
    ax.legend(fontsize=6, ncol=2)
    diff.set_xlabel("step")
    diff.set_ylabel(f"relative difference\nto {reference['backend']} {reference['impl']}")
    diff.axhline(1e-3, color="grey", linewidth=0.8, linestyle="--")
    fig.tight_layout()
    paths.append(out / "loss_curves.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_outputs(config: BenchConfig, machine: Machine, results: list[RunResult],
                  summary: dict[str, Any], out: Path, command: str) -> list[Path]:
    """Write bench.json (every raw sample), bench.md and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    raw = [{"spec": vars(r.spec), "status": r.status, "error": r.error, "wall_s": r.wall_s,
            "result": r.result} for r in results]
    record = {"command": command, "config": vars(config), "machine": machine.to_dict(),
              "summary": summary, "runs": raw}
    written = [out / "bench.json", out / "bench.md"]
    written[0].write_text(json.dumps(record, indent=1, default=str))
    written[1].write_text(_markdown(config, machine, summary, command))
    try:
        written += _plots(summary, out)
    except ImportError:
        (out / "plots-skipped.txt").write_text("matplotlib is not installed: pip install 'polyframe[bench]'\n")
    return written
