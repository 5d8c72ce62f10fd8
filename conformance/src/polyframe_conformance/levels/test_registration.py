"""Level 1, registration: the adapter says who it is, what it runs on, and builds an executable
that holds exactly the canonical weights it was given."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import polyframe as pf
from polyframe.backend import Availability, Backend, Executable

from polyframe_conformance.cases import case_weights
from polyframe_conformance.harness import build

pytestmark = pytest.mark.pf_level("registration")

_CHILD = """
import json, sys
import polyframe
backend = polyframe.registered_backends().get(sys.argv[1])
if backend is not None:
    backend.availability(); backend.framework_version()
print(json.dumps({"registered": backend is not None,
                  "imported": backend is not None and backend.framework in sys.modules}))
"""


def test_identity(pf_backend: str) -> None:
    backend = pf.registered_backends()[pf_backend]
    assert isinstance(backend, Backend)
    assert backend.name == pf_backend
    for attribute in ("framework", "framework_distribution", "adapter_distribution", "executable"):
        value = getattr(type(backend), attribute, None)
        assert isinstance(value, str) and value, f"{attribute} must be a non-empty string"
    assert ":" in backend.executable, "executable must be 'module:Class'"
    assert isinstance(backend.priority, int)


def test_availability_and_version(pf_backend: str) -> None:
    backend = pf.registered_backends()[pf_backend]
    status = backend.availability()
    assert isinstance(status, Availability) and status.available
    version = backend.framework_version()
    assert isinstance(version, str) and version[0].isdigit(), f"framework_version() gave {version!r}"


def test_devices(pf_backend: str) -> None:
    devices = pf.registered_backends()[pf_backend].devices()
    assert isinstance(devices, list) and devices, "devices() must list at least one device"
    assert all(isinstance(d, str) and d for d in devices)


def test_executable_class(pf_backend: str) -> None:
    module, _, name = pf.registered_backends()[pf_backend].executable.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Executable)


def test_listing_imports_no_framework(pf_backend: str) -> None:
    """Listing backends, availability and version must not import the framework."""
    done = subprocess.run([sys.executable, "-c", _CHILD, pf_backend], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not found["registered"]:
        pytest.skip(f"{pf_backend!r} is registered only inside this process; cannot check a fresh one")
    assert not found["imported"], "listing the backend imported its framework"


def test_build_holds_canonical_weights(pf_backend: str, pf_check) -> None:
    model = pf.Sequential([pf.Conv2D(3, 2), pf.Flatten(), pf.Dense(4)], input_shape=(5, 4, 2))
    weights = case_weights(model, 3)
    executable = build(pf_backend, model, weights)
    assert isinstance(executable, Executable)
    got = executable.get_weights()
    assert list(got) == list(weights), "get_weights() must use the canonical keys in model order"
    for key, value in weights.items():
        assert got[key].dtype == np.float32, f"{key}: dtype {got[key].dtype}, expected float32"
        pf_check.equal(f"weights {key}", got[key], value)
    canonical = model.init_weights(0)
    trainer = pf.Trainer(model, backend=pf_backend, loss="mse", metrics=(), seed=0)
    for key, value in trainer.get_weights().items():
        pf_check.equal(f"initial weights {key}", value, canonical[key])
