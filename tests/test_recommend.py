"""`polyframe recommend`: rules, the hardware probe, evidence, agreement, and `auto`.

Machines are injected (a :class:`Machine` or a JSON description) instead of mocking frameworks;
measured trials use tiny steps and, except in two tests, numpy backends built on the float64
reference, so no framework process is started. Nothing asserts on wall-clock speed beyond a
planted sleep's lower bound.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

import polyframe as pf
from polyframe.bench.cache import store
from polyframe.errors import BackendNotFoundError, ConfigError
from polyframe.hardware import Gpu, Machine, load_machine, probe
from polyframe.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from polyframe.plugins import plugin_manager, register_plugin, unregister_plugin
from polyframe.selector import (Rules, TrialSettings, Workload, agreement, agreement_rates, build_support,
                                choose_backend_for_model, forward_flops, load_rules, recommend,
                                target_device, workload_from_model)

from conftest import ROOT, require

EXAMPLE = str(ROOT / "examples" / "mnist_cnn.py")
MLP = str(ROOT / "examples" / "digits_mlp.py")
RULES = load_rules()

CPU_VERSIONS = {"torch": "2.13.0+cpu", "tensorflow-cpu": "2.21.0", "jax": "0.10.2", "jaxlib": "0.10.2"}
GPU_BOX = {"cpu": "AMD EPYC 7763", "cores": 32, "memory_gib": 256, "system": "Linux x86_64",
           "gpus": [{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 80, "compute_capability": "8.0"}],
           "versions": CPU_VERSIONS}


def machine(**changes) -> Machine:
    base = Machine(cpu="Test CPU", cores=4, memory_gib=16.0, system="Linux x86_64", versions=dict(CPU_VERSIONS))
    return dataclasses.replace(base, **changes)


def workload(**changes) -> Workload:
    base = Workload(family="CNN", params=40_000, flops_per_sample=100_000, batch_size=32, dataset_size=1000,
                    layers=("conv2d", "max_pool2d", "flatten", "dense"), activations_per_sample=8_000,
                    input_values_per_sample=64)
    return dataclasses.replace(base, **changes)


def excluded_by(rec) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for e in rec.excluded:
        found.setdefault(e.backend, set()).add(e.rule)
    return found


def cli(*args, env=None, timeout=300):
    code = "import sys\nfrom polyframe.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty result cache, for this process and the CLI processes it starts."""
    monkeypatch.setenv("POLYFRAME_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- the rules file -----------------------------------------------------------------------------

def test_shipped_rules_are_valid_data_with_reasons_and_are_package_data():
    assert RULES.exclusions and all(rule["reason"].strip() for rule in RULES.exclusions)
    assert len({rule["id"] for rule in RULES.exclusions}) == len(RULES.exclusions)
    for backend, devices in RULES.builds.items():
        assert backend in RULES.backends
        assert all(entry["hint"] for entry in devices.values())
    for family in RULES.prior["devices"]["cpu"].values():
        for factors in family.values():
            assert set(factors) == set(RULES.backends) and all(0 < f <= 1 for f in factors.values())
            assert max(factors.values()) == 1.0
    assert RULES.prior["source"] and "not a measurement" in RULES.prior["about"]
    assert '"polyframe.selector" = ["recommend_rules.json"]' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("prior"), "missing section"),
    (lambda d: d["exclusions"].append({"id": "x", "backends": "*", "when": {"colour": ["red"]},
                                       "reason": "r"}), "unknown condition 'colour'"),
    (lambda d: d["exclusions"].append({"id": "x", "backends": "*", "when": {}}), r"exclusions\[\d+\]: missing"),
    (lambda d: d["builds"]["torch"].update(fpga={"any": [], "hint": ""}), "unknown device kind"),
    (lambda d: d["exclusions"][0]["when"].update(precision=["float8"]), "precision must be a list drawn"),
])
def test_malformed_rules_are_refused_with_the_part_named(mutate, message):
    data = json.loads((ROOT / "polyframe" / "selector" / "recommend_rules.json").read_text())
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        Rules.from_dict(data, "test rules")


