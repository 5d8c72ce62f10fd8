"""The ``polyframe`` command line.

Every :class:`~polyframe.errors.PolyframeError` becomes one line on stderr and exit status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .datasets import DATASETS, load
from ._checks import check_float
from .errors import ConfigError, PolyframeError
from .bench._worker import default_threads
from .modelfile import load_model_file
from .plugins import ENV_BACKEND, get_backend, registered_backends
from .precision import PRECISIONS
from .trainer import Trainer

__all__ = ["main"]

EXIT_ERROR = 2


def _int_at_least(minimum: int, what: str):
    """An argparse type for integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part) for part in text.split(","))


class _Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line form as every other polyframe error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"polyframe: error: {message} (see `{self.prog} --help`)\n")


def _fraction(text: str) -> float:
    try:
        return check_float(float(text), "--validation-split", low=0.0, high=1.0, high_open=True)
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="polyframe", description="Train one model on PyTorch, TensorFlow or JAX.")
    parser.add_argument("--version", action="version", version=f"polyframe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    train = commands.add_parser("train", help="train a model file on a dataset",
                                description="Train MODEL_FILE (defines build_model(input_shape, "
                                            "num_classes)) and report the test accuracy.")
    train.add_argument("model_file", metavar="MODEL_FILE")
    train.add_argument("--backend", help=f"backend name (default: ${ENV_BACKEND}, else the first "
                                         "available; see `polyframe backends`), or 'auto': the one "
                                         "`polyframe recommend` picks (cached bench results, else a short trial)")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--seed", type=_seed, help="default: the --resume checkpoint's, else 0")
    train.add_argument("--data", choices=DATASETS, default="digits",
                       help="dataset (default: digits, bundled with scikit-learn; wine and "
                            "breast_cancer are too; text is the standard library's source)")
    train.add_argument("--data-dir", help="directory with MNIST IDX files or mnist.npz (for --data mnist)")
    train.add_argument("--validation-split", type=_fraction, default=0.0,
                       help="hold out this fraction of the training data for validation")
    train.add_argument("--learning-rate", type=float,
                       help="override the model file's learning rate")
    train.add_argument("--deterministic", action="store_true",
                       help="turn on the framework's deterministic kernels")
    train.add_argument("--devices", type=_positive_int, default=1,
                       help="data-parallel workers on this machine (more than 1: strategy "
                            "data_parallel on the backend's own engine; see docs/distributed.md)")
    train.add_argument("--nodes", type=_positive_int, default=1,
                       help="machines in the job (more than 1 needs the framework's launcher)")
    train.add_argument("--precision", choices=PRECISIONS, default="float32",
                       help="float32, or bf16/fp16 compute with float32 master weights")
    train.add_argument("--checkpoint-dir", metavar="DIR",
                       help="write a checkpoint there at the end of every epoch (the newest 2 kept)")
    train.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                       help="with --checkpoint-dir: also every N training steps")
    train.add_argument("--resume", metavar="PATH",
                       help="continue from a checkpoint (or the newest in a --checkpoint-dir); "
                            "--epochs counts the whole run; the backend defaults to the checkpoint's")
    train.set_defaults(run=_train)

    bench = commands.add_parser(
        "bench", help="benchmark the backends side by side",
        description="Time MODEL_FILE's training step on each backend and against hand-written "
                    "native loops and Keras 3, each run in its own process.")
    bench.add_argument("model_file", metavar="MODEL_FILE")
    bench.add_argument("--backends", type=_names, help="comma-separated (default: every available backend)")
    bench.add_argument("--batch-size", type=_int_list, default=(32,), help="comma-separated, e.g. 32,128")
    bench.add_argument("--steps", type=_positive_int, default=50, help="timed steps per run")
    bench.add_argument("--warmup", type=_seed, default=10, help="untimed steps before them")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="runs (processes) per cell")
    bench.add_argument("--threads", type=_positive_int, default=default_threads(),
                       help="threads per framework (default: $OMP_NUM_THREADS, else all cores)")
    bench.add_argument("--precision", default="float32", choices=("float32", "bf16-mixed", "fp16-mixed"))
    bench.add_argument("--baselines", type=_names, default=("native", "keras"),
                       help="native and/or keras, or 'none'")
    bench.add_argument("--data", choices=("digits", "mnist"), default="digits")
    bench.add_argument("--data-dir")
    bench.add_argument("--seed", type=_seed, default=0)
    bench.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    bench.add_argument("--out", default="bench-results", help="directory for bench.json, bench.md, plots")
    bench.set_defaults(run=_bench)

    backends = commands.add_parser("backends", help="list registered backends",
                                   description="List every registered backend with availability, "
                                               "framework version and devices.")
    backends.add_argument("--no-devices", action="store_true",
                          help="skip device discovery (which imports each framework)")
    backends.set_defaults(run=_backends)
    _add_recommend(commands)
    _add_conformance(commands)
    return parser


