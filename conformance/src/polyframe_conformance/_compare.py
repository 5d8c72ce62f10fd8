"""Comparisons that record what they observe, so the report can show errors next to tolerances."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["Tolerance", "Checker"]


@dataclass(frozen=True)
class Tolerance:
    """``|got - expected| <= atol + rtol * |expected|`` element-wise (numpy's ``allclose`` rule)."""

    rtol: float
    atol: float = 0.0

    def describe(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


@dataclass
class Checker:
    """Per-test comparisons. ``overrides`` holds a declared looser tolerance (rtol/atol)."""

    overrides: dict[str, float] = field(default_factory=dict)
    observations: list[dict[str, Any]] = field(default_factory=list)

    def effective(self, tolerance: Tolerance) -> Tolerance:
        return replace(tolerance, **self.overrides) if self.overrides else tolerance

    def close(self, quantity: str, got: Any, expected: Any, tolerance: Tolerance) -> None:
        """Assert ``got`` is within ``tolerance`` of ``expected``; record the largest errors
        (the relative error leaves out elements whose expected magnitude is within ``atol``)."""
        tol = self.effective(tolerance)
        got64, exp64 = np.asarray(got, np.float64), np.asarray(expected, np.float64)
        if got64.shape != exp64.shape:
            self._add(quantity, float("inf"), float("inf"), tol, float("inf"))
            raise AssertionError(f"{quantity}: shape {got64.shape}, expected {exp64.shape}")
        error = np.abs(got64 - exp64)
        error = np.where(np.isnan(error), np.inf, error)
        bound = tol.atol + tol.rtol * np.abs(exp64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where((error == 0) | (np.abs(exp64) <= tol.atol), 0.0, error / np.abs(exp64))
            used = np.where(error == 0, 0.0, error / bound)
        max_abs = float(error.max(initial=0.0))
        max_rel = float(rel.max(initial=0.0))
        max_used = float(used.max(initial=0.0))
        self._add(quantity, max_abs, max_rel, tol, max_used)
        if max_used > 1.0:
            worst = np.unravel_index(int(np.argmax(used)), used.shape) if used.size else ()
            raise AssertionError(
                f"{quantity}: max abs error {max_abs:.3g}, max rel error {max_rel:.3g} exceed "
                f"{tol.describe()} ({max_used:.3g}x the allowed error; worst at index "
                f"{tuple(int(i) for i in worst)}: got {got64[worst]:.9g}, expected {exp64[worst]:.9g})")

    def bound(self, quantity: str, value: float, limit: float, *, detail: str = "") -> None:
        """Assert a scalar measure (e.g. a largest relative difference) is at most ``limit``."""
        passed = bool(value <= limit)
        self.observations.append({"quantity": quantity, "observed": float(value), "limit": float(limit),
                                  "passed": passed})
        if not passed:
            raise AssertionError(f"{quantity}: {value:.4g} exceeds {limit:.4g}" + (f"; {detail}" if detail else ""))

    def equal(self, quantity: str, first: Any, second: Any) -> None:
        """Assert bitwise equality of two arrays (or nested lists of arrays)."""
        a, b = np.asarray(first), np.asarray(second)
        same = a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
        differ = 0 if same else (int(np.sum(a != b)) if a.shape == b.shape else -1)
        self.observations.append({"quantity": quantity, "observed": "bitwise equal" if same else
                                  f"{differ} element(s) differ" if differ >= 0 else "shapes differ",
                                  "limit": "bitwise", "passed": same})
        if not same:
            raise AssertionError(f"{quantity}: not bitwise identical ({self.observations[-1]['observed']})")

    def _add(self, quantity: str, max_abs: float, max_rel: float, tol: Tolerance, used: float) -> None:
        self.observations.append({"quantity": quantity, "max_abs": max_abs, "max_rel": max_rel,
                                  "rtol": tol.rtol, "atol": tol.atol, "used": used,
                                  "passed": used <= 1.0})