def test_rules_file_that_is_not_json_is_a_config_error(tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_rules(bad)


@pytest.mark.parametrize("change, device, expected", [
    ({"precision": "bf16-mixed"}, "cpu", {}),
    ({"precision": "fp16-mixed"}, "cpu", {"tensorflow": "tensorflow-no-fp16-loss-scaling",
                                          "jax": "jax-no-fp16-loss-scaling"}),
    ({"parallel": "data"}, "cpu", {}),
    ({"parallel": "data", "layers": ("conv2d", "batch_norm")}, "cpu",
     {"tensorflow": "tensorflow-data-parallel-batchnorm"}),
    ({"family": "Transformer"}, "cpu", {}),
    ({}, "cpu", {}),
])
def test_exclusion_rules_match_the_workload(change, device, expected):
    rec = recommend(workload(**change), machine=machine(), device=device, backends=("torch", "tensorflow", "jax"))
    assert {b: rules for b, rules in excluded_by(rec).items()} == {b: {r} for b, r in expected.items()}
    assert all(e.reason for e in rec.excluded)
    assert rec.best is not None and rec.best not in expected


def test_a_layer_rule_added_as_data_excludes_without_code_changes():
    data = json.loads((ROOT / "polyframe" / "selector" / "recommend_rules.json").read_text())
    data["exclusions"].append({"id": "no-dropout-on-jax", "backends": ["jax"], "when": {"layers": ["dropout"]},
                               "reason": "planted: jax cannot drop out"})
    rules = Rules.from_dict(data)
    with_dropout = workload(layers=("dense", "dropout"), family="MLP")
    rec = recommend(with_dropout, machine=machine(), rules=rules, backends=("torch", "jax"))
    assert excluded_by(rec) == {"jax": {"no-dropout-on-jax"}}
    assert "planted: jax cannot drop out" in rec.excluded[0].reason
    assert excluded_by(recommend(workload(), machine=machine(), rules=rules, backends=("torch", "jax"))) == {}


def test_memory_estimate_that_does_not_fit_excludes_with_the_numbers():
    big = workload(dataset_size=2_000_000, input_values_per_sample=28 * 28)  # ~11.7 GiB in two copies
    rec = recommend(big, machine=machine(memory_gib=8.0), backends=("torch", "jax"))
    assert excluded_by(rec) == {"torch": {"memory"}, "jax": {"memory"}}
    assert "training needs about" in rec.excluded[0].reason and "8 GiB of host memory" in rec.excluded[0].reason
    assert excluded_by(recommend(big, machine=machine(memory_gib=64.0), backends=("torch",))) == {}


@pytest.mark.parametrize("backend, device, system, versions, gpu, supported", [
    ("torch", "cuda", "Linux", {"torch": "2.13.0+cpu"}, "A100, 80 GiB, 8.0", False),
    ("torch", "cuda", "Linux", {"torch": "2.13.0"}, "A100, 80 GiB, 8.0", True),
    ("torch", "cuda", "Linux", {"torch": "2.13.0+cu128"}, "A100, 80 GiB, 8.0", True),
    ("torch", "cuda", "Darwin", {"torch": "2.13.0"}, "A100, 80 GiB, 8.0", False),
    ("torch", "mps", "Darwin", {"torch": "2.13.0"}, None, True),
    ("tensorflow", "cuda", "Linux", {"tensorflow-cpu": "2.21.0"}, "A100, 80 GiB, 8.0", False),
    ("tensorflow", "cuda", "Linux", {"tensorflow": "2.21.0"}, "A100, 80 GiB, 8.0", True),
    ("jax", "cuda", "Linux", {"jax": "0.10.2", "jaxlib": "0.10.2"}, "A100, 80 GiB, 8.0", False),
    ("jax", "cuda", "Linux", {"jax": "0.10.2", "jax-cuda12-plugin": "0.10.2"}, "A100, 80 GiB, 8.0", True),
    ("jax", "cuda", "Linux", {"jax": "0.10.2", "jax-cuda12-plugin": "0.10.2"}, "Tesla K80, 12 GiB, 3.7", False),
    ("jax", "tpu", "Linux", {"jax": "0.10.2", "libtpu": "0.0.20"}, None, True),
    ("torch", "cpu", "Linux", {"torch": "2.13.0+cpu"}, None, True),
])
def test_build_support_by_distribution_version_and_system(backend, device, system, versions, gpu, supported):
    box = machine(system=f"{system} x86_64", versions=versions, gpus=[gpu] if gpu else [])
    ok, reason, hint = build_support(RULES, backend, device, box)
    assert ok is supported
    if not supported:
        assert reason and (hint or "compute capability" in reason)


# -- the hardware probe and machine descriptions ----------------------------------------------------

def test_probe_reads_this_machine_without_importing_a_framework():
    code = ("import sys, json\nfrom polyframe.hardware import probe\nm = probe()\n"
            "print(json.dumps([m.cores, m.fingerprint(), [f for f in ('torch', 'tensorflow', 'jax') "
            "if f in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cores, fingerprint, loaded = json.loads(out.stdout)
    assert cores == os.cpu_count() and loaded == [] and fingerprint == probe().fingerprint()


def test_probe_lists_the_devices_each_backend_sees(fake_backends):
    seen = probe(devices=True, backends=("reffast",))
    assert seen.devices == {"reffast": ["cpu", "cuda:0 (Fake A100)"]}
    assert seen.fingerprint() == probe().fingerprint()  # devices never change the cache key


def test_machine_descriptions_round_trip_and_parse_gpus(tmp_path):
    here = probe()
    assert Machine.from_dict(here.to_dict()).fingerprint() == here.fingerprint()
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine": GPU_BOX, "runs": []}))  # a bench.json is accepted too
    box = load_machine(path)
    assert box.gpu_list == [Gpu("NVIDIA A100-SXM4-80GB", 80.0, "8.0")] and box.gpu_list[0].kind == "cuda"
    assert Gpu.parse("NVIDIA H100 80GB HBM3, 81559 MiB, 9.0").compute_capability == "9.0"
    assert Gpu.parse("AMD Instinct MI300X").kind == "rocm"
    assert box.fingerprint() != here.fingerprint()


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[]", "is a JSON object"),
    ('{"cores": 0}', '"cores" must be a positive integer'),
    ('{"cores": 4, "gpus": [{"memory_gib": 80}]}', 'each GPU must be'),
    ('{"cores": 4, "versions": {"torch": 2}}', '"versions" must map'),
    ('{"cores": 4, "gpu_count": 8}', "unknown field"),
    ('{"cpu": "x"}', '"cores" is missing'),
    ('{"cores": 4, "memory_gib": Infinity}', '"memory_gib" must be a positive finite number'),
    ('{"cores": 4, "gpus": [{"name": "A100", "memory_gib": Infinity}]}', "positive finite number"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
])
def test_bad_machine_descriptions_are_config_errors(tmp_path, text, message):
    path = tmp_path / "box.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_machine(path)


@pytest.mark.parametrize("changes, requested, expected", [
    ({}, "auto", "cpu"),
    ({"gpus": ["NVIDIA A100, 81920 MiB, 8.0"]}, "auto", "cuda"),
    ({"gpus": ["AMD Instinct MI300X"]}, "auto", "rocm"),
    ({"tpus": ["v5e (accel0)"]}, "auto", "tpu"),
    ({"mps": True, "system": "Darwin arm64"}, "auto", "mps"),
    ({"gpus": ["NVIDIA A100, 81920 MiB, 8.0"]}, "cpu", "cpu"),
])
def test_target_device(changes, requested, expected):
    assert target_device(machine(**changes), requested) == expected


def test_asking_for_a_device_the_machine_lacks_is_an_error():
    with pytest.raises(ConfigError, match="has no cuda device"):
        target_device(machine(), "cuda")


# -- the workload -----------------------------------------------------------------------------------

def test_workload_from_a_model_counts_parameters_and_flops():
    model = pf.Sequential([Conv2D(2, 3, activation="relu"), MaxPool2D(2), Flatten(), Dropout(0.1), Dense(3)],
                          input_shape=(6, 6, 1))
    conv = 2 * 9 * 1 * (4 * 4 * 2) + 4 * 4 * 2 + 4 * 4 * 2   # MACs x2, bias, relu
    pool = 4 * (2 * 2 * 2)
    dense = 2 * 8 * 3 + 3
    assert forward_flops(model) == conv + pool + 8 + dense  # + dropout over 8 values
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.SGD(0.1), batch_size=16)
    assert (w.family, w.params, w.optimizer, w.batch_size) == ("CNN", model.count_params(), "sgd", 16)
    assert w.train_flops_per_step == 3 * forward_flops(model) * 16
    mlp = pf.Sequential([Flatten(), Dense(4)], input_shape=(2, 2))
    assert workload_from_model(mlp, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=1).family == "MLP"


