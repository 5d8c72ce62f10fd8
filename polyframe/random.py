"""Seeded numpy generators, one independent stream per purpose.

Everything random that must be identical on every backend (initial weights, the order of
batches, dataset splits) is drawn here, in numpy, from the user's seed and a named stream. The
backends never draw these numbers themselves.
"""

from __future__ import annotations

import numpy as np

__all__ = ["generator"]

_STREAMS = {"init": 0, "shuffle": 1, "split": 2, "backend": 3}


def generator(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """A generator for ``stream`` (``init``, ``shuffle``, ``split`` or ``backend``).

    ``extra`` distinguishes draws within a stream, e.g. the epoch number for shuffling.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[stream], *extra]))