def _add_recommend(commands: argparse._SubParsersAction) -> None:
    from .selector import DEVICE_KINDS, FAMILIES, PARALLELISM, PRECISIONS

    rec = commands.add_parser(
        "recommend", help="recommend a backend for a workload on this or a described machine",
        description="Which backend should train MODEL_FILE (or a workload given by --family/--params/"
                    "--flops) here, and why? Rules exclude backends (each with its reason); evidence "
                    "ranks the rest: a short --measure trial, cached `polyframe bench` results, or, "
                    "with neither, a low-confidence estimate that says so.")
    rec.add_argument("model_file", metavar="MODEL_FILE", nargs="?")
    rec.add_argument("--batch-size", type=_positive_int, default=32)
    rec.add_argument("--data", choices=("digits", "mnist"), default="digits")
    rec.add_argument("--data-dir", help="directory with MNIST IDX files or mnist.npz (for --data mnist)")
    rec.add_argument("--dataset-size", type=_positive_int, help="training samples (default: the dataset's)")
    rec.add_argument("--precision", choices=PRECISIONS, default="float32")
    rec.add_argument("--parallel", choices=PARALLELISM, default="single",
                     help="one device, or data-parallel over several")
    rec.add_argument("--family", choices=FAMILIES, help="without MODEL_FILE: the model family")
    rec.add_argument("--params", type=_seed, help="without MODEL_FILE: the parameter count")
    rec.add_argument("--flops", type=_seed, help="without MODEL_FILE: forward FLOPs per sample")
    rec.add_argument("--device", choices=("auto", *DEVICE_KINDS), default="auto",
                     help="device kind to train on (default: the machine's accelerator, else cpu)")
    rec.add_argument("--backends", type=_names, help="comma-separated (default: every known backend)")
    rec.add_argument("--hardware", metavar="FILE.json",
                     help="recommend for a machine described in JSON (Machine fields, or a bench.json)")
    rec.add_argument("--measure", action="store_true", help="time a short trial of each backend here")
    rec.add_argument("--trial-steps", type=_positive_int, default=20, help="timed steps per trial")
    rec.add_argument("--trial-repeats", type=_positive_int, default=3,
                     help="trial processes per backend, started in rotating order (median taken)")
    rec.add_argument("--trial-warmup", type=_seed, default=5, help="untimed steps before them")
    rec.add_argument("--threads", type=_positive_int, default=default_threads(),
                     help="threads per framework in the trial (default: $OMP_NUM_THREADS, else all cores)")
    rec.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per trial")
    rec.add_argument("--no-cache", action="store_true", help="ignore cached bench results")
    rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    rec.set_defaults(run=_recommend)


def _add_conformance(commands: argparse._SubParsersAction) -> None:
    conf = commands.add_parser(
        "conformance", help="prove that backends train a model the way polyframe defines it",
        description="Run the conformance suite (the polyframe-conformance package) on the named "
                    "backends, level by level, against the float64 reference and each other; "
                    "write a Markdown and JSON report with the observed errors.")
    conf.add_argument("--backend", action="append", default=[], metavar="NAME",
                      help="backend to test (repeatable; default: every registered backend)")
    conf.add_argument("--level", action="append", default=[], metavar="LEVEL",
                      help="level key or number (repeatable; 'all' adds the slow convergence "
                           "level; default: every quick level)")
    conf.add_argument("--report", metavar="FILE.md", help="write the report here (and FILE.json)")
    conf.add_argument("--limitations", action="append", default=[], metavar="FILE.json",
                      help="declared limitations keyed by backend (repeatable)")
    conf.set_defaults(run=_conformance)


def _conformance(args: argparse.Namespace) -> int:
    try:
        from polyframe_conformance import run
    except ImportError:
        raise ConfigError("the conformance suite is not installed; install it with: "
                          "pip install polyframe-conformance") from None
    return run(args.backend, args.level, args.report, args.limitations)