def test_recurrent_models_are_the_rnn_family_with_per_step_flops():
    lstm = getattr(pf.layers, "LSTM", None)
    if lstm is None:
        pytest.skip("this polyframe has no recurrent layers")
    model = pf.Sequential([lstm(5), Dense(2)], input_shape=(7, 3))
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=4)
    per_step = 2 * (3 + 5) * 4 * 5 + 4 * 5 + 10 * 5
    assert w.family == "RNN" and w.flops_per_sample == 7 * per_step + 2 * 5 * 2 + 2
    rec = recommend(w, machine=machine(), backends=("torch", "jax"))
    assert rec.excluded == [] and "no prior for RNN on cpu" in rec.ranking[0].detail


@pytest.mark.parametrize("change, message", [
    ({"family": "GAN"}, "model family"), ({"precision": "int8"}, "precision"),
    ({"parallel": "model"}, "parallel"), ({"batch_size": 0}, "batch size"),
])
def test_bad_workloads_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        workload(**change)


# -- evidence and the answer ------------------------------------------------------------------------

def test_without_measure_or_cache_the_output_says_it_is_an_estimate_and_why(cache):
    result = cli("recommend", EXAMPLE, "--batch-size", "64")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "ESTIMATE" in out and "not from a measurement" in out and "--measure was not given" in out
    assert "no cached `polyframe bench` result matches" in out and "confidence low" in out
    assert "1. constraints" in out and "2. evidence" in out and "3. ranking" in out
    record = json.loads(cli("recommend", EXAMPLE, "--batch-size", "64", "--json").stdout)
    assert record["basis"] == "estimated" and record["confidence"] == "low"
    assert {r["evidence"] for r in record["ranking"]} == {"estimated"}
    assert record["best"] == record["ranking"][0]["backend"]
    assert record["workload"]["family"] == "CNN" and record["workload"]["params"] == 38_602


