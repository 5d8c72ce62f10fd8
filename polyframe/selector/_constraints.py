"""Tier 1: hard constraints that exclude backends, each with its reason (they never rank).

A backend is excluded when its framework or adapter is not installed, when its framework build
cannot use the target device, when an exclusion rule of the rules file matches the workload, or
when the training memory estimate does not fit the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BackendNotFoundError, ConfigError
from ..hardware import Machine
from ..plugins import registered_backends
from ._rules import DEVICE_KINDS, Rules
from ._workload import Workload, memory_estimate

__all__ = ["Candidate", "Exclusion", "candidates", "target_device", "build_support", "apply_constraints"]


@dataclass(frozen=True)
class Candidate:
    """A backend the recommender considers, and whether its framework is installed there."""

    name: str
    framework: str
    installed: bool
    reason: str = ""
    hint: str = ""
    version: str | None = None


@dataclass(frozen=True)
class Exclusion:
    """One backend removed by one rule: the rule's id, its reason and what to do about it."""

    backend: str
    rule: str
    reason: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "rule": self.rule, "reason": self.reason, "hint": self.hint}


def _installed_version(distributions: list[str], versions: dict[str, str]) -> tuple[str, str] | None:
    for dist in distributions:
        if dist in versions:
            return dist, versions[dist]
    return None


def candidates(machine: Machine, rules: Rules, *, described: bool,
               backends: tuple[str, ...] | None = None) -> list[Candidate]:
    """Registered backends plus those the rules know; installed means usable on ``machine``.

    On this machine that is the backend's own availability check (no framework import); on a
    described machine, whether one of the framework's distributions is in its ``versions``.
    """
    registered = registered_backends()
    names = list(backends) if backends else list(dict.fromkeys([*registered, *rules.backends]))
    found = []
    for name in names:
        known = rules.backends.get(name)
        if name not in registered:
            if known is None:
                raise BackendNotFoundError(f"unknown backend {name!r}; registered backends: "
                                           f"{', '.join(registered) or 'none'}; `polyframe backends` lists them")
            found.append(Candidate(name, known["framework"], False,
                                   f"its adapter {known['adapter']} is not installed", known["install"]))
            continue
        backend = registered[name]
        if not described:
            status = backend.availability()
            found.append(Candidate(name, backend.framework, status.available, status.reason,
                                   known["install"] if known and not status.available else "",
                                   backend.framework_version()))
            continue
        distributions = known["distributions"] if known else [backend.framework_distribution]
        hit = _installed_version(distributions, machine.versions)
        if hit:
            found.append(Candidate(name, backend.framework, True, version=hit[1]))
        else:
            found.append(Candidate(name, backend.framework, False,
                                   f"the {backend.framework!r} framework is not installed on the described "
                                   f"machine (none of {', '.join(distributions)} in its versions)",
                                   known["install"] if known else f"pip install {backend.framework_distribution}"))
    return found


def target_device(machine: Machine, requested: str = "auto") -> str:
    """The device kind training should use: ``requested``, or for ``auto`` the machine's
    accelerator (GPU, then TPU, then Apple MPS), else ``cpu``."""
    kinds = [g.kind for g in machine.gpu_list] + ["tpu"] * bool(machine.tpus) + ["mps"] * machine.mps
    if requested == "auto":
        return kinds[0] if kinds else "cpu"
    if requested not in DEVICE_KINDS:
        raise ConfigError(f"unknown device {requested!r}; use auto or one of {', '.join(DEVICE_KINDS)}")
    if requested != "cpu" and requested not in kinds:
        raise ConfigError(f"--device {requested}: the machine has no {requested} device "
                          f"({machine.describe()}); use --device auto or cpu")
    return requested


def _matches(match: dict[str, Any], machine: Machine) -> bool:
    version = machine.versions.get(match["distribution"])
    if version is None:
        return False
    if "version_has" in match and match["version_has"] not in version:
        return False
    if any(part in version for part in match.get("version_lacks", [])):
        return False
    systems = match.get("systems")
    return not (systems and machine.os_name and machine.os_name not in systems)


