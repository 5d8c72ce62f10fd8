"""JAX backend for polyframe (registered as ``jax``).

Importing this module does not import JAX; the framework loads when the backend is first built
or asked for its devices.
"""

from __future__ import annotations

import polyframe
from polyframe.backend import Backend

__all__ = ["JaxBackend", "polyframe_backends"]


class JaxBackend(Backend):
    """Compiles a polyframe model into pure JAX functions over a params pytree, under ``jax.jit``."""

    name = "jax"
    framework = "jax"
    framework_distribution = "jax"
    executable = "polyframe_jax._executable:JaxExecutable"
    distributed = "polyframe_jax._distributed:JaxDataParallelEngine"
    distributed_processes = "per_node"
    precisions = ("float32", "bf16-mixed")
    adapter_distribution = "polyframe-jax"
    priority = 20

    def devices(self) -> list[str]:
        import jax

        return [str(d) for d in jax.devices()]


@polyframe.hookimpl
def polyframe_backends() -> list[type[Backend]]:
    return [JaxBackend]