def test_described_gpu_machine_excludes_builds_that_cannot_use_its_gpu(tmp_path, cache):
    box = tmp_path / "a100.json"
    box.write_text(json.dumps(GPU_BOX))
    result = cli("recommend", EXAMPLE, "--hardware", str(box))
    assert result.returncode == 1, result.stderr  # nothing left: an answer, not an error
    out = " ".join(result.stdout.split())
    assert "described machine: nothing can be measured there" in out
    assert "torch [device-unsupported]: the installed build (torch 2.13.0+cpu) cannot use cuda devices" in out
    assert "tensorflow [device-unsupported]: the installed build (tensorflow-cpu 2.21.0) cannot use cuda" in out
    assert "jax [device-unsupported]: the installed build (jax 0.10.2) cannot use cuda devices" in out
    assert 'pip install "jax[cuda12]"' in out and "pass --device cpu" in out
    on_cpu = json.loads(cli("recommend", EXAMPLE, "--hardware", str(box), "--device", "cpu", "--json").stdout)
    assert on_cpu["excluded"] == [] and on_cpu["basis"] == "estimated" and on_cpu["described_machine"]
    assert cli("recommend", EXAMPLE, "--hardware", str(box), "--measure").returncode == 2


def test_gpu_builds_on_a_described_machine_are_kept_but_the_cpu_only_adapter_is_not():
    box = Machine.from_dict({**GPU_BOX, "versions": {"torch": "2.13.0+cu128", "tensorflow": "2.21.0",
                                                     "jax": "0.10.2", "jax-cuda12-plugin": "0.10.2"}})
    rec = recommend(workload(), machine=box, described=True, backends=("torch", "tensorflow", "jax"))
    assert rec.device == "cuda" and excluded_by(rec) == {"torch": {"torch-adapter-cpu-only"}}
    assert [r.backend for r in rec.ranking] == ["tensorflow", "jax"]  # no cuda prior: neutral, in given order
    assert all(r.evidence == "estimated" and r.confidence == "low" for r in rec.ranking)
    assert "no prior for CNN on cuda" in rec.ranking[0].detail


def test_missing_framework_is_excluded_with_its_install_hint(fake_backends):
    box = machine(versions={"torch": "2.13.0+cpu", "tensorflow-cpu": "2.21.0"})
    rec = recommend(workload(), machine=box, described=True, backends=("torch", "jax"))
    (jax,) = rec.excluded
    assert (jax.backend, jax.rule) == ("jax", "framework-missing")
    assert "not installed on the described machine" in jax.reason and jax.hint == "pip install polyframe-jax"
    local = recommend(workload(), machine=probe(), backends=("refmissing", "reffast"))
    (missing,) = local.excluded
    assert missing.rule == "framework-missing" and "pip install no-such-framework-xyz" in missing.reason
    assert local.basis == "rule" and local.best == "reffast"
    with pytest.raises(BackendNotFoundError, match="unknown backend 'nope'"):
        recommend(workload(), machine=probe(), backends=("nope",))


