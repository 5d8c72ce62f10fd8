"""A description of a machine: this one (:func:`probe`) or one described in JSON (:func:`load_machine`).

:func:`probe` reads ``/proc``, ``nvidia-smi``, ``/dev`` and package metadata and imports no
framework; ``probe(devices=True)`` also asks every available backend which devices its framework
sees, which imports the frameworks.

The fingerprint keys cached benchmark results: the same CPU model, core count, memory size, GPUs
(TPUs, Apple MPS) and framework versions give the same fingerprint.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Machine", "Gpu", "probe", "load_machine", "FRAMEWORK_DISTRIBUTIONS"]

FRAMEWORK_DISTRIBUTIONS = (
    "torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "optax", "keras", "numpy",
    # builds and plugins that decide which devices a framework can use
    "tensorflow-macos", "tensorflow-metal", "tensorflow-rocm", "jax-cuda12-plugin",
    "jax-cuda13-plugin", "jax-metal", "libtpu", "torch-xla",
)

_AMD = re.compile(r"\b(AMD|Radeon|Instinct|MI\d{2,3}X?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    """One GPU: its name, memory and (NVIDIA) compute capability, when known."""

    name: str
    memory_gib: float | None = None
    compute_capability: str | None = None

    @property
    def kind(self) -> str:
        """The device kind frameworks address it by: ``"rocm"`` for AMD GPUs, else ``"cuda"``."""
        return "rocm" if _AMD.search(self.name) else "cuda"

    @classmethod
    def parse(cls, text: str) -> Gpu:
        """Parse ``"name, 81559 MiB, 9.0"`` (``nvidia-smi --format=csv,noheader``); later fields optional."""
        parts = [p.strip() for p in text.split(",")]
        memory = None
        if len(parts) > 1:
            match = re.fullmatch(r"([\d.]+)\s*(MiB|GiB|MB|GB)?", parts[1], re.IGNORECASE)
            if match:
                value = float(match.group(1))
                memory = value / 1024 if (match.group(2) or "MiB").lower() in ("mib", "mb") else value
        capability = parts[2] if len(parts) > 2 and re.fullmatch(r"\d+(\.\d+)?", parts[2]) else None
        return cls(parts[0], memory, capability)

    def to_text(self) -> str:
        """The one-line form stored in :attr:`Machine.gpus` (round-trips through :meth:`parse`)."""
        parts = [self.name]
        if self.memory_gib is not None or self.compute_capability:
            parts.append(f"{round(self.memory_gib * 1024)} MiB" if self.memory_gib is not None else "?")
        if self.compute_capability:
            parts.append(self.compute_capability)
        return ", ".join(parts)


@dataclass(frozen=True)
class Machine:
    """CPU, memory, accelerators and framework versions of one machine.

    ``gpus`` holds one line per GPU (``"name, memory MiB, compute capability"``, see
    :class:`Gpu`); ``devices`` maps a backend to the devices its framework saw, filled only by
    ``probe(devices=True)``.
    """

    cpu: str
    cores: int
    memory_gib: float | None
    gpus: list[str] = field(default_factory=list)
    system: str = ""
    python: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    tpus: list[str] = field(default_factory=list)
    mps: bool = False
    devices: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "the machine description") -> Machine:
        """A machine from a dict as :meth:`to_dict` writes it; ``gpus`` may also hold objects
        ``{"name", "memory_gib", "compute_capability"}``. Raises :class:`ConfigError`."""
        return _machine_from_dict(data, source)

    @property
    def gpu_list(self) -> list[Gpu]:
        return [Gpu.parse(text) for text in self.gpus]

    @property
    def os_name(self) -> str:
        """``"Linux"``, ``"Darwin"``, ``"Windows"`` (the first word of :attr:`system`)."""
        return self.system.split()[0] if self.system else ""

    def fingerprint(self) -> str:
        """A short stable hash of what makes measurements comparable between runs."""
        key = {k: v for k, v in self.to_dict().items() if k not in ("python", "devices", "tpus", "mps")}
        if self.tpus:
            key["tpus"] = self.tpus
        if self.mps:
            key["mps"] = True
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        accelerators = list(self.gpus) + [f"TPU {t}" for t in self.tpus] + (["Apple MPS"] if self.mps else [])
        memory = f"{self.memory_gib:g} GiB" if self.memory_gib else "unknown memory"
        return f"{self.cpu}, {self.cores} cores, {memory}, {'; '.join(accelerators) or 'no GPU'}"


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


def _tpus() -> list[str]:
    """TPU chips exposed as ``/dev/accel*`` (TPU VMs), named by ``$TPU_ACCELERATOR_TYPE`` if set."""
    chips = sorted(glob.glob("/dev/accel[0-9]*"))
    kind = os.environ.get("TPU_ACCELERATOR_TYPE", "").strip()
    return [f"{kind or 'TPU'} ({Path(chip).name})" for chip in chips]


def _mps() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _versions() -> dict[str, str]:
    found = {}
    for dist in FRAMEWORK_DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _framework_devices(names: Iterable[str] | None) -> dict[str, list[str]]:
    from .plugins import registered_backends

    wanted = None if names is None else set(names)
    seen = {}
    for name, backend in registered_backends().items():
        if (wanted is not None and name not in wanted) or not backend.availability().available:
            continue
        try:
            seen[name] = list(backend.devices())
        except Exception as exc:  # a broken framework install must not hide the others
            seen[name] = [f"error: {type(exc).__name__}: {exc}"]
    return seen


def probe(devices: bool = False, backends: Iterable[str] | None = None) -> Machine:
    """Describe this machine. Imports no framework unless ``devices`` asks each available
    backend (or only those named in ``backends``) for the devices its framework sees."""
    return Machine(cpu=_cpu_model(), cores=os.cpu_count() or 1, memory_gib=_memory_gib(),
                   gpus=_nvidia_gpus(), system=f"{platform.system()} {platform.machine()}",
                   python=platform.python_version(), versions=_versions(), tpus=_tpus(), mps=_mps(),
                   devices=_framework_devices(backends) if devices else {})


def load_machine(path: str | Path) -> Machine:
    """Read a machine described in JSON: a :meth:`Machine.to_dict` object, or a ``bench.json``
    (its ``"machine"``). Missing ``versions`` means none are known; raises :class:`ConfigError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the hardware description {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc or 'nested too deeply'}); describe the machine as "
                          '{"cpu": ..., "cores": N, "memory_gib": G, "gpus": [...], "versions": {...}}') from None
    if isinstance(data, dict) and isinstance(data.get("machine"), dict):
        data = data["machine"]
    return _machine_from_dict(data, str(path))


def _positive_finite(value: Any) -> bool:
    """Whether ``value`` is a JSON number (not a bool) in (0, inf)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < math.inf


def _gpu_text(item: Any, where: str) -> str:
    if isinstance(item, str) and item.strip():
        return item.strip()  # verbatim: a probed machine's fingerprint must survive the round trip
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
        unknown = set(item) - {"name", "memory_gib", "compute_capability"}
        if unknown:
            raise ConfigError(f"{where}: unknown GPU field(s) {sorted(unknown)}; a GPU has name, "
                              "memory_gib and compute_capability")
        memory = item.get("memory_gib")
        if memory is not None and not _positive_finite(memory):
            raise ConfigError(f"{where}: GPU memory_gib must be a positive finite number, got {memory!r}")
        capability = item.get("compute_capability")
        if capability is not None:
            capability = str(capability)
            if not re.fullmatch(r"\d+(\.\d+)?", capability):
                raise ConfigError(f"{where}: compute_capability must look like \"8.0\", got {capability!r}")
        return Gpu(item["name"].strip(), None if memory is None else float(memory), capability).to_text()
    raise ConfigError(f"{where}: each GPU must be a name string or an object with a \"name\", got {item!r}")


def _machine_from_dict(data: Any, source: str) -> Machine:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a machine description is a JSON object, got {type(data).__name__}")
    known = {"cpu", "cores", "memory_gib", "gpus", "system", "python", "versions", "tpus", "mps", "devices",
             "gpu"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {sorted(unknown)}; known: {sorted(known - {'gpu'})}")
    if "cores" not in data:
        raise ConfigError(f"{source}: \"cores\" is missing; give the machine's CPU core count, e.g. \"cores\": 16")
    cores = data.get("cores")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"{source}: \"cores\" must be a positive integer, got {cores!r}")
    memory = data.get("memory_gib")
    if memory is not None and not _positive_finite(memory):
        raise ConfigError(f"{source}: \"memory_gib\" must be a positive finite number or null, got {memory!r}")
    gpus = data.get("gpus") or []
    if data.get("gpu") and not gpus:  # benchmarks/step_time.json writes a single "gpu"
        gpus = [data["gpu"]]
    if not isinstance(gpus, list):
        raise ConfigError(f"{source}: \"gpus\" must be a list, got {type(gpus).__name__}")
    versions = data.get("versions") or {}
    if not isinstance(versions, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in versions.items()):
        raise ConfigError(f"{source}: \"versions\" must map distribution names to version strings, "
                          'e.g. {"torch": "2.13.0+cpu", "jax": "0.10.2"}')
    tpus = data.get("tpus") or []
    devices = data.get("devices") or {}
    if not isinstance(tpus, list) or not all(isinstance(t, str) for t in tpus):
        raise ConfigError(f"{source}: \"tpus\" must be a list of names")
    if not isinstance(devices, dict):
        raise ConfigError(f"{source}: \"devices\" must map backend names to device lists")
    if not isinstance(data.get("mps", False), bool):
        raise ConfigError(f"{source}: \"mps\" must be true or false")
    for text_field in ("cpu", "system", "python"):
        if not isinstance(data.get(text_field, ""), str):
            raise ConfigError(f"{source}: \"{text_field}\" must be a string")
    return Machine(cpu=data.get("cpu") or "unknown CPU", cores=cores,
                   memory_gib=None if memory is None else float(memory),
                   gpus=[_gpu_text(g, source) for g in gpus], system=data.get("system") or "",
                   python=data.get("python") or "", versions=dict(versions), tpus=list(tpus),
                   mps=bool(data.get("mps", False)), devices={str(k): list(v) for k, v in devices.items()})
