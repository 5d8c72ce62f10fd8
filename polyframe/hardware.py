"""A description of this machine, read without importing any framework.

The fingerprint keys cached benchmark results: the same CPU model, core count, memory size, GPUs
and framework versions give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Machine", "probe", "FRAMEWORK_DISTRIBUTIONS"]

FRAMEWORK_DISTRIBUTIONS = ("torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "optax", "keras", "numpy")


@dataclass(frozen=True)
class Machine:
    """CPU, memory, accelerators and framework versions of one machine."""

    cpu: str
    cores: int
    memory_gib: float | None
    gpus: list[str] = field(default_factory=list)
    system: str = ""
    python: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """A short stable hash of what makes measurements comparable between runs."""
        key = {k: v for k, v in self.to_dict().items() if k != "python"}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        gpus = ", ".join(self.gpus) or "no GPU"
        memory = f"{self.memory_gib:g} GiB" if self.memory_gib else "unknown memory"
        return f"{self.cpu}, {self.cores} cores, {memory}, {gpus}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _versions() -> dict[str, str]:
    found = {}
    for dist in FRAMEWORK_DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def probe() -> Machine:
    """Describe this machine (reads /proc and package metadata; imports no framework)."""
    return Machine(cpu=_cpu_model(), cores=os.cpu_count() or 1, memory_gib=_memory_gib(),
                   gpus=_nvidia_gpus(), system=f"{platform.system()} {platform.machine()}",
                   python=platform.python_version(), versions=_versions())
