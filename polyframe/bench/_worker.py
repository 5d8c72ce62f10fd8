"""One benchmark run in its own process: ``python -m polyframe.bench._worker SPEC_JSON``.

Every implementation trains one epoch over the training set cycled to exactly
``(warmup + steps) * batch`` samples, in the same seeded order, so every step is a full batch.

Thread settings are applied before any framework is imported. The result is one JSON line on
stdout: per-step wall times (each step ends once its loss is on the host, which synchronises
every framework), losses, first-step time, evaluation accuracy and the process's peak memory.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["RunSpec", "default_threads", "thread_environment"]



@dataclass(frozen=True)
class RunSpec:
    """What one worker process runs."""

    impl: str
    backend: str
    model_file: str
    batch_size: int
    steps: int
    warmup: int
    threads: int
    data: str = "digits"
    data_dir: str | None = None
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def default_threads() -> int:
    """Threads per framework for timing runs: ``$OMP_NUM_THREADS`` when it is a positive integer
    (what the user's own training runs get), else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def thread_environment(threads: int, keras_backend: str | None = None) -> dict[str, str]:
    """Environment variables that pin every framework's thread pools to ``threads``."""
    env = {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "TF_NUM_INTRAOP_THREADS")}
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    flag = "true" if threads > 1 else "false"
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen={flag}".strip()
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    return env


def _configure_framework(framework: str, threads: int) -> None:
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
    elif framework == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _run(spec: RunSpec) -> dict[str, Any]:
    import polyframe as pf
    from polyframe.data import batch_indices
    from polyframe.modelfile import load_model_file

    data = _load_data(spec.data, spec.data_dir)
    recipe = load_model_file(spec.model_file, data.input_shape, data.num_classes)
    if data.num_classes == 0:  # synthetic regression targets, shaped like the model's output
        data = _float_targets(data, recipe.model.output_shape)
    total = spec.warmup + spec.steps
    x_train, y_train = _full_batches(data.x_train, data.y_train, total * spec.batch_size)
    stamps: list[float] = []
    framework = spec.backend if spec.impl != "keras" else os.environ.get("KERAS_BACKEND", "")
    _configure_framework(framework, spec.threads)
    started = time.perf_counter()
    if spec.impl == "polyframe":
        class Stop(pf.Callback):
            def on_batch_end(self, step: int, logs: dict) -> None:
                stamps.append(time.perf_counter())
                if len(stamps) >= total:
                    self.trainer.stop_training = True

        trainer = pf.Trainer(recipe.model, loss=recipe.loss, optimizer=recipe.optimizer,
                             backend=spec.backend, seed=spec.seed)
        version = trainer.backend.framework_version()
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        losses = trainer.fit(x_train, y_train, epochs=1, batch_size=spec.batch_size,
                             callbacks=[Stop()], progress=False).step_losses
        predict: Callable[[np.ndarray], np.ndarray] = trainer.predict
    else:
        order = list(batch_indices(len(x_train), spec.batch_size, seed=spec.seed, epoch=0, shuffle=True))
        weights = recipe.model.init_weights(spec.seed)
        args = (recipe.model, weights, recipe.loss, recipe.optimizer, x_train, y_train,
                order, lambda: stamps.append(time.perf_counter()))
        build_s = 0.0
        if spec.impl == "native":
            from .native import train_native
            run = train_native(spec.backend, *args)
        else:
            from .keras_baseline import train_keras
            run = train_keras(*args)
        losses, predict = run.losses, run.predict
        backend = pf.registered_backends().get(framework)
        version = backend.framework_version() if backend else None
    steps = np.diff(np.array([started, *stamps]))
    outputs = np.concatenate([predict(data.x_test[i:i + 256]) for i in range(0, len(data.x_test), 256)])
    accuracy = float(np.mean(np.argmax(outputs, axis=-1) == data.y_test)) if data.y_test.ndim == 1 \
        else float("nan")
    return {
        "build_s": build_s,
        "first_step_s": float(steps[0]),
        "step_s": steps[spec.warmup:].tolist(),
        "losses": [float(v) for v in losses],
        "eval_accuracy": accuracy,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "framework_version": version,
    }


def _full_batches(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The training set cycled to exactly ``n`` samples, so that one shuffled epoch is
    ``n / batch`` full batches: no partial last batch mixes a second shape into the timings."""
    index = np.arange(n) % len(x)
    return x[index], y[index]


def _load_data(name: str, data_dir: str | None) -> Any:
    """A dataset by name, or ``synthetic:HxWxC:CLASSES:SAMPLES``: seeded random inputs and labels
    for timing a model that has no dataset at hand (``backend="auto"``); CLASSES 0 asks for
    float targets (see :func:`_float_targets`)."""
    from polyframe.datasets import Split, load

    if not name.startswith("synthetic:"):
        return load(name, data_dir)
    _, shape_text, classes_text, samples_text = name.split(":")
    shape, classes, samples = tuple(int(d) for d in shape_text.split("x")), int(classes_text), int(samples_text)
    rng = np.random.default_rng(0)
    x = rng.random((samples, *shape), dtype=np.float32)
    y = rng.integers(0, max(classes, 1), samples)
    test = max(1, samples // 8)
    return Split("synthetic", x[test:], y[test:], x[:test], y[:test], classes)


def _float_targets(data: Any, output_shape: tuple[int, ...]) -> Any:
    from polyframe.datasets import Split

    rng = np.random.default_rng(1)
    make = lambda n: rng.standard_normal((n, *output_shape)).astype(np.float32)  # noqa: E731
    return Split(data.name, data.x_train, make(len(data.x_train)), data.x_test, make(len(data.x_test)), 0)


def main(argv: list[str]) -> int:
    spec = RunSpec(**json.loads(argv[0]))
    result = _run(spec)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
