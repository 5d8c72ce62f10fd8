"""JAX backend for polyframe (registered as ``jax``).

Importing this module does not import JAX; the framework loads when the backend is first built
or asked for its devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polyframe
from polyframe.backend import Backend, BuildOptions

if TYPE_CHECKING:
    import numpy as np

    from polyframe.losses import Loss
    from polyframe.model import Sequential
    from polyframe.optimizers import Optimizer

    from ._executable import JaxExecutable

__all__ = ["JaxBackend", "polyframe_backends"]


class JaxBackend(Backend):
    """Compiles a polyframe model into pure JAX functions over a params pytree, under ``jax.jit``."""

    name = "jax"
    framework = "jax"
    framework_distribution = "jax"
    adapter_distribution = "polyframe-jax"
    priority = 20

    def devices(self) -> list[str]:
        import jax

        return [str(d) for d in jax.devices()]

    def build(
        self,
        model: Sequential,
        weights: dict[str, np.ndarray],
        loss: Loss,
        optimizer: Optimizer,
        options: BuildOptions,
    ) -> JaxExecutable:
        from ._executable import JaxExecutable

        return JaxExecutable(model, weights, loss, optimizer, options)


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return [JaxBackend]
