"""What ``deterministic=True`` costs: median train-step time of the seed CNN with the switch off
and on, per backend, each run in its own process (TensorFlow's switch is process-wide).

    python benchmarks/determinism_cost.py --repeats 3 --steps 60 --warmup 10 --threads 2

Prints a table and writes benchmarks/results/determinism_cost.json. Runs alternate off / on so a
slow spell of a shared machine does not fall on one setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, time
import numpy as np
backend, deterministic, steps, warmup = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
if backend == "torch":
    import torch
    torch.set_num_threads(int(os.environ["POLYFRAME_BENCH_THREADS"]))
import polyframe as pf
data = pf.datasets.digits()
model = pf.Sequential([pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                       pf.Dense(128, activation="relu"), pf.Dense(10)], input_shape=data.input_shape)
trainer = pf.Trainer(model, backend=backend, optimizer=pf.Adam(1e-3), seed=0, deterministic=deterministic)
run = trainer.executable
x = run.prepare_inputs(data.x_train[:64])
y = data.y_train[:64]
times = []
for step in range(warmup + steps):
    start = time.perf_counter()
    run.train_step(x, y)
    times.append(time.perf_counter() - start)
print(json.dumps({"step_ms": [1e3 * t for t in times[warmup:]]}))
"""


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "POLYFRAME_BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,tensorflow,jax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "determinism_cost.json"))
    args = parser.parse_args(argv)
    medians: dict[str, dict[str, list[float]]] = {}
    for backend in args.backends.split(","):
        medians[backend] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for label, flag in (("off", "0"), ("on", "1")):
                done = subprocess.run([sys.executable, "-c", _CHILD, backend, flag, str(args.steps),
                                       str(args.warmup)], capture_output=True, text=True,
                                      env=_env(args.threads), cwd=ROOT, timeout=600, check=True)
                steps = json.loads(done.stdout.strip().splitlines()[-1])["step_ms"]
                medians[backend][label].append(statistics.median(steps))
    rows = {b: {k: statistics.median(v) for k, v in m.items()} for b, m in medians.items()}
    print(f"seed CNN, digits, batch 64, {args.steps} steps after {args.warmup} warm-up, "
          f"{args.repeats} processes per setting, {args.threads} threads")
    print("backend     off ms  on ms   on/off")
    for backend, row in rows.items():
        print(f"{backend:<11} {row['off']:6.2f}  {row['on']:6.2f}  {row['on'] / row['off']:.3f}")
    Path(args.out).write_text(json.dumps({"command": "python benchmarks/determinism_cost.py " +
                                          " ".join(argv or sys.argv[1:]),
                                          "settings": {k: v for k, v in vars(args).items() if k != "out"},
                                          "process_medians_ms": medians,
                                          "median_ms": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
