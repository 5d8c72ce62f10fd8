# polyframe: `make demo` sets up and trains the seed CNN; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.polyframe-installed
PACKAGES := -e '.[test,bench]' -e adapters/torch -e 'adapters/tensorflow[cpu]' -e adapters/jax -e conformance keras -e plugins/tensorboard
MNIST_DIR ?= ../shared/data/mnist

.PHONY: setup demo test test-slow conformance conformance-slow bench bench-compare clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt plugins/tensorboard/pyproject.toml adapters/torch/pyproject.toml adapters/tensorflow/pyproject.toml adapters/jax/pyproject.toml conformance/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt $(PACKAGES)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/polyframe backends --no-devices
	$(VENV)/bin/polyframe train examples/mnist_cnn.py --data digits --epochs 10 --seed 0

test: setup
	POLYFRAME_MNIST_DIR=$(abspath $(MNIST_DIR)) POLYFRAME_REQUIRE_BACKENDS=torch,tensorflow,jax $(PY) -m pytest -q

test-slow: setup
	POLYFRAME_MNIST_DIR=$(abspath $(MNIST_DIR)) $(PY) -m pytest -q -m slow

# The conformance suite's quick levels on every registered backend, with its report.
conformance: setup
	POLYFRAME_MNIST_DIR=$(abspath $(MNIST_DIR)) $(VENV)/bin/polyframe conformance --report conformance-report/conformance.md

# The slow levels (convergence) and the suite's own slow tests.
conformance-slow: setup
	POLYFRAME_MNIST_DIR=$(abspath $(MNIST_DIR)) $(VENV)/bin/polyframe conformance --level convergence --report conformance-report/convergence.md
	POLYFRAME_MNIST_DIR=$(abspath $(MNIST_DIR)) POLYFRAME_REQUIRE_BACKENDS=torch,tensorflow,jax $(PY) -m pytest -q -m slow conformance/tests

bench: setup
	$(PY) benchmarks/step_time.py --data-dir $(MNIST_DIR)

bench-compare: setup
	$(VENV)/bin/polyframe bench examples/mnist_cnn.py --data mnist --data-dir $(MNIST_DIR) \
		--batch-size 64 --steps 100 --warmup 20 --repeats 3 --out benchmarks/results/bench-mnist-cnn

clean:
	rm -rf $(VENV) build .pytest_cache