def _learning_rate(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else f"schedule {value!r}"


def _resume_defaults(args: argparse.Namespace):
    """``--seed`` and ``--backend`` from the ``--resume`` checkpoint when not given; returns the
    checkpoint (``None`` without ``--resume``)."""
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise ConfigError("--checkpoint-every needs --checkpoint-dir")
    if args.checkpoint_dir is not None:
        from .checkpoint import check_checkpoint_dir

        check_checkpoint_dir(args.checkpoint_dir)
    if args.resume is None:
        args.seed = 0 if args.seed is None else args.seed
        return None
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.resume)
    args.seed = checkpoint.meta["seed"] if args.seed is None else args.seed
    if args.backend is None and not os.environ.get(ENV_BACKEND, "").strip():
        args.backend = checkpoint.backend
    return checkpoint


def _train(args: argparse.Namespace) -> int:
    checkpoint = _resume_defaults(args)
    data = load(args.data, args.data_dir)
    recipe = load_model_file(args.model_file, data.input_shape, data.num_classes)
    optimizer = recipe.optimizer
    if args.learning_rate is not None:
        optimizer = dataclasses.replace(optimizer, learning_rate=args.learning_rate)  # re-validated
    trainer = Trainer(recipe.model, loss=recipe.loss, optimizer=optimizer, backend=_train_backend(args, recipe, data),
                      metrics=data.metrics, seed=args.seed, deterministic=args.deterministic,
                      strategy="data_parallel" if args.devices * args.nodes > 1 else "single",
                      devices=args.devices, nodes=args.nodes, precision=args.precision)
    version = trainer.backend.framework_version() or "unknown version"
    workers = args.devices * args.nodes
    parallel = f", data-parallel on {workers} workers" if workers > 1 else ""
    print(f"model {recipe.name}: {recipe.model.count_params():,} parameters; data {data.describe()}")
    print(f"backend {trainer.backend_name} ({trainer.backend.framework} {version}){parallel}, seed {args.seed}, "
          f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} of batch {args.batch_size}, "
          f"{type(optimizer).__name__} "
          f"lr {_learning_rate(optimizer.learning_rate)}")
    callbacks = []
    if args.checkpoint_dir is not None:
        from .monitoring import ModelCheckpoint

        callbacks.append(ModelCheckpoint(args.checkpoint_dir, every_n_steps=args.checkpoint_every))
    if checkpoint is not None:
        position = checkpoint.meta["position"]
        print(f"resuming from {checkpoint.path}: step {checkpoint.step}, epoch {checkpoint.epoch + 1}"
              f" after batch {position['batch']}" if position["batch"] else
              f"resuming from {checkpoint.path}: step {checkpoint.step}, {checkpoint.epoch} "
              f"epoch(s) done")
        if checkpoint.epoch >= args.epochs:
            print(f"nothing left to train: --epochs counts the whole run ({args.epochs}) and the "
                  f"checkpoint has done {checkpoint.epoch}; raise --epochs to train further")
    trainer.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                validation_split=args.validation_split, callbacks=callbacks, resume_from=args.resume)
    result = trainer.evaluate(data.x_test, data.y_test)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "loss")
    print(f"test {shown}  loss {result['loss']:.4f}  ({len(data.x_test)} samples)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench, summarise
    from .bench.cache import model_signature, store
    from .bench.report import table, write_outputs
    from .hardware import probe

    data = load(args.data, args.data_dir)
    recipe = load_model_file(args.model_file, data.input_shape, data.num_classes)
    backends = args.backends or tuple(n for n, b in registered_backends().items()
                                      if b.availability().available)
    for name in backends:
        get_backend(name)
    config = BenchConfig(args.model_file, tuple(backends), tuple(args.batch_size),
                         args.steps, args.warmup, args.repeats, args.threads, args.precision,
                         tuple(b for b in args.baselines if b != "none"), args.data,
                         args.data_dir, args.seed,
                         args.timeout)
    machine = probe()
    print(f"bench {recipe.name} on {data.describe()}\nmachine: {machine.describe()}; "
          f"{config.threads} threads per framework")

    def report(result) -> None:
        took = f"{result.wall_s:.1f}s"
        detail = result.error if result.status != "ok" else \
            f"median step {1e3 * statistics.median(result.result['step_s']):.2f} ms"
        print(f"  {result.label}: {result.status} ({took}) {detail}", flush=True)

    results = run_bench(config, report)
    summary = summarise(results)
    print(table(summary))
    command = "polyframe bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "polyframe bench"
    written = write_outputs(config, machine, results, summary, Path(args.out), command)
    cached = store(machine, model_signature(recipe.model, recipe.loss, recipe.optimizer),
                   config.precision, summary["rows"], config.threads)
    print(f"wrote {', '.join(str(p) for p in written)}; cached {cached} result(s)")
    return 1 if any(r.status in ("failed", "timeout") for r in results) else 0


def _backends(args: argparse.Namespace) -> int:
    rows = [("backend", "available", "framework", "adapter", "devices")]
    for name, backend in registered_backends().items():
        status = backend.availability()
        version = backend.framework_version()
        framework = f"{backend.framework} {version}" if version else backend.framework
        devices = "-"
        if status.available and not args.no_devices:
            try:
                devices = ", ".join(backend.devices())
            except Exception as exc:  # a broken framework install must not hide the others
                devices = f"error: {type(exc).__name__}: {exc}"
        rows.append((name, "yes" if status.available else f"no: {status.reason}", framework,
                     backend.adapter_distribution, devices))
    if len(rows) == 1:
        print("no backends registered; install one, e.g. pip install polyframe-torch")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _train_backend(args: argparse.Namespace, recipe, data) -> str | None:
    """``--backend auto`` (or ``$POLYFRAME_BACKEND=auto``): the recommended backend, said with its evidence."""
    if (args.backend or os.environ.get(ENV_BACKEND, "").strip()) != "auto":
        return args.backend
    from .selector import choose_backend, workload_from_model

    workload = workload_from_model(
        recipe.model, recipe.loss, recipe.optimizer, batch_size=args.batch_size, dataset_size=len(data.x_train),
        precision=args.precision, parallel="data" if args.devices * args.nodes > 1 else "single",
        name=recipe.name, model_file=str(Path(args.model_file).resolve()), data=args.data,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None)
    choice = choose_backend(workload)
    print(choice.explain(), flush=True)
    return choice.backend


def _recommend_workload(args: argparse.Namespace):
    from .selector import Workload, workload_from_model

    by_options = (args.family, args.params, args.flops)
    if args.model_file is None:
        if None in by_options:
            raise ConfigError("describe the workload: give MODEL_FILE, or --family, --params and --flops "
                              "(forward FLOPs per sample) together")
        return Workload(args.family, args.params, args.flops, args.batch_size, args.dataset_size,
                        args.precision, args.parallel, name=f"{args.family} workload"), None
    if any(v is not None for v in by_options):
        raise ConfigError("give MODEL_FILE or --family/--params/--flops, not both: "
                          "a model file already says its family, size and FLOPs")
    data = load(args.data, args.data_dir)
    recipe = load_model_file(args.model_file, data.input_shape, data.num_classes)
    workload = workload_from_model(
        recipe.model, recipe.loss, recipe.optimizer, batch_size=args.batch_size,
        dataset_size=args.dataset_size or len(data.x_train), precision=args.precision,
        parallel=args.parallel, name=recipe.name, model_file=str(Path(args.model_file).resolve()),
        data=args.data, data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None)
    return workload, data


def _recommend(args: argparse.Namespace) -> int:
    import json

    from .hardware import load_machine
    from .selector import TrialSettings, format_recommendation, recommend

    workload, data = _recommend_workload(args)
    machine = load_machine(args.hardware) if args.hardware else None
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")

    def progress(result) -> None:
        took = f"{result.wall_s:.1f}s"
        print(f"  trial {result.spec.backend}: {result.status} ({took})"
              + (f" {result.error}" if result.error else ""), file=sys.stderr, flush=True)

    rec = recommend(workload, machine=machine, described=machine is not None, device=args.device,
                    measure=args.measure, use_cache=not args.no_cache, backends=args.backends,
                    trial=TrialSettings(args.trial_steps, args.trial_warmup, args.threads, args.timeout,
                                        repeats=args.trial_repeats),
                    on_trial=progress)
    if args.json:
        print(json.dumps(rec.to_dict(), indent=1))
    else:
        command = None
        if args.model_file:
            extra = f" --data {args.data}" + (f" --data-dir {args.data_dir}" if args.data_dir else "")
            command = (f"polyframe train {args.model_file} --backend {{backend}} "
                       f"--batch-size {args.batch_size}" + (extra if args.data != "digits" else "")
                       + (" --devices 2" if args.parallel == "data" else "")
                       + (f" --precision {args.precision}" if args.precision != "float32" else ""))
        print(format_recommendation(rec, command))
    return 0 if rec.best else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except PolyframeError as exc:
        print(f"polyframe: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("polyframe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
