"""Median train-step time of the seed CNN on MNIST: polyframe vs a hand-written native loop.

Each (backend, implementation) pair runs in its own subprocess with the same thread settings and
the same data (MNIST test split -> 8,000 train images, batch 64, Adam(1e-3), seed 0). A step is
the interval between consecutive step ends in the training loop (batch gathering, the compiled
step and pulling the loss back to the host included); the first ``--warmup`` steps are dropped.
Each pair runs ``--repeats`` times in fresh processes, alternating polyframe and native; the
figure is the median of the per-process medians, with the interquartile range of all steps.

    python benchmarks/step_time.py --data-dir ../shared/data/mnist [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch", "tensorflow", "jax")
BATCH, LR, SEED = 64, 1e-3, 0


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"


def _configure_framework(backend: str, threads: int) -> None:
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _order(n: int, epochs: int) -> list[np.ndarray]:
    from polyframe.data import batch_indices
    return [i for e in range(epochs) for i in batch_indices(n, BATCH, seed=SEED, epoch=e, shuffle=True)]


# -- native loops: the same network, written directly in each framework ------------------------
def _native_torch(x, y, weights, order, stamps):
    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.manual_seed(SEED)
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))
    rows = np.arange(13 * 13 * 32).reshape(13, 13, 32).transpose(2, 0, 1).ravel()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(weights["conv2d.kernel"].transpose(3, 2, 0, 1).copy()))
        net[0].bias.copy_(torch.from_numpy(weights["conv2d.bias"]))
        net[4].weight.copy_(torch.from_numpy(weights["dense.kernel"][rows].T.copy()))
        net[4].bias.copy_(torch.from_numpy(weights["dense.bias"]))
        net[6].weight.copy_(torch.from_numpy(weights["dense_1.kernel"].T.copy()))
        net[6].bias.copy_(torch.from_numpy(weights["dense_1.bias"]))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    xs = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    losses = []
    for idx in order:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(torch.from_numpy(xs[idx])), torch.from_numpy(y[idx]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
        stamps.append(time.perf_counter())
    return losses


def _native_tensorflow(x, y, weights, order, stamps):
    import tensorflow as tf
    params = [tf.Variable(weights[k]) for k in sorted(weights)]
    m = [tf.Variable(tf.zeros_like(p)) for p in params]
    v = [tf.Variable(tf.zeros_like(p)) for p in params]
    t = tf.Variable(0.0)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def forward(p, xb):
        conv_b, conv_k, d_b, d_k, o_b, o_k = p
        h = tf.nn.relu(tf.nn.conv2d(xb, conv_k, 1, "VALID") + conv_b)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.reshape(h, (tf.shape(h)[0], -1))
        h = tf.nn.relu(h @ d_k + d_b)
        return h @ o_k + o_b

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, forward(params, xb)))
        grads = tape.gradient(loss, params)
        t.assign_add(1.0)
        for p, g, mi, vi in zip(params, grads, m, v):
            mi.assign(b1 * mi + (1 - b1) * g)
            vi.assign(b2 * vi + (1 - b2) * g * g)
            p.assign_sub(LR * (mi / (1 - b1 ** t)) / (tf.sqrt(vi / (1 - b2 ** t)) + eps))
        return loss

    losses = []
    for idx in order:
        losses.append(float(step(tf.convert_to_tensor(x[idx]), tf.convert_to_tensor(y[idx]))))
        stamps.append(time.perf_counter())
    return losses


def _native_jax(x, y, weights, order, stamps):
    import jax
    import jax.numpy as jnp
    import optax
    params = {k: jnp.asarray(v) for k, v in weights.items()}
    tx = optax.adam(LR)
    state = tx.init(params)

    def loss_fn(p, xb, yb):
        h = jax.lax.conv_general_dilated(xb, p["conv2d.kernel"], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.relu(h + p["conv2d.bias"])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["dense.kernel"] + p["dense.bias"])
        logits = h @ p["dense_1.kernel"] + p["dense_1.bias"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step(p, s, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses = []
    for idx in order:
        params, state, loss = step(params, state, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
        losses.append(float(loss))
        stamps.append(time.perf_counter())
    return losses


def _polyframe(backend, x, y, order, stamps, model):
    import polyframe as pf

    class Stamp(pf.Callback):
        def on_batch_end(self, step, logs):
            stamps.append(time.perf_counter())

    trainer = pf.Trainer(model, optimizer=pf.Adam(LR), backend=backend, seed=SEED)
    epochs = -(-len(order) * BATCH // len(x))
    history = trainer.fit(x, y, epochs=epochs, batch_size=BATCH, callbacks=[Stamp()], progress=False)
    return history.step_losses


def worker(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    import polyframe as pf
    _configure_framework(args.backend, args.threads)
    data = pf.datasets.mnist(args.data_dir)
    x, y = data.x_train, data.y_train
    model = pf.Sequential([pf.Conv2D(32, 3, activation="relu"), pf.MaxPool2D(2), pf.Flatten(),
                           pf.Dense(128, activation="relu"), pf.Dense(10)], input_shape=data.input_shape)
    epochs = args.epochs
    order = _order(len(x), epochs)
    stamps: list[float] = []
    start = time.perf_counter()
    if args.impl == "native":
        native = {"torch": _native_torch, "tensorflow": _native_tensorflow, "jax": _native_jax}[args.backend]
        losses = native(x, y, model.init_weights(SEED), order, stamps)
    else:
        losses = _polyframe(args.backend, x, y, order, stamps, model)
    steps = np.diff(np.array([start, *stamps]))
    json.dump({"first_step_s": float(steps[0]), "step_s": steps[args.warmup:].tolist(),
               "final_loss": float(np.mean(losses[-20:])), "steps": len(losses)}, sys.stdout)


def _machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    import importlib.metadata as md
    versions = {}
    for dist in ("torch", "tensorflow-cpu", "jax", "jaxlib", "optax", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "gpu": None,
            "python": platform.python_version(), "versions": versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "step_time.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=("polyframe", "native"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[str, dict[str, list[dict]]] = {}
    for backend in args.backends.split(","):
        runs[backend] = {"polyframe": [], "native": []}
        for repeat in range(args.repeats):
            for impl in ("polyframe", "native") if repeat % 2 == 0 else ("native", "polyframe"):
                cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--impl", impl,
                       "--data-dir", args.data_dir, "--threads", str(args.threads),
                       "--epochs", str(args.epochs), "--warmup", str(args.warmup)]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    raise SystemExit(f"{backend}/{impl} failed:\n{proc.stderr[-3000:]}")
                runs[backend][impl].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"{backend:10s} {impl:9s} run {repeat + 1}: median step "
                      f"{statistics.median(runs[backend][impl][-1]['step_s']) * 1e3:.2f} ms", flush=True)
    summary = {}
    for backend, impls in runs.items():
        row = {}
        for impl, samples in impls.items():
            medians = [statistics.median(s["step_s"]) for s in samples]
            every = np.concatenate([s["step_s"] for s in samples])
            q1, q3 = np.percentile(every, [25, 75])
            row[impl] = {"median_step_ms": statistics.median(medians) * 1e3,
                         "per_process_median_ms": [m * 1e3 for m in medians],
                         "iqr_ms": [q1 * 1e3, q3 * 1e3],
                         "first_step_ms": statistics.median(s["first_step_s"] for s in samples) * 1e3,
                         "final_loss": statistics.median(s["final_loss"] for s in samples)}
        row["ratio_polyframe_over_native"] = row["polyframe"]["median_step_ms"] / row["native"]["median_step_ms"]
        summary[backend] = row
    record = {"command": "python benchmarks/step_time.py " + " ".join(sys.argv[1:]),
              "machine": _machine(), "threads": args.threads, "batch": BATCH, "repeats": args.repeats,
              "epochs_per_process": args.epochs, "warmup_steps": args.warmup,
              "summary": summary, "raw": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"\n{'backend':10s} {'polyframe ms':>12s} {'native ms':>10s} {'ratio':>6s}")
    for backend, row in summary.items():
        print(f"{backend:10s} {row['polyframe']['median_step_ms']:12.2f} "
              f"{row['native']['median_step_ms']:10.2f} {row['ratio_polyframe_over_native']:6.3f}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