def _cached_rows(rec_workload, timings):
    return [{"impl": "polyframe", "backend": b, "batch_size": rec_workload.batch_size, "median_step_ms": ms,
             "iqr_step_ms": [ms * 0.98, ms * 1.02], "ok_runs": 3} for b, ms in timings.items()]


def test_cached_bench_results_rank_the_backends(cache):
    here = probe()
    model = pf.Sequential([Flatten(), Dense(10)], input_shape=(8, 8, 1))
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=64)
    store(here, w.signature, "float32", _cached_rows(w, {"torch": 2.0, "tensorflow": 1.0, "jax": 1.03}))
    rec = recommend(w, machine=here, backends=("torch", "tensorflow", "jax"))
    assert rec.basis == "cached" and [r.backend for r in rec.ranking] == ["tensorflow", "jax", "torch"]
    assert [r.evidence for r in rec.ranking] == ["cached"] * 3
    assert rec.ranking[2].relative_speed == pytest.approx(0.5)
    assert rec.confidence == "medium" and any("too close to call" in n for n in rec.notes)  # 3% apart
    ignored = recommend(w, machine=here, backends=("torch", "tensorflow", "jax"), use_cache=False)
    assert ignored.basis == "estimated"



def test_a_timing_over_fewer_than_three_processes_is_at_most_medium_confidence(cache):
    here = probe()
    w = dataclasses.replace(workload(), signature="few-runs-test")
    rows = [dict(row, ok_runs=1) for row in _cached_rows(w, {"torch": 1.0, "tensorflow": 2.0, "jax": 3.0})]
    store(here, w.signature, "float32", rows, threads=1)
    rec = recommend(w, machine=here, backends=("torch", "tensorflow", "jax"))
    assert rec.basis == "cached" and rec.best == "torch"
    assert [r.confidence for r in rec.ranking] == ["medium"] * 3 and rec.confidence == "medium"
    assert "median over 1 run(s), 1 threads" in rec.ranking[0].detail
    store(here, w.signature, "float32", _cached_rows(w, {"torch": 1.0, "tensorflow": 2.0, "jax": 3.0}))
    assert recommend(w, machine=here, backends=("torch", "tensorflow", "jax")).confidence == "high"


def test_equal_estimates_are_said_to_be_unordered():
    from polyframe.selector._recommend import Ranked, close_call

    tie = [Ranked("jax", 1, "estimated", "low", "prior", None, 1.0),
           Ranked("tensorflow", 2, "estimated", "low", "prior", None, 1.0)]
    assert "jax and tensorflow have the same estimate" in close_call(tie)
    apart = [tie[0], dataclasses.replace(tie[1], relative_speed=0.8)]
    assert close_call(apart) is None


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (None, os.cpu_count()), ("", os.cpu_count()),
                                             ("0", os.cpu_count()), ("two", os.cpu_count())])
def test_timing_runs_default_to_the_users_omp_threads(monkeypatch, value, expected):
    from polyframe.bench import BenchConfig

    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert TrialSettings().threads == expected
    assert BenchConfig("examples/digits_mlp.py").threads == expected

def test_partial_cache_scales_estimates_from_the_cached_backend(cache):
    here = probe()
    w = dataclasses.replace(workload(), signature="partial-cache-test")
    store(here, w.signature, "float32", _cached_rows(w, {"torch": 4.0}))
    rec = recommend(w, machine=here, backends=("torch", "tensorflow", "jax"))
    assert rec.basis == "cached+estimated" and "ESTIMATE for tensorflow, jax" in rec.basis_text
    rows = {r.backend: r for r in rec.ranking}
    factors = RULES.prior_factors("cpu", "CNN", w.train_flops_per_step)
    assert rows["torch"].evidence == "cached" and rows["jax"].evidence == "estimated"
    assert rows["jax"].step_ms == pytest.approx(4.0 * factors["torch"] / factors["jax"])


