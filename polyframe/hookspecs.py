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


@hookspec
def polyframe_callbacks(trainer: object) -> list:
    """Return :class:`polyframe.Callback` objects to add to a :meth:`polyframe.Trainer.fit` of
    ``trainer`` (possibly none: a plugin should add callbacks only when asked, e.g. by an
    environment variable). Called once at the start of every fit."""
