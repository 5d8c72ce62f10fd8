"""Backend recommendation: which backend suits this workload on this (or a described) machine.

Three tiers, each stated in the answer: hard constraints from the rules file only exclude
backends (framework missing, device unsupported by the build, unsupported feature, memory);
evidence ranks the rest (a short measured trial, cached ``polyframe bench`` results, or, with
neither, a low-confidence prior); the answer is a ranked list with evidence and confidence.
Importing this package imports no framework.
"""

from ._agreement import WITHIN, agreement, agreement_rates
from ._auto import AUTO_BATCH_SIZE, Choice, choose_backend, choose_backend_for_model
from ._constraints import Candidate, Exclusion, apply_constraints, build_support, candidates, target_device
from ._evidence import Evidence, TrialSettings
from ._recommend import Ranked, Recommendation, recommend
from ._report import format_recommendation
from ._rules import DEVICE_KINDS, FAMILIES, PARALLELISM, PRECISIONS, Rules, load_rules
from ._workload import Workload, forward_flops, memory_estimate, workload_from_model

__all__ = [
    "recommend", "Recommendation", "Ranked", "format_recommendation",
    "Workload", "workload_from_model", "forward_flops", "memory_estimate",
    "Rules", "load_rules", "DEVICE_KINDS", "FAMILIES", "PRECISIONS", "PARALLELISM",
    "Candidate", "Exclusion", "candidates", "target_device", "build_support", "apply_constraints",
    "Evidence", "TrialSettings",
    "Choice", "choose_backend", "choose_backend_for_model", "AUTO_BATCH_SIZE",
    "agreement", "agreement_rates", "WITHIN",
]
