"""Hook specifications of the ``polyframe`` pluggy project."""

from __future__ import annotations

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "polyframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def polyframe_backends() -> list[type]:
    """Return the :class:`polyframe.backend.Backend` subclasses this plugin provides.

    Must be cheap: return classes, import no framework.
    """