def test_measured_trial_runs_each_backend_in_its_own_process(fake_backends, tmp_path):
    data = pf.datasets.digits()
    model_file = tmp_path / "tiny.py"
    model_file.write_text(textwrap.dedent('''
        import polyframe as pf
        def build_model(input_shape, num_classes):
            return pf.Sequential([pf.Flatten(), pf.Dense(num_classes)], input_shape=input_shape)
    '''))
    from polyframe.modelfile import load_model_file
    recipe = load_model_file(model_file, data.input_shape, data.num_classes)
    w = workload_from_model(recipe.model, recipe.loss, recipe.optimizer, batch_size=16, model_file=str(model_file),
                            data="digits", dataset_size=len(data.x_train))
    seen = []
    rec = recommend(w, measure=True, backends=("refslow", "reffast", "refbroken"),
                    trial=TrialSettings(steps=3, warmup=1, threads=1, timeout_s=60, repeats=2),
                    on_trial=seen.append)
    # round 2 starts one backend later and skips the backend whose trial failed
    assert [r.spec.backend for r in seen] == ["refslow", "reffast", "refbroken", "reffast", "refslow"]
    assert rec.basis == "measured" and "short trial" in rec.basis_text
    rows = {r.backend: r for r in rec.ranking}
    assert rows["refslow"].step_ms >= 30.0  # the planted 30 ms sleep: a lower bound, not a speed claim
    timed = [r.step_ms for r in rec.ranking if r.step_ms is not None]
    assert timed == sorted(timed) and rec.ranking[-1].backend == "refbroken"
    assert "planted build failure" in rows["refbroken"].detail and rec.best != "refbroken"
    assert all(r.evidence == "measured" for r in rec.ranking)


def test_measure_with_a_real_framework_on_the_command_line(cache):
    require("torch")
    result = cli("recommend", MLP, "--measure", "--backends", "torch", "--trial-steps", "2",
                 "--trial-warmup", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "trial torch: ok" in result.stderr
    out = " ".join(result.stdout.split())
    assert "measured on this machine" in out and "answer: torch" in out and "ESTIMATE" not in out


def test_workload_from_options_and_bad_input_on_the_command_line(tmp_path, cache):
    ok = json.loads(cli("recommend", "--family", "MLP", "--params", "100000", "--flops", "200000",
                        "--batch-size", "256", "--json").stdout)
    assert ok["workload"]["family"] == "MLP" and ok["basis"] == "estimated"
    assert any("activation memory not estimated" in n for n in ok["notes"])
    attention = json.loads(cli("recommend", "--family", "Transformer", "--params", "1000", "--flops",
                               "2000", "--json").stdout)
    assert attention["workload"]["family"] == "Transformer" and not attention["excluded"]
    bad = tmp_path / "box.json"
    bad.write_text('{"cores": "many"}')
    for args, fragment in [(("recommend",), "give MODEL_FILE, or --family"),
                           (("recommend", EXAMPLE, "--family", "MLP"), "not both"),
                           (("recommend", EXAMPLE, "--hardware", str(bad)), '"cores" must be a positive integer'),
                           (("recommend", EXAMPLE, "--hardware", str(tmp_path / "none.json")), "cannot read")]:
        result = cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr


# -- auto -------------------------------------------------------------------------------------------

def test_trainer_auto_uses_cached_evidence_and_says_so(cache, capsys):
    require("torch")
    model = pf.Sequential([Flatten(), Dense(10)], input_shape=(8, 8, 1))
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=32)
    store(probe(), w.signature, "float32", _cached_rows(w, {"torch": 1.0, "tensorflow": 3.0, "jax": 2.0}))
    trainer = pf.Trainer(model, backend="auto")
    assert trainer.backend_name == "torch" and trainer.choice.recommendation.basis == "cached"
    said = capsys.readouterr().err
    assert "backend auto chose torch: cached 1.00 ms/step at batch 32" in said
    assert "evidence: cached polyframe bench results" in said
    assert "too close to call" not in said  # 1.0 vs 2.0 ms



def test_auto_honours_the_precision_asked_for(cache, capsys):
    require("torch")
    model = pf.Sequential([Flatten(), Dense(10)], input_shape=(8, 8, 1))
    trainer = pf.Trainer(model, backend="auto", precision="fp16-mixed")
    assert trainer.backend_name == "torch" and trainer.choice.recommendation.basis == "rule"
    excluded = excluded_by(trainer.choice.recommendation)
    assert {"jax", "tensorflow"} <= set(excluded)

