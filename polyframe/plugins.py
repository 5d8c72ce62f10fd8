"""The plugin manager: finds backends through the ``polyframe`` entry-point group and hooks.

Built-in adapters are found exactly as a third party's would be; nothing here names one.
"""

from __future__ import annotations

import functools
import importlib
import os

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import BackendNotFoundError, BackendUnavailableError, ConfigError

__all__ = [
    "plugin_manager",
    "register_plugin",
    "unregister_plugin",
    "registered_backends",
    "get_backend",
    "default_backend_name",
    "ENV_BACKEND",
    "ENV_PLUGINS",
]

ENV_BACKEND = "POLYFRAME_BACKEND"
ENV_PLUGINS = "POLYFRAME_PLUGINS"


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager: every installed entry point, plus the modules named
    (comma-separated) in ``$POLYFRAME_PLUGINS`` -- a way to try a plugin without installing it."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for name in filter(None, (n.strip() for n in os.environ.get(ENV_PLUGINS, "").split(","))):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"${ENV_PLUGINS} names {name!r}, which cannot be imported: {exc}") from None
        if not pm.is_registered(module):
            pm.register(module, name)
    return pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (e.g. a backend defined in a test)."""
    registered = plugin_manager().register(plugin, name)
    if registered is None:
        raise ConfigError(f"plugin {name or plugin!r} is already registered or blocked")
    return registered


def unregister_plugin(plugin: object) -> None:
    plugin_manager().unregister(plugin)


def registered_backends() -> dict[str, Backend]:
    """Every registered backend by name, ordered by priority then name."""
    found: dict[str, Backend] = {}
    for classes in plugin_manager().hook.polyframe_backends():
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise ConfigError(f"a polyframe plugin returned {cls!r}, not a Backend subclass")
            if cls.name in found and type(found[cls.name]) is not cls:
                raise ConfigError(
                    f"two plugins register a backend named {cls.name!r}: "
                    f"{type(found[cls.name]).__module__} and {cls.__module__}"
                )
            found[cls.name] = cls()
    return dict(sorted(found.items(), key=lambda item: (item[1].priority, item[0])))


def get_backend(name: str, *, require_available: bool = True) -> Backend:
    """The backend registered as ``name``; by default it must also be usable here."""
    backends = registered_backends()
    if not isinstance(name, str) or name not in backends:
        known = ", ".join(backends) or "none"
        from_env = os.environ.get(ENV_BACKEND, "").strip()
        source = f" (from ${ENV_BACKEND})" if from_env and name == from_env else ""
        raise BackendNotFoundError(
            f"unknown backend {name!r}{source}; registered backends: {known}. Install an adapter "
            f"package (e.g. polyframe-torch) or check the spelling; `polyframe backends` lists them"
        )
    backend = backends[name]
    if require_available:
        status = backend.availability()
        if not status.available:
            raise BackendUnavailableError(f"backend {name!r} is registered but unusable: {status.reason}")
    return backend


def default_backend_name() -> str:
    """``$POLYFRAME_BACKEND`` if set, else the first available backend in priority order."""
    chosen = os.environ.get(ENV_BACKEND, "").strip()
    if chosen:
        return chosen
    backends = registered_backends()
    for name, backend in backends.items():
        if backend.availability().available:
            return name
    if not backends:
        raise BackendNotFoundError(
            "no polyframe backend is installed; install one, e.g. pip install polyframe-torch"
        )
    reasons = "; ".join(f"{n}: {b.availability().reason}" for n, b in backends.items())
    raise BackendUnavailableError(f"no registered backend can run here ({reasons})")
