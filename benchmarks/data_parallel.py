"""1 vs 2 data-parallel workers: median step time and final loss of the seed CNN on MNIST.

Run from the project root: ``python benchmarks/data_parallel.py --data-dir DIR --out FILE.json``.
Each configuration trains ``--steps`` global batches after ``--warmup`` untimed ones; step times
are taken between the trainer's batch-end callbacks (driver-side wall time, so they include the
transfer of each slice to its worker). Thread settings are recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import polyframe as pf


class _Clock(pf.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_batch_end(self, step: int, logs: dict) -> None:
        self.times.append(time.perf_counter())


def _model(shape: tuple[int, ...]) -> pf.Sequential:
    return pf.Sequential([pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                          pf.Dense(128, activation="relu"), pf.Dense(10)], input_shape=shape)


def run(backend: str, devices: int, data: pf.datasets.Split, batch: int, steps: int, warmup: int) -> dict:
    options = {} if devices == 0 else {"strategy": "data_parallel", "devices": devices}
    start = time.perf_counter()
    trainer = pf.Trainer(_model(data.input_shape), backend=backend, optimizer=pf.Adam(1e-3), seed=0,
                         **options)
    built = time.perf_counter() - start
    clock = _Clock()
    rows = (steps + warmup) * batch
    history = trainer.fit(data.x_train[:rows], data.y_train[:rows], batch_size=batch, progress=False,
                          callbacks=[clock])
    gaps = [b - a for a, b in zip(clock.times[warmup:], clock.times[warmup + 1:])]
    if devices:
        trainer.executable.close()
    return {"backend": backend, "workers": devices or 1, "mode": "data_parallel" if devices else "single",
            "build_s": built, "median_step_ms": 1e3 * statistics.median(gaps),
            "spread_ms": 1e3 * (max(gaps) - min(gaps)), "final_loss": history.step_losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--backends", default="torch,tensorflow,jax")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = pf.datasets.mnist(args.data_dir)
    rows = []
    for backend in args.backends.split(","):
        for devices in (0, 1, 2):
            rows.append(run(backend, devices, data, args.batch_size, args.steps, args.warmup))
            print(json.dumps(rows[-1]), flush=True)
    threads = {name: os.environ.get(name, "unset") for name in ("OMP_NUM_THREADS",)}
    meta = {"cpus": os.cpu_count(), "machine": platform.machine(), "threads": threads,
            "worker_threads": "OMP_NUM_THREADS = cpus // worker processes unless set",
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup}
    with open(args.out, "w") as handle:
        json.dump({"meta": meta, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
