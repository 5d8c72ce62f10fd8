"""polyframe-conformance: prove that a backend trains a model the way polyframe defines it.

Run it with ``polyframe conformance --backend NAME --report conformance.md``, or with pytest,
where this package is a plugin: ``pytest --pyargs polyframe_conformance.levels --pf-backend NAME``.
Levels are registered in :mod:`polyframe_conformance._levels`; the forward, gradient and
optimizer cases are rows of the tables in :mod:`polyframe_conformance.cases`.
"""

from __future__ import annotations

from ._compare import Checker, Tolerance
from ._levels import Level, get_level, register_level, registered_levels, select_levels
from ._limitations import Limitation, load_limitations
from ._runner import run

__version__ = "0.1.0"

__all__ = ["__version__", "run", "Level", "register_level", "registered_levels", "get_level", "select_levels",
           "Limitation", "load_limitations", "Checker", "Tolerance"]
