"""The recommender's rules, read from data: ``recommend_rules.json`` beside this module.

Each constraint carries its reason, so the file is reviewed and extended without code changes.
:func:`load_rules` checks the file's shape and answers every malformed part with a
:class:`~polyframe.errors.ConfigError` that names it.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Rules", "load_rules", "DEVICE_KINDS", "FAMILIES", "PRECISIONS", "PARALLELISM"]

DEVICE_KINDS = ("cpu", "cuda", "rocm", "mps", "tpu")
FAMILIES = ("MLP", "CNN", "RNN", "Transformer")
PRECISIONS = ("float32", "bf16-mixed", "fp16-mixed")
PARALLELISM = ("single", "data")
_CONDITIONS = {"precision": PRECISIONS, "parallel": PARALLELISM, "family": FAMILIES,
               "device": DEVICE_KINDS, "layers": None}
_RULES_FILE = "recommend_rules.json"


@dataclass(frozen=True)
class Rules:
    """The parsed rules file: backends, build support, exclusions, memory model and prior."""

    backends: dict[str, dict[str, Any]]
    builds: dict[str, dict[str, dict[str, Any]]]
    exclusions: list[dict[str, Any]]
    memory: dict[str, Any]
    prior: dict[str, Any]
    source: str

    @classmethod
    def from_dict(cls, data: Any, source: str = "rules") -> Rules:
        """Validate ``data`` (the JSON object) and wrap it."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the rules file must hold a JSON object")
        missing = {"backends", "builds", "exclusions", "memory", "prior"} - set(data)
        if missing:
            raise ConfigError(f"{source}: missing section(s) {sorted(missing)}")
        backends = data["backends"]
        for name, entry in backends.items():
            _need(entry, ("framework", "distributions", "adapter", "install"), f"{source}: backends.{name}")
        builds = {k: v for k, v in data["builds"].items() if k != "about"}
        for backend, devices in builds.items():
            for device, entry in devices.items():
                where = f"{source}: builds.{backend}.{device}"
                if device not in DEVICE_KINDS:
                    raise ConfigError(f"{where}: unknown device kind; use one of {DEVICE_KINDS}")
                _need(entry, ("any", "hint"), where)
                for match in entry["any"]:
                    _need(match, ("distribution",), where)
        for index, rule in enumerate(data["exclusions"]):
            where = f"{source}: exclusions[{index}]"
            _need(rule, ("id", "backends", "when", "reason"), where)
            if rule["backends"] != "*" and not isinstance(rule["backends"], list):
                raise ConfigError(f"{where}: backends must be \"*\" or a list of backend names")
            for key, values in rule["when"].items():
                if key not in _CONDITIONS:
                    raise ConfigError(f"{where}: unknown condition {key!r}; use {sorted(_CONDITIONS)}")
                allowed = _CONDITIONS[key]
                if not isinstance(values, list) or (allowed and set(values) - set(allowed)):
                    raise ConfigError(f"{where}: {key} must be a list drawn from {allowed or 'layer kinds'}")
        _need(data["memory"], ("bytes_per_value", "optimizer_slots", "activation_copies", "dataset_copies",
                               "framework_overhead_mib", "usable_fraction"), f"{source}: memory")
        _need(data["prior"], ("source", "bands", "devices"), f"{source}: prior")
        return cls(backends, builds, list(data["exclusions"]), data["memory"], data["prior"], source)

    def band(self, train_flops_per_step: float) -> str:
        """The prior's band for a training step of this many FLOPs (``tiny`` ... ``large``)."""
        mflops = train_flops_per_step / 1e6
        for band in self.prior["bands"]:
            if band["max_train_mflops"] is None or mflops <= band["max_train_mflops"]:
                return band["name"]
        return self.prior["bands"][-1]["name"]

    def prior_factors(self, device: str, family: str, train_flops_per_step: float) -> dict[str, float] | None:
        """Relative throughputs for this device, family and work band, or ``None`` without a prior."""
        return self.prior["devices"].get(device, {}).get(family, {}).get(self.band(train_flops_per_step))


def _need(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing {missing}")


def load_rules(path: str | Path | None = None) -> Rules:
    """The rules shipped with polyframe, or those in ``path``."""
    if path is None:
        resource = importlib.resources.files(__package__).joinpath(_RULES_FILE)
        text, source = resource.read_text(encoding="utf-8"), _RULES_FILE
    else:
        try:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the rules file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc or 'nested too deeply'}") from None
    return Rules.from_dict(data, source)
