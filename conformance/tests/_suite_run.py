"""Run the conformance suite in a fresh process with the faulty backends registered, and read
its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

__all__ = ["run_suite"]


def run_suite(tmp: Path, backends: list[str], levels: list[str], *, select: str | None = None,
              limitations: dict[str, Any] | None = None, timeout: float = 900) -> dict[str, Any]:
    """The report of ``polyframe_conformance.run`` over ``backends`` and ``levels``, with
    ``select`` as pytest's ``-k`` expression and ``limitations`` as an extra limitations file."""
    extra = []
    if limitations is not None:
        path = tmp / "limitations.json"
        path.write_text(json.dumps(limitations))
        extra.append(str(path))
    report = tmp / "report.md"
    call = (f"import sys; from polyframe_conformance import run; "
            f"sys.exit(run({backends!r}, {levels!r}, {str(report)!r}, {extra!r}, "
            f"{['-k', select] if select else []!r}))")
    env = {**os.environ, "POLYFRAME_PLUGINS": "faulty_backends",
           "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp)
    assert done.returncode in (0, 1), f"the suite did not run (status {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(report.with_suffix(".json").read_text())