def test_auto_says_when_its_evidence_is_too_close_to_call(cache):
    from polyframe.selector import choose_backend

    model = pf.Sequential([Flatten(), Dense(10)], input_shape=(8, 8, 1))
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=32)
    store(probe(), w.signature, "float32", _cached_rows(w, {"torch": 1.0, "tensorflow": 1.02, "jax": 2.0}))
    said = choose_backend(w, backends=("torch", "tensorflow", "jax")).explain()
    assert said.startswith("backend auto chose torch") and "torch and tensorflow are within 2.0%" in said


def test_auto_without_evidence_runs_a_short_trial_on_synthetic_data(fake_backends, cache):
    model = pf.Sequential([Flatten(), Dense(16, activation="relu"), Dense(3)], input_shape=(4, 4, 2))
    choice = choose_backend_for_model(model, pf.SparseCategoricalCrossentropy(), pf.SGD(0.1), batch_size=8,
                                      backends=("reffast", "refslow"),
                                      trial=TrialSettings(steps=2, warmup=1, threads=1, timeout_s=60))
    rec = choice.recommendation
    assert rec.basis == "measured" and {r.evidence for r in rec.ranking} == {"measured"}
    assert all(r.step_ms is not None for r in rec.ranking), [r.detail for r in rec.ranking]
    assert choice.backend in ("reffast", "refslow") and "evidence: a short trial on this machine" in choice.explain()


# -- agreement (the matrix in benchmarks/recommend_matrix.py) ---------------------------------------

@pytest.mark.parametrize("measured, recommended, estimated, expected", [
    ({"a": 1.0, "b": 2.0}, "a", "a", {"fastest": "a", "match": True, "within": True, "estimate_match": True}),
    ({"a": 1.0, "b": 1.08}, "b", "a", {"fastest": "a", "match": False, "within": True, "estimate_match": True}),
    ({"a": 1.0, "b": 1.10}, "b", None, {"match": False, "within": True, "estimate_match": None}),
    ({"a": 1.0, "b": 1.2}, "b", "b", {"match": False, "within": False, "estimate_match": False}),
    ({"a": 1.0, "b": None}, "b", "b", {"fastest": "a", "match": False, "within": False, "ratio": None}),
    ({}, "a", "a", {"fastest": None, "match": None, "within": None}),
])
def test_agreement_of_a_pick_with_the_benched_fastest(measured, recommended, estimated, expected):
    result = agreement(measured, recommended, estimated)
    assert {k: result[k] for k in expected} == expected


def test_agreement_rates_count_only_cells_the_bench_could_time():
    cells = [agreement({"a": 1.0, "b": 2.0}, "a", "b"), agreement({"a": 1.0, "b": 1.05}, "b", "a"),
             agreement({"a": 2.0, "b": 1.0}, "a", None), agreement({}, "a", "a")]
    rates = agreement_rates(cells)
    assert (rates["cells"], rates["judged"]) == (4, 3)
    assert rates["fastest_match_pct"] == pytest.approx(100 / 3)
    assert rates["within_pct"] == pytest.approx(200 / 3)
    assert rates["estimate_match_pct"] == pytest.approx(50.0)


