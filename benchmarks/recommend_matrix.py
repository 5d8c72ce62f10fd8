"""Agreement matrix: does `polyframe recommend` pick the backend `polyframe bench` measures fastest?

For each model file x batch size it runs `polyframe bench` (polyframe implementation only, no
baselines; every backend in its own process), then `polyframe recommend --measure` (its own short
trial) and the recommender's estimate alone (no trial, no cache), and compares each pick with the
bench's fastest backend: fastest match, within 10% of the fastest, estimate-alone match.

    python benchmarks/recommend_matrix.py                      # short default run, ~10 min on 2 cores
    python benchmarks/recommend_matrix.py --steps 50 --warmup 10 --repeats 3 --trial-steps 20

Run it on a quiet machine: with one thread per core, another busy process can slow torch's
OpenMP steps by 10-100x (tensorflow's and jax's thread pools suffer far less), which shows up
as torch steps of hundreds of milliseconds on these small models.

Writes benchmarks/results/recommend_matrix.json (every number, the machine, the settings) and
recommend_matrix.md (the table and the agreement rates). The bench results are not written to
the result cache, so the estimate-alone column never sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyframe.bench import BenchConfig, run_bench, summarise  # noqa: E402
from polyframe.datasets import load  # noqa: E402
from polyframe.hardware import probe  # noqa: E402
from polyframe.modelfile import load_model_file  # noqa: E402
from polyframe.plugins import registered_backends  # noqa: E402
from polyframe.selector import (TrialSettings, agreement, agreement_rates, recommend,  # noqa: E402
                                workload_from_model)

MODELS = ("examples/mnist_cnn.py", "examples/digits_mlp.py", "examples/wide_cnn.py")
BATCHES = (16, 64, 256, 1024)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model files")
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCHES)))
    p.add_argument("--backends", help="comma-separated (default: every available backend)")
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data-dir")
    p.add_argument("--steps", type=int, default=20, help="bench: timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="bench: warm-up steps per run")
    p.add_argument("--repeats", type=int, default=1, help="bench: runs (processes) per cell")
    p.add_argument("--trial-steps", type=int, default=20, help="recommend --measure: timed steps")
    p.add_argument("--trial-repeats", type=int, default=3,
                   help="recommend --measure: processes per backend, in rotating order")
    p.add_argument("--trial-warmup", type=int, default=5, help="recommend --measure: warm-up steps")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[value]


def _pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "-"


def markdown(record: dict) -> str:
    backends = record["backends"]
    s, rates = record["settings"], record["rates"]
    head = ("| model | batch | bench ms (" + " / ".join(backends) + ") | bench fastest | recommend --measure "
            "| trial ms (" + " / ".join(backends) + ") | match | within 10% | estimate alone | estimate match |")
    lines = [
        "# Recommendation vs measurement",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Machine: {record['machine_text']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in record["machine"]["versions"].items()),
        "",
        f"`polyframe bench` (polyframe only, no baselines): {s['steps']} timed steps after {s['warmup']} "
        f"warm-up, {s['repeats']} process(es) per cell, {s['threads']} threads, {s['data']}. "
        f"`polyframe recommend --measure`: {s['trial_steps']} timed steps after {s['trial_warmup']} warm-up, "
        f"{s.get('trial_repeats', 1)} process(es) per backend in rotating order. The estimate alone is the prior of polyframe/selector/recommend_rules.json "
        "(no trial, no cache); its cpu numbers were calibrated on a machine like this one, so it is not "
        "an independent test of the prior elsewhere.",
        "",
        f"**Agreement over {rates['judged']} cells: fastest match {_pct(rates['fastest_match_pct'])}, "
        f"within 10% of the fastest {_pct(rates['within_pct'])}, estimate-alone match "
        f"{_pct(rates['estimate_match_pct'])}.**",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for c in record["cells"]:
        bench = " / ".join(_ms(c["bench_ms"].get(b)) for b in backends)
        trial = " / ".join(_ms(c["trial_ms"].get(b)) for b in backends)
        lines.append(f"| {Path(c['model']).stem} | {c['batch_size']} | {bench} | {c['fastest'] or '-'} | "
                     f"{c['recommended'] or '-'} ({c['confidence']}) | {trial} | {_yes(c['match'])} | "
                     f"{_yes(c['within'])} | {c['estimated'] or '-'} | {_yes(c['estimate_match'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = tuple(int(b) for b in args.batch_sizes.split(","))
    backends = tuple(b.strip() for b in args.backends.split(",")) if args.backends else tuple(
        n for n, b in registered_backends().items() if b.availability().available)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    data = load(args.data, data_dir)
    machine = probe()
    trial = TrialSettings(args.trial_steps, args.trial_warmup, args.threads, args.timeout,
                          repeats=args.trial_repeats)
    print(f"machine: {machine.describe()}; backends {', '.join(backends)}", flush=True)
    cells = []
    started = time.perf_counter()
    for model_file in models:
        path = str((ROOT / model_file).resolve()) if not Path(model_file).is_absolute() else model_file
        recipe = load_model_file(path, data.input_shape, data.num_classes)
        config = BenchConfig(path, backends, batches, args.steps, args.warmup, args.repeats, args.threads,
                             baselines=(), data=args.data, data_dir=data_dir, timeout_s=args.timeout)
        print(f"bench {recipe.name}: batches {', '.join(map(str, batches))}", flush=True)
        rows = summarise(run_bench(config, lambda r: print(f"  {r.label}: {r.status} ({r.wall_s:.1f}s)",
                                                             flush=True)))["rows"]
        for batch in batches:
            bench_ms = {r["backend"]: r["median_step_ms"] for r in rows
                        if r["batch_size"] == batch and "median_step_ms" in r}
            workload = workload_from_model(recipe.model, recipe.loss, recipe.optimizer, batch_size=batch,
                                           dataset_size=len(data.x_train), name=recipe.name, model_file=path,
                                           data=args.data, data_dir=data_dir)
            measured = recommend(workload, machine=machine, measure=True, backends=backends, trial=trial)
            estimate = recommend(workload, machine=machine, use_cache=False, backends=backends)
            cell = {"model": model_file, "batch_size": batch, "bench_ms": bench_ms,
                    "trial_ms": {r.backend: r.step_ms for r in measured.ranking},
                    "confidence": measured.confidence, "estimate_ranking": [r.backend for r in estimate.ranking],
                    **agreement(bench_ms, measured.best, estimate.best)}
            cells.append(cell)
            print(f"  batch {batch}: bench fastest {cell['fastest']}, recommend {cell['recommended']} "
                  f"({'match' if cell['match'] else 'no match'}), estimate {cell['estimated']}", flush=True)
    record = {
        "command": "python benchmarks/recommend_matrix.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine.to_dict(), "machine_text": machine.describe(), "backends": list(backends),
        "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                     "trial_steps": args.trial_steps, "trial_warmup": args.trial_warmup,
                     "trial_repeats": args.trial_repeats,
                     "threads": args.threads, "data": args.data},
        "wall_s": time.perf_counter() - started,
        "cells": cells, "rates": agreement_rates(cells),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recommend_matrix.json").write_text(json.dumps(record, indent=1))
    (out / "recommend_matrix.md").write_text(markdown(record))
    rates = record["rates"]
    print(f"agreement over {rates['judged']} cells: fastest match {_pct(rates['fastest_match_pct'])}, "
          f"within 10% {_pct(rates['within_pct'])}, estimate alone {_pct(rates['estimate_match_pct'])}; "
          f"wrote {out / 'recommend_matrix.json'} and {out / 'recommend_matrix.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
