"""The benchmark harness: process isolation, failure handling, statistics and output files.

Runs are tiny (a few steps on the digits); nothing here asserts a wall-clock time.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyframe as pf
from polyframe.bench import BenchConfig, run_bench, summarise
from polyframe.bench.cache import lookup, model_signature, store
from polyframe.bench.report import table, write_outputs
from polyframe.bench.runner import RunResult
from polyframe.bench._worker import RunSpec
from polyframe.hardware import probe

from conftest import ROOT, require

EXAMPLE = str(ROOT / "examples" / "mnist_cnn.py")

FAULTY_PLUGIN = '''
import os, signal, time
import polyframe
from polyframe.backend import Backend, Executable


class _Hangs(Executable):
    def __init__(self, *args):
        pass
    def prepare_inputs(self, x):
        return x
    def train_step(self, x, y):
        time.sleep(3600)
    eval_step = predict = get_weights = set_weights = train_step


class _Dies(_Hangs):
    def train_step(self, x, y):
        os.kill(os.getpid(), signal.SIGKILL)


class _Base(Backend):
    framework = "numpy"
    framework_distribution = "numpy"
    adapter_distribution = "faulty-backends"
    def devices(self):
        return ["cpu"]


class Raises(_Base):
    name = "raises"
    def build(self, *args):
        raise RuntimeError("planted failure in build")


class Hangs(_Base):
    name = "hangs"
    executable = "faulty_backends:_Hangs"


class Dies(_Base):
    name = "dies"
    executable = "faulty_backends:_Dies"


@polyframe.hookimpl
def polyframe_backends():
    return [Raises, Hangs, Dies]
'''


@pytest.fixture
def faulty_backends(tmp_path, monkeypatch):
    """Three broken backends, visible only to the benchmark's worker processes."""
    require("torch")  # builds this process's plugin manager before the variables below exist
    (tmp_path / "faulty_backends.py").write_text(FAULTY_PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("POLYFRAME_PLUGINS", "faulty_backends")


def test_failing_and_hanging_backends_are_reported_while_the_others_complete(faulty_backends):
    config = BenchConfig(EXAMPLE, backends=("raises", "torch", "hangs", "dies"), steps=3, warmup=1,
                         repeats=1, threads=1, baselines=(), timeout_s=20)
    results = {r.spec.backend: r for r in run_bench(config)}
    assert results["torch"].status == "ok" and len(results["torch"].result["step_s"]) == 3
    assert results["raises"].status == "failed" and "planted failure in build" in results["raises"].error
    assert results["hangs"].status == "timeout" and "time limit" in results["hangs"].error
    assert results["dies"].status == "failed" and "exit status -9" in results["dies"].error
    summary = summarise(list(results.values()))
    text = table(summary)
    assert "TIMEOUT" in text and "FAILED: exit status -9" in text and "planted failure" in text


def test_each_run_is_its_own_process_with_pinned_threads(tmp_path):
    require("torch")
    model = tmp_path / "pid_model.py"
    model.write_text(textwrap.dedent('''
        import os, json
        import polyframe as pf
        print(json.dumps({"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS")}))
        def build_model(input_shape, num_classes):
            return pf.Sequential([pf.Flatten(), pf.Dense(num_classes)], input_shape=input_shape)
    '''))
    from polyframe.bench.runner import run_one
    seen = []
    for _ in range(2):
        spec = RunSpec("polyframe", "torch", str(model), 16, 2, 0, 1)
        proc = subprocess.run([sys.executable, "-m", "polyframe.bench._worker", spec.to_json()],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        seen.append(json.loads(proc.stdout.strip().splitlines()[0]))
        assert run_one(spec, 120).status == "ok"
    assert seen[0]["pid"] != seen[1]["pid"] != os.getpid()
    assert seen[0]["omp"] == "1"


def _fake(impl, backend, steps, losses, batch=32, status="ok"):
    spec = RunSpec(impl, backend, "m.py", batch, len(steps), 0, 1)
    result = {"first_step_s": 0.5, "step_s": steps, "losses": losses, "eval_accuracy": 0.9,
              "peak_rss_mib": 100.0, "build_s": 0.1} if status == "ok" else None
    return RunResult(spec, status, None if status == "ok" else "boom", 1.0, result)


def test_summary_statistics_ratios_and_loss_agreement():
    runs = [
        _fake("polyframe", "a", [0.010, 0.012, 0.011], [2.0, 1.5, 1.0]),
        _fake("polyframe", "a", [0.020, 0.013, 0.014], [2.0, 1.5, 1.0]),
        _fake("native", "a", [0.010, 0.010, 0.010], [2.0, 1.5, 1.0]),
        _fake("polyframe", "b", [0.005] * 3, [2.0, 1.5, 1.0005]),
        _fake("keras", "b", [0.004] * 3, [9.0] * 3, status="failed"),
    ]
    summary = summarise(runs)
    row = next(r for r in summary["rows"] if (r["impl"], r["backend"]) == ("polyframe", "a"))
    # per-process medians 11 ms and 14 ms -> median 12.5 ms; IQR pools all six samples
    assert row["median_step_ms"] == pytest.approx(12.5)
    np.testing.assert_allclose(row["iqr_step_ms"], np.percentile([10, 12, 11, 20, 13, 14], [25, 75]))
    assert row["samples_per_s"] == pytest.approx(32 / 0.0125)
    assert row["vs_native"] == pytest.approx(1.25)
    keras = next(r for r in summary["rows"] if r["impl"] == "keras")
    assert keras["status"] == "failed" and keras["error"] == "boom"
    agreement = summary["loss_agreement"][32]
    assert agreement["compared"] == ["a", "b"] and agreement["agreed"] is True
    assert agreement["max_relative_difference"] == pytest.approx(0.0005 / 1.0005, rel=1e-6)  # relative to the second curve


def test_outputs_and_cache(tmp_path, monkeypatch):
    require("torch")
    monkeypatch.setenv("POLYFRAME_CACHE_DIR", str(tmp_path / "cache"))
    config = BenchConfig(EXAMPLE, backends=("torch",), steps=4, warmup=1, repeats=2, threads=1,
                         baselines=())
    results = run_bench(config)
    summary = summarise(results)
    machine = probe()
    files = write_outputs(config, machine, results, summary, tmp_path / "out", "polyframe bench test")
    names = {f.name for f in files}
    assert {"bench.json", "bench.md"} <= names
    record = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [len(r["result"]["step_s"]) for r in record["runs"]] == [4, 4]
    assert record["machine"]["cores"] == os.cpu_count()
    assert "| 32 | torch | polyframe |" in (tmp_path / "out" / "bench.md").read_text()
    pytest.importorskip("matplotlib")
    for png in ("step_time.png", "loss_curves.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pf.datasets.digits()
    from polyframe.modelfile import load_model_file
    recipe = load_model_file(EXAMPLE, data.input_shape, data.num_classes)
    signature = model_signature(recipe.model, recipe.loss, recipe.optimizer)
    assert store(machine, signature, "float32", summary["rows"]) == 1
    cached = lookup(machine, signature, "torch", 32)
    assert cached["median_step_ms"] == pytest.approx(summary["rows"][0]["median_step_ms"])
    assert lookup(machine, signature, "torch", 64) is None


def test_bench_config_rejects_bad_settings():
    with pytest.raises(pf.ConfigError, match="not supported yet"):
        BenchConfig(EXAMPLE, precision="bf16-mixed")
    with pytest.raises(pf.ConfigError, match="baselines"):
        BenchConfig(EXAMPLE, baselines=("pytorch-lightning",))
    with pytest.raises(pf.ConfigError):
        BenchConfig(EXAMPLE, steps=0)
