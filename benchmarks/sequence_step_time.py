"""Median train-step time of the character-level LSTM and Transformer examples: polyframe vs
hand-written native loops in the same framework.

Models: ``examples/char_lstm.py`` (Embedding 32 -> LSTM 128 -> Dense) and
``examples/char_transformer.py`` (Embedding 64 -> 2 causal pre-norm encoder blocks, 4 heads,
ff 128 -> LayerNorm -> Flatten -> Dense), on the ``text`` dataset (context 32), batch 64, the
example's Adam, seed 0. Native loops, written directly in each framework from the same
canonical weights and visiting the same batches:

- torch: ``nn.Embedding`` + ``nn.LSTM(batch_first=True)`` / ``nn.TransformerEncoderLayer(
  norm_first=True, batch_first=True)`` with a causal mask, ``torch.optim.Adam``;
- tensorflow: ``tf.Variable`` weights, the LSTM unrolled over the 32 steps and attention written
  with ``tf.einsum`` in one ``tf.function``, Adam in TF ops;
- jax: the LSTM as ``lax.scan``, attention with ``jnp.einsum``, one ``jax.jit`` step with optax.

Each (model, backend, implementation) runs ``--repeats`` times in fresh processes, alternating
polyframe and native, with the thread settings of ``step_time.py``. A step is the interval
between consecutive step ends (the loss on the host); the first ``--warmup`` steps (tracing and
compilation included) are reported apart. Figure: the median of the per-process medians.

    python benchmarks/sequence_step_time.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from step_time import _configure_framework, _machine, _set_threads

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
MODELS = {"lstm": "char_lstm", "transformer": "char_transformer"}
BACKENDS = ("torch", "tensorflow", "jax")
CONTEXT, STRIDE, BATCH, SEED = 32, 8, 64, 0
HEADS, EPSILON = 4, 1e-5
BLOCKS = ("transformer_encoder_block", "transformer_encoder_block_1")


def _block_weights(w: dict[str, np.ndarray], block: str) -> dict[str, np.ndarray]:
    return {k[len(block) + 1:]: v for k, v in w.items() if k.startswith(block + ".")}


# -- torch -----------------------------------------------------------------------------------
def _torch_lstm(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    class CharLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            vocab, width = w["embedding.embeddings"].shape
            units = w["lstm.recurrent_kernel"].shape[0]
            self.embed = nn.Embedding(vocab, width)
            self.lstm = nn.LSTM(width, units, batch_first=True)
            self.head = nn.Linear(units, vocab)

        def forward(self, ids: Any) -> Any:
            h, _ = self.lstm(self.embed(ids))
            return self.head(h[:, -1])

    net = CharLSTM()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        net.embed.weight.copy_(t(w["embedding.embeddings"]))
        net.lstm.weight_ih_l0.copy_(t(w["lstm.kernel"].T))
        net.lstm.weight_hh_l0.copy_(t(w["lstm.recurrent_kernel"].T))
        net.lstm.bias_ih_l0.copy_(t(w["lstm.bias"]))
        net.lstm.bias_hh_l0.zero_()
        net.head.weight.copy_(t(w["next_char.kernel"].T))
        net.head.bias.copy_(t(w["next_char.bias"]))
    net.lstm.bias_hh_l0.requires_grad_(False)  # one canonical bias; a second doubles its Adam step
    return net


def _torch_transformer(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    vocab, width = w["embedding.embeddings"].shape
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    def encoder(block: str) -> Any:
        p = _block_weights(w, block)
        layer = nn.TransformerEncoderLayer(width, HEADS, p["ff_1.kernel"].shape[1], dropout=0.0,
                                           layer_norm_eps=EPSILON, batch_first=True, norm_first=True)
        a = "attention."
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(t(np.concatenate(
                [p[a + f"{n}_kernel"].T for n in ("query", "key", "value")])))
            layer.self_attn.in_proj_bias.copy_(t(np.concatenate(
                [p[a + f"{n}_bias"] for n in ("query", "key", "value")])))
            layer.self_attn.out_proj.weight.copy_(t(p[a + "output_kernel"].T))
            layer.self_attn.out_proj.bias.copy_(t(p[a + "output_bias"]))
            for mine, theirs in (("ff_1", layer.linear1), ("ff_2", layer.linear2)):
                theirs.weight.copy_(t(p[f"{mine}.kernel"].T))
                theirs.bias.copy_(t(p[f"{mine}.bias"]))
            for mine, theirs in (("norm_1", layer.norm1), ("norm_2", layer.norm2)):
                theirs.weight.copy_(t(p[f"{mine}.gamma"]))
                theirs.bias.copy_(t(p[f"{mine}.beta"]))
        return layer

    class CharTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.blocks = nn.ModuleList(encoder(b) for b in BLOCKS)
            self.norm = nn.LayerNorm(width, eps=EPSILON)
            self.head = nn.Linear(CONTEXT * width, vocab)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

        def forward(self, ids: Any) -> Any:
            h = self.embed(ids)
            for block in self.blocks:
                h = block(h, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(h).flatten(1))

    net = CharTransformer()
    with torch.no_grad():
        net.embed.weight.copy_(t(w["embedding.embeddings"]))
        net.norm.weight.copy_(t(w["layer_norm.gamma"]))
        net.norm.bias.copy_(t(w["layer_norm.beta"]))
        net.head.weight.copy_(t(w["next_char.kernel"].T))
        net.head.bias.copy_(t(w["next_char.bias"]))
    return net


def _native_torch(model: str, w, x, y, order, lr, stamps) -> list[float]:
    import torch
    import torch.nn.functional as F
    torch.manual_seed(SEED)
    net = (_torch_lstm if model == "lstm" else _torch_transformer)(w)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr, eps=1e-8)
    ids, labels = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)
    net.train()
    losses = []
    for idx in order:
        index = torch.from_numpy(idx)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(ids[index]), labels[index])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        stamps.append(time.perf_counter())
    return losses


# -- tensorflow ------------------------------------------------------------------------------
def _tf_forward(model: str, v: dict[str, Any], ids: Any) -> Any:
    import tensorflow as tf
    h = tf.nn.embedding_lookup(v["embedding.embeddings"], ids)
    if model == "lstm":
        pre = tf.einsum("nlf,fg->nlg", h, v["lstm.kernel"]) + v["lstm.bias"]
        units = v["lstm.recurrent_kernel"].shape[0]
        state = cell = tf.zeros((tf.shape(ids)[0], units))
        for step in range(CONTEXT):
            i, f, g, o = tf.split(pre[:, step] + state @ v["lstm.recurrent_kernel"], 4, axis=1)
            cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(g)
            state = tf.sigmoid(o) * tf.tanh(cell)
        return state @ v["next_char.kernel"] + v["next_char.bias"]

    def norm(t: Any, prefix: str) -> Any:
        mean, var = tf.nn.moments(t, axes=[-1], keepdims=True)
        return (t - mean) * tf.math.rsqrt(var + EPSILON) * v[prefix + ".gamma"] + v[prefix + ".beta"]

    width = h.shape[-1]
    causal = tf.linalg.band_part(tf.ones((CONTEXT, CONTEXT), tf.bool), -1, 0)
    for block in BLOCKS:
        a = norm(h, block + ".norm_1")
        q, k, val = (tf.reshape(a @ v[f"{block}.attention.{n}_kernel"] + v[f"{block}.attention.{n}_bias"],
                                (-1, CONTEXT, HEADS, width // HEADS)) for n in ("query", "key", "value"))
        scores = tf.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(width // HEADS).astype(np.float32)
        probs = tf.nn.softmax(tf.where(causal, scores, -1e30), axis=-1)
        heads = tf.reshape(tf.einsum("nhqk,nkhd->nqhd", probs, val), (-1, CONTEXT, width))
        h = h + heads @ v[f"{block}.attention.output_kernel"] + v[f"{block}.attention.output_bias"]
        f = tf.nn.relu(norm(h, block + ".norm_2") @ v[f"{block}.ff_1.kernel"] + v[f"{block}.ff_1.bias"])
        h = h + f @ v[f"{block}.ff_2.kernel"] + v[f"{block}.ff_2.bias"]
    h = tf.reshape(norm(h, "layer_norm"), (-1, CONTEXT * width))
    return h @ v["next_char.kernel"] + v["next_char.bias"]


def _native_tensorflow(model: str, w, x, y, order, lr, stamps) -> list[float]:
    import tensorflow as tf

    import polyframe as pf
    from polyframe.bench.native import _tf_update
    variables = {k: tf.Variable(a) for k, a in w.items()}
    params = list(variables.values())
    update = _tf_update(tf, pf.Adam(lr), params)
    ids = x.astype(np.int32)

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = _tf_forward(model, variables, xb)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        update([tf.convert_to_tensor(g) for g in tape.gradient(loss, params)])  # embedding: IndexedSlices
        return loss

    losses = []
    for idx in order:
        losses.append(float(step(tf.convert_to_tensor(ids[idx]), tf.convert_to_tensor(y[idx]))))
        stamps.append(time.perf_counter())
    return losses


# -- jax -------------------------------------------------------------------------------------
def _jax_forward(model: str, p: dict[str, Any], ids: Any) -> Any:
    import jax
    import jax.numpy as jnp
    h = p["embedding.embeddings"][ids]
    if model == "lstm":
        units = p["lstm.recurrent_kernel"].shape[0]

        def cell(carry: Any, pre: Any) -> tuple[Any, None]:
            state, c = carry
            i, f, g, o = jnp.split(pre + state @ p["lstm.recurrent_kernel"], 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

        pre = jnp.swapaxes(h @ p["lstm.kernel"] + p["lstm.bias"], 0, 1)
        zeros = jnp.zeros((ids.shape[0], units))
        (state, _), _ = jax.lax.scan(cell, (zeros, zeros), pre)
        return state @ p["next_char.kernel"] + p["next_char.bias"]

    def norm(t: Any, prefix: str) -> Any:
        mean, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
        return (t - mean) * jax.lax.rsqrt(var + EPSILON) * p[prefix + ".gamma"] + p[prefix + ".beta"]

    width = h.shape[-1]
    causal = jnp.tril(jnp.ones((CONTEXT, CONTEXT), bool))
    for block in BLOCKS:
        a = norm(h, block + ".norm_1")
        q, k, val = ((a @ p[f"{block}.attention.{n}_kernel"] + p[f"{block}.attention.{n}_bias"])
                     .reshape(-1, CONTEXT, HEADS, width // HEADS) for n in ("query", "key", "value"))
        scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(width // HEADS).astype(np.float32)
        probs = jax.nn.softmax(jnp.where(causal, scores, -1e30), axis=-1)
        heads = jnp.einsum("nhqk,nkhd->nqhd", probs, val).reshape(-1, CONTEXT, width)
        h = h + heads @ p[f"{block}.attention.output_kernel"] + p[f"{block}.attention.output_bias"]
        f = jax.nn.relu(norm(h, block + ".norm_2") @ p[f"{block}.ff_1.kernel"] + p[f"{block}.ff_1.bias"])
        h = h + f @ p[f"{block}.ff_2.kernel"] + p[f"{block}.ff_2.bias"]
    h = norm(h, "layer_norm").reshape(-1, CONTEXT * width)
    return h @ p["next_char.kernel"] + p["next_char.bias"]


def _native_jax(model: str, w, x, y, order, lr, stamps) -> list[float]:
    import jax
    import jax.numpy as jnp
    import optax
    tx = optax.adam(lr, eps=1e-8, eps_root=0.0)
    params = {k: jnp.asarray(a) for k, a in w.items()}
    state = tx.init(params)
    ids, labels = x.astype(np.int32), y.astype(np.int32)

    def objective(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        return optax.softmax_cross_entropy_with_integer_labels(_jax_forward(model, p, xb), yb).mean()

    @jax.jit
    def step(p: dict[str, Any], s: Any, xb: Any, yb: Any) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(objective)(p, xb, yb)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses = []
    for idx in order:
        params, state, loss = step(params, state, ids[idx], labels[idx])
        losses.append(float(loss))
        stamps.append(time.perf_counter())
    return losses


NATIVE = {"torch": _native_torch, "tensorflow": _native_tensorflow, "jax": _native_jax}


def _polyframe(recipe: Any, backend: str, x, y, stamps) -> list[float]:
    import polyframe as pf

    class Stamp(pf.Callback):
        def on_batch_end(self, step: int, logs: dict) -> None:
            stamps.append(time.perf_counter())

    trainer = pf.Trainer(recipe.model, loss=recipe.loss, optimizer=recipe.optimizer,
                         backend=backend, seed=SEED)
    history = trainer.fit(x, y, epochs=1, batch_size=BATCH, callbacks=[Stamp()], progress=False)
    return history.step_losses


def worker(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    import polyframe as pf
    from polyframe.data import batch_indices
    from polyframe.modelfile import load_model_file
    _configure_framework(args.backend, args.threads)
    data = pf.datasets.text(context=CONTEXT, stride=STRIDE)
    steps = args.warmup + args.steps
    x, y = data.x_train[:steps * BATCH], data.y_train[:steps * BATCH]
    recipe = load_model_file(EXAMPLES / f"{MODELS[args.model]}.py", data.input_shape, data.num_classes)
    order = list(batch_indices(len(x), BATCH, seed=SEED, epoch=0, shuffle=True))
    stamps: list[float] = []
    start = time.perf_counter()
    if args.impl == "native":
        losses = NATIVE[args.backend](args.model, recipe.model.init_weights(SEED), x, y, order,
                                      recipe.optimizer.learning_rate, stamps)
    else:
        losses = _polyframe(recipe, args.backend, x, y, stamps)
    gaps = np.diff(np.array([start, *stamps]))
    json.dump({"warmup_s": float(gaps[:args.warmup].sum()), "step_s": gaps[args.warmup:].tolist(),
               "first_losses": losses[:3], "final_loss": float(np.mean(losses[-10:])),
               "steps": len(losses)}, sys.stdout)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--out", default=str(HERE / "results" / "sequence_step_time.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=("polyframe", "native"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = _load()
    runs: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for model in args.models.split(","):
        for backend in args.backends.split(","):
            cell = runs.setdefault(model, {}).setdefault(backend, {"polyframe": [], "native": []})
            for repeat in range(args.repeats):
                for impl in ("polyframe", "native") if repeat % 2 == 0 else ("native", "polyframe"):
                    cmd = [sys.executable, __file__, "--worker", "--model", model, "--backend", backend,
                           "--impl", impl, "--threads", str(args.threads), "--steps", str(args.steps),
                           "--warmup", str(args.warmup)]
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                    if proc.returncode != 0:
                        raise SystemExit(f"{model}/{backend}/{impl} failed:\n{proc.stderr[-3000:]}")
                    cell[impl].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                    print(f"{model:11s} {backend:10s} {impl:9s} run {repeat + 1}: median step "
                          f"{statistics.median(cell[impl][-1]['step_s']) * 1e3:.2f} ms", flush=True)
    summary: dict[str, dict[str, Any]] = {}
    for model, backends in runs.items():
        for backend, impls in backends.items():
            row: dict[str, Any] = {}
            for impl, samples in impls.items():
                medians = [statistics.median(s["step_s"]) * 1e3 for s in samples]
                row[impl] = {"median_step_ms": statistics.median(medians),
                             "per_process_median_ms": medians,
                             "warmup_s": statistics.median(s["warmup_s"] for s in samples),
                             "first_losses": samples[0]["first_losses"],
                             "final_loss": statistics.median(s["final_loss"] for s in samples)}
            row["ratio_polyframe_over_native"] = (row["polyframe"]["median_step_ms"]
                                                  / row["native"]["median_step_ms"])
            summary.setdefault(model, {})[backend] = row
    record = {"command": "python benchmarks/sequence_step_time.py " + " ".join(sys.argv[1:]),
              "machine": _machine(), "load_average_before": load_before, "load_average_after": _load(),
              "threads": args.threads, "batch": BATCH, "context": CONTEXT, "repeats": args.repeats,
              "steps_per_process": args.steps, "warmup_steps": args.warmup,
              "summary": summary, "raw": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"\nload average before {load_before}, after {record['load_average_after']}")
    print(f"{'model':11s} {'backend':10s} {'polyframe ms':>12s} {'native ms':>10s} {'ratio':>6s}")
    for model, backends in summary.items():
        for backend, row in backends.items():
            print(f"{model:11s} {backend:10s} {row['polyframe']['median_step_ms']:12.2f} "
                  f"{row['native']['median_step_ms']:10.2f} {row['ratio_polyframe_over_native']:6.3f}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