def _capability(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")) if text else ()


def build_support(rules: Rules, backend: str, device: str, machine: Machine) -> tuple[bool | None, str, str]:
    """Whether ``backend``'s installed build can use ``device``: ``(supported, reason, hint)``;
    ``supported`` is ``None`` when the rules do not know the backend."""
    if device == "cpu":
        return True, "", ""
    entry = rules.builds.get(backend, {}).get(device)
    if entry is None:
        return None, f"no build rule for {backend} on {device}; not checked", ""
    if not any(_matches(m, machine) for m in entry["any"]):
        framework = rules.backends.get(backend, {}).get("distributions", [backend])
        hit = _installed_version(framework, machine.versions)
        build = f"{hit[0]} {hit[1]}" if hit else backend
        target = ", ".join(g.name for g in machine.gpu_list) if device in ("cuda", "rocm") else device
        return False, f"the installed build ({build}) cannot use {device} devices ({target})", entry["hint"]
    needed = entry.get("min_compute_capability")
    if device == "cuda" and needed:
        old = [g for g in machine.gpu_list if g.compute_capability
               and _capability(g.compute_capability) < _capability(needed)]
        if old:
            return False, (f"{old[0].name} has compute capability {old[0].compute_capability}; "
                           f"{backend}'s CUDA builds need {needed} or newer"), ""
    return True, "", ""


def _rule_matches(rule: dict[str, Any], workload: Workload, device: str) -> bool:
    values = {"precision": workload.precision, "parallel": workload.parallel, "family": workload.family,
              "device": device}
    for key, allowed in rule["when"].items():
        if key == "layers":
            if not set(workload.layers) & set(allowed):
                return False
        elif values[key] not in allowed:
            return False
    return True


def _memory_exclusion(workload: Workload, backend: str, device: str, machine: Machine,
                      rules: Rules) -> Exclusion | None:
    parts = memory_estimate(workload, backend, rules)
    fraction = rules.memory["usable_fraction"]
    if device == "cpu":
        need, capacity, where = sum(parts.values()), machine.memory_gib, "host memory"
    else:
        sizes = [g.memory_gib for g in machine.gpu_list if g.memory_gib] if device in ("cuda", "rocm") else []
        need = parts["state"] + parts["activations"] + parts["overhead"]
        capacity, where = (min(sizes) if sizes else None), f"{device} device memory"
    if not capacity or need <= fraction * capacity * 1024:
        return None
    detail = ", ".join(f"{k} {v / 1024:.2f}" for k, v in parts.items() if v)
    return Exclusion(backend, "memory", f"training needs about {need / 1024:.1f} GiB ({detail} GiB), more than "
                     f"{fraction:.0%} of the {capacity:g} GiB of {where}",
                     "lower --batch-size, or pick a machine with more memory")


def apply_constraints(workload: Workload, machine: Machine, device: str, found: list[Candidate],
                      rules: Rules) -> tuple[list[str], list[Exclusion], list[str]]:
    """Split ``found`` into kept backend names and exclusions; also returns notes on what
    could not be checked."""
    kept, excluded, notes = [], [], []
    for cand in found:
        rows = []
        if not cand.installed:
            rule = "adapter-missing" if "adapter" in cand.reason else "framework-missing"
            rows.append(Exclusion(cand.name, rule, cand.reason, cand.hint))
        else:
            supported, reason, hint = build_support(rules, cand.name, device, machine)
            if supported is False:
                rows.append(Exclusion(cand.name, "device-unsupported", reason, hint))
            elif supported is None:
                notes.append(reason)
        for rule in rules.exclusions:
            applies = rule["backends"] == "*" or cand.name in rule["backends"]
            if applies and _rule_matches(rule, workload, device):
                rows.append(Exclusion(cand.name, rule["id"], rule["reason"], rule.get("hint", "")))
        memory = _memory_exclusion(workload, cand.name, device, machine, rules)
        if memory:
            rows.append(memory)
        if rows:
            excluded += rows
        else:
            kept.append(cand.name)
    return kept, excluded, notes