def test_selector_imports_no_framework():
    code = ("import sys\nfrom polyframe.selector import recommend, Workload\n"
            "recommend(Workload('MLP', 10, 20, 8), backends=('torch', 'tensorflow', 'jax'))\n"
            "print(','.join(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- numpy backends on the float64 reference: real processes, no framework --------------------------

FAKE_PLUGIN = '''
import time
import numpy as np
import polyframe
from polyframe.backend import Backend, Executable, StepResult
from polyframe.reference import ReferenceModel, ReferenceOptimizer, reference_loss


class _Reference(Executable):
    delay = 0.0

    def __init__(self, model, weights, loss, optimizer, options):
        self.ref, self.opt, self.loss = ReferenceModel(model, weights), ReferenceOptimizer(optimizer), loss

    def prepare_inputs(self, x):
        return x

    def train_step(self, x, y):
        time.sleep(self.delay)
        outputs = self.ref.forward(x)
        value, grads, _ = self.ref.loss_and_grads(x, y, self.loss)
        self.opt.update(self.ref.weights, grads)
        return StepResult(value, outputs.astype(np.float32))

    def eval_step(self, x, y):
        outputs = self.ref.forward(x)
        return StepResult(reference_loss(self.loss, outputs, y)[0], outputs.astype(np.float32))

    def predict(self, x):
        return self.ref.forward(x).astype(np.float32)

    def get_weights(self):
        return {k: v.astype(np.float32) for k, v in self.ref.weights.items()}

    def set_weights(self, weights):
        self.ref.weights = {k: np.asarray(v, np.float64) for k, v in weights.items()}


class _Slow(_Reference):
    delay = 0.03


class _Base(Backend):
    framework = "numpy"
    framework_distribution = "numpy"
    adapter_distribution = "fake-backends"
    priority = 90

    def devices(self):
        return ["cpu", "cuda:0 (Fake A100)"]


class RefFast(_Base):
    name = "reffast"
    executable = "fake_recommend_backends:_Reference"


class RefSlow(_Base):
    name = "refslow"
    executable = "fake_recommend_backends:_Slow"


class RefBroken(_Base):
    name = "refbroken"

    def build(self, *args):
        raise RuntimeError("planted build failure")


class RefMissing(_Base):
    name = "refmissing"
    framework = "no_such_framework_xyz"
    framework_distribution = "no-such-framework-xyz"


@polyframe.hookimpl
def polyframe_backends():
    return [RefFast, RefSlow, RefBroken, RefMissing]
'''


@pytest.fixture
def fake_backends(tmp_path, monkeypatch):
    """Numpy backends on the reference, registered here and in every worker process."""
    plugin_manager()  # build it before $POLYFRAME_PLUGINS names the module
    (tmp_path / "fake_recommend_backends.py").write_text(FAKE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_recommend_backends
    register_plugin(fake_recommend_backends, "fake_recommend_backends")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("POLYFRAME_PLUGINS", "fake_recommend_backends")
    yield
    unregister_plugin(fake_recommend_backends)
    sys.modules.pop("fake_recommend_backends", None)


def test_train_backend_auto_on_the_command_line_says_what_it_chose(cache):
    require("torch")
    data = pf.datasets.digits()
    from polyframe.modelfile import load_model_file
    recipe = load_model_file(MLP, data.input_shape, data.num_classes)
    w = workload_from_model(recipe.model, recipe.loss, recipe.optimizer, batch_size=128)
    store(probe(), w.signature, "float32", _cached_rows(w, {"torch": 1.0, "tensorflow": 3.0, "jax": 2.0}))
    result = cli("train", MLP, "--backend", "auto", "--epochs", "1", "--batch-size", "128")
    assert result.returncode == 0, result.stderr
    assert "backend auto chose torch: cached 1.00 ms/step at batch 128" in result.stdout
    assert "backend torch (torch" in result.stdout and "test accuracy" in result.stdout


def test_attention_models_are_the_transformer_family_with_their_flops_counted():
    tokens = pf.Input((6,), dtype="int32")
    h = pf.Embedding(20, 8)(tokens)
    h = pf.TransformerEncoderBlock(num_heads=2, key_dim=4, ff_dim=16, causal=True)(h)
    model = pf.Model(tokens, pf.Dense(20)(pf.Flatten()(h)))
    w = workload_from_model(model, pf.SparseCategoricalCrossentropy(), pf.Adam(), batch_size=8)
    assert w.family == "Transformer"
    # attention: q, k, v, out projections 4 * 2*L*E*(H*Dk) = 4*2*6*8*8, scores and weighted sum
    # 2 * 2*H*L*L*Dk = 2*2*2*6*6*4, softmax 5*H*L*L; feed-forward 4*L*E*ff; norms 10*L*E;
    # the head's Dense 2*48*20 + 20 bias.
    attention = 4 * 2 * 6 * 8 * 8 + 2 * 2 * 2 * 6 * 6 * 4 + 5 * 2 * 6 * 6
    expected = attention + 4 * 6 * 8 * 16 + 10 * 6 * 8 + 2 * 48 * 20 + 20
    assert forward_flops(model) == expected


def test_when_every_backend_is_excluded_there_is_no_answer_and_each_reason_is_given():
    rec = recommend(workload(precision="fp16-mixed"), machine=machine(), device="cpu",
                    backends=("tensorflow", "jax"))
    assert rec.best is None and rec.basis == "none"
    assert excluded_by(rec) == {"tensorflow": {"tensorflow-no-fp16-loss-scaling"}, "jax": {"jax-no-fp16-loss-scaling"}}
