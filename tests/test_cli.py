"""The CLI end to end, in real subprocesses: training, listing, and every bad input."""

import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, require

EXAMPLE = str(ROOT / "examples" / "mnist_cnn.py")


def run(*args, env=None, hide=None):
    """Run ``polyframe ARGS``; ``hide`` makes a framework unimportable, as if not installed."""
    code = "import sys\n"
    if hide:
        code += f"sys.modules[{hide!r}] = None\n"
    code += "from polyframe.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polyframe: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def model_file(tmp_path, body):
    path = tmp_path / "model.py"
    path.write_text("import polyframe as pf\n\n" + textwrap.dedent(body))
    return str(path)


def test_train_prints_epochs_and_test_accuracy(backend):
    result = run("train", EXAMPLE, "--backend", backend, "--epochs", "2", "--batch-size", "64")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"backend {backend}" in out and "epoch 1/2" in out and "epoch 2/2" in out
    assert "test accuracy" in out


def test_backend_from_environment():
    require("jax")
    import os
    env = {**os.environ, "POLYFRAME_BACKEND": "jax"}
    result = run("train", EXAMPLE, "--epochs", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert "backend jax" in result.stdout


def test_backends_lists_availability_and_versions():
    result = run("backends", "--no-devices")
    assert result.returncode == 0
    for name in ("torch", "tensorflow", "jax"):
        assert name in result.stdout


def test_backends_reports_a_missing_framework():
    require("jax")
    result = run("backends", "--no-devices", hide="jax")
    line = next(l for l in result.stdout.splitlines() if l.startswith("jax "))
    assert "no: the 'jax' framework is not installed" in line and "pip install jax" in line


def test_unknown_backend():
    assert_clean_error(run("train", EXAMPLE, "--backend", "mxnet"), "unknown backend 'mxnet'", "registered backends:")


def test_missing_framework_says_what_to_install():
    require("jax")
    assert_clean_error(run("train", EXAMPLE, "--backend", "jax", hide="jax"), "pip install jax")


def test_dense_fed_a_4d_tensor(tmp_path):
    path = model_file(tmp_path, """
        def build_model(input_shape, num_classes):
            return pf.Sequential([pf.Conv2D(4, 3), pf.Dense(num_classes)], input_shape=input_shape)
    """)
    assert_clean_error(run("train", path, "--backend", "torch"), "'dense'", "(batch, 6, 6, 4)", "Flatten")


def test_labels_outside_the_class_range(tmp_path):
    path = model_file(tmp_path, """
        def build_model(input_shape, num_classes):
            return pf.Sequential([pf.Flatten(), pf.Dense(5)], input_shape=input_shape)
    """)
    assert_clean_error(run("train", path, "--backend", "torch"), "labels must be in [0, 5)")


def test_missing_data_directory(tmp_path):
    result = run("train", EXAMPLE, "--data", "mnist", "--data-dir", str(tmp_path / "absent"))
    assert_clean_error(result, "does not exist", "t10k-images-idx3-ubyte")
    assert_clean_error(run("train", EXAMPLE, "--data", "mnist"), "--data-dir")


def test_nan_in_the_loss(backend):
    result = run("train", EXAMPLE, "--backend", backend, "--learning-rate", "1e30", "--epochs", "2")
    assert_clean_error(result, "training loss became", "Lower the learning rate")


@pytest.mark.parametrize("body, fragment", [
    ("x = 1\n", "defines no build_model"),
    ("def build_model(input_shape, num_classes):\n    return 3\n", "not a polyframe model"),
    ("def build_model(input_shape, num_classes)\n", "syntax error"),
    ("def build_model(input_shape, num_classes):\n    return undefined_name\n", "NameError"),
    ("import polyframe as pf\ndef build_model(input_shape, num_classes):\n"
     "    x = pf.Input(input_shape)\n    h = pf.Flatten()(x)\n"
     "    return pf.Model(x, [pf.Dense(num_classes)(h), pf.Dense(2)(h)])\n", "take one of each"),
])
def test_broken_model_files(tmp_path, body, fragment):
    assert_clean_error(run("train", model_file(tmp_path, body), "--backend", "torch"), fragment)


def test_model_file_that_does_not_exist(tmp_path):
    assert_clean_error(run("train", str(tmp_path / "nope.py")), "does not exist")


@pytest.mark.parametrize("args, fragment", [
    (("train", EXAMPLE, "--epochs", "0"), "positive integer"),
    (("train", EXAMPLE, "--validation-split", "1.5"), "fraction"),
    (("train", EXAMPLE, "--learning-rate", "inf"), "finite"),
    (("train", EXAMPLE, "--seed", str(2**64)), "seed"),
    (("train", EXAMPLE, "--backend", ""), "unknown backend ''"),
    ((), "COMMAND"),
])
def test_bad_arguments_are_one_line_errors(args, fragment):
    assert_clean_error(run(*args), fragment)


def test_a_model_file_imports_modules_beside_it(tmp_path):
    (tmp_path / "heads.py").write_text("import polyframe as pf\ndef head(n):\n    return pf.Dense(n)\n")
    path = model_file(tmp_path, """
        from heads import head

        def build_model(input_shape, num_classes):
            return pf.Sequential([pf.Flatten(), head(num_classes)], input_shape=input_shape)
    """)
    result = run("train", path, "--backend", "torch", "--epochs", "1")
    assert result.returncode == 0, result.stderr
