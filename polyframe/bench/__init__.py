"""Side-by-side backend benchmarks: each backend and baseline in its own process.

``polyframe bench MODEL_FILE`` is the command; :func:`run_bench` and :func:`summarise` the API.
Importing this package imports no framework.
"""

from .runner import BenchConfig, RunResult, run_bench, summarise

__all__ = ["BenchConfig", "RunResult", "run_bench", "summarise"]
