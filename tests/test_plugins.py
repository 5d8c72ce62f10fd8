"""Backends are found through the entry-point group and pluggy hooks only."""

import importlib.metadata

import pytest

import polyframe as pf
from polyframe.backend import Backend
from polyframe.plugins import register_plugin, unregister_plugin


class _NoFrameworkBackend(Backend):
    name = "thirdparty"
    framework = "polyframe_test_framework_that_does_not_exist"
    framework_distribution = "thirdparty-framework"
    adapter_distribution = "polyframe-thirdparty"

    def devices(self):
        raise AssertionError("must not be called for an unavailable backend")

    def build(self, *args):
        raise AssertionError("must not be called for an unavailable backend")


class _Plugin:
    @pf.hookimpl
    def polyframe_backends(self):
        return [_NoFrameworkBackend]


@pytest.fixture
def thirdparty():
    plugin = _Plugin()
    register_plugin(plugin)
    yield
    unregister_plugin(plugin)


def test_builtin_adapters_register_through_the_entry_point_group():
    groups = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="polyframe")}
    for name, module in (("torch", "polyframe_torch"), ("tensorflow", "polyframe_tensorflow"),
                         ("jax", "polyframe_jax")):
        if name in groups:
            assert groups[name] == module
            assert name in pf.registered_backends()
    backends = set(pf.registered_backends())
    assert {"torch", "tensorflow", "jax"} & set(groups) <= backends
    if "tensorboard" in groups:  # a plugin on the same hooks that adds a callback, not a backend
        assert "tensorboard" not in backends


def test_a_runtime_plugin_adds_a_backend_and_a_missing_framework_says_what_to_install(thirdparty):
    assert "thirdparty" in pf.registered_backends()
    status = pf.registered_backends()["thirdparty"].availability()
    assert not status.available and "pip install thirdparty-framework" in status.reason
    with pytest.raises(pf.BackendUnavailableError, match="pip install thirdparty-framework"):
        pf.Trainer(pf.Sequential([pf.Dense(2)], input_shape=(3,)), backend="thirdparty")


def test_two_plugins_with_one_backend_name_are_rejected(thirdparty):
    class Clash(_NoFrameworkBackend):
        pass

    class ClashPlugin:
        @pf.hookimpl
        def polyframe_backends(self):
            return [Clash]

    plugin = ClashPlugin()
    register_plugin(plugin)
    try:
        with pytest.raises(pf.ConfigError, match="two plugins"):
            pf.registered_backends()
    finally:
        unregister_plugin(plugin)


def test_default_backend_comes_from_the_environment_then_priority(monkeypatch):
    monkeypatch.setenv("POLYFRAME_BACKEND", "jax")
    assert pf.default_backend_name() == "jax"
    monkeypatch.delenv("POLYFRAME_BACKEND")
    available = [n for n, b in pf.registered_backends().items() if b.availability().available]
    assert pf.default_backend_name() == available[0]
