"""The worker processes of a data-parallel job: launch, rendezvous, request / reply and failure
detection.

The trainer's process (the driver) listens on a local socket and starts each worker as
``python -m polyframe._workers``; a worker connects back, builds its backend's data-parallel
engine and then answers one request at a time. The driver waits for replies while watching
every worker process: one that exits, breaks its connection, raises during a training step or
does not answer within ``$POLYFRAME_WORKER_TIMEOUT`` seconds stops the whole job with a
:class:`~polyframe.errors.DistributedError` (the other workers may be blocked in a collective
waiting for it, so they are killed rather than left to hang). A worker whose driver has gone
exits at its next request.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib import import_module
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any

from .errors import ConfigError, DistributedError, PolyframeError

__all__ = ["WorkerPool", "ENV_TIMEOUT", "DEFAULT_TIMEOUT_S"]

ENV_TIMEOUT = "POLYFRAME_WORKER_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
"""Seconds a worker may take to start or to answer one request (a first step compiles)."""

_ENV_ADDRESS = "POLYFRAME_DRIVER_ADDRESS"
_ENV_AUTHKEY = "POLYFRAME_DRIVER_AUTHKEY"
_ENV_RANK = "POLYFRAME_WORKER_RANK"
_HOST = "127.0.0.1"
_POLL_S = 0.2
_EXIT_GRACE_S = 2.0
"""How long a closed connection waits for its worker's exit status, to report how it died."""
_CLOSE_GRACE_S = 5.0
_METHODS = frozenset({"devices_used", "prepare_inputs", "train_share", "eval_step", "predict", "get_weights",
                      "set_weights", "get_optimizer_state", "set_optimizer_state", "get_rng_state",
                      "set_rng_state", "get_learning_rate", "set_learning_rate",
                      "get_loss_scale", "set_loss_scale"})


def _timeout() -> float:
    text = os.environ.get(ENV_TIMEOUT, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"${ENV_TIMEOUT} must be a positive number of seconds, got {text!r}")
    return value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((_HOST, 0))
        return probe.getsockname()[1]


class WorkerPool:
    """``processes`` workers of backend ``backend``, each driving ``local_devices`` devices,
    built from ``build_args`` = ``(model, weights, loss, optimizer, options)``."""

    def __init__(self, backend: str, processes: int, local_devices: int,
                 build_args: tuple[Any, ...]) -> None:
        self.backend, self.processes = backend, processes
        self.timeout_s = _timeout()
        self._failure: str | None = None
        self._closed = False
        self._procs: list[subprocess.Popen] = []
        self._conns: list[Connection] = []
        authkey = secrets.token_bytes(16)
        listener = Listener((_HOST, 0), authkey=authkey)
        try:
            self._start(listener, authkey)
            rendezvous = (_HOST, _free_port())
            for rank, conn in enumerate(self._conns):
                conn.send({"backend": backend, "rank": rank, "processes": processes,
                           "local_devices": local_devices, "rendezvous": rendezvous,
                           "timeout_s": self.timeout_s, "build_args": build_args})
            self._gather(range(processes), "start", fatal=True)
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    def _start(self, listener: Listener, authkey: bytes) -> None:
        host, port = listener.address
        threads = str(max(1, (os.cpu_count() or 1) // self.processes))
        for rank in range(self.processes):
            env = {**os.environ, _ENV_ADDRESS: f"{host}:{port}", _ENV_AUTHKEY: authkey.hex(),
                   _ENV_RANK: str(rank)}
            env.setdefault("OMP_NUM_THREADS", threads)
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            self._procs.append(subprocess.Popen([sys.executable, "-m", "polyframe._workers"], env=env))
        accepted: dict[int, Connection] = {}

        def accept() -> None:
            while len(accepted) < self.processes:
                conn = listener.accept()
                accepted[conn.recv()] = conn

        thread = threading.Thread(target=accept, daemon=True, name="polyframe-accept")
        thread.start()
        deadline = time.monotonic() + self.timeout_s
        while thread.is_alive():
            thread.join(_POLL_S)
            self._check_alive("while starting")
            if time.monotonic() > deadline:
                self._fail(f"the workers did not connect within {self.timeout_s:g} s (set "
                           f"${ENV_TIMEOUT} to allow longer)")
        self._conns = [accepted[rank] for rank in range(self.processes)]

    # -- requests --------------------------------------------------------------------------
    def call(self, rank: int, method: str, *args: Any) -> Any:
        """``method(*args)`` on worker ``rank``'s engine."""
        self._send(rank, method, args)
        return self._gather([rank], method, fatal=False)[0]

    def call_each(self, calls: Sequence[tuple[str, tuple[Any, ...]]], *, fatal: bool = True) -> list[Any]:
        """``calls[k]`` on worker ``k``, all at once; with ``fatal`` a failure stops the job."""
        for rank, (method, args) in enumerate(calls):
            self._send(rank, method, args)
        return self._gather(range(len(calls)), calls[0][0], fatal=fatal)

    def broadcast(self, method: str, *args: Any) -> None:
        """``method(*args)`` on every worker (state changes that need no collective)."""
        self.call_each([(method, args)] * self.processes, fatal=False)

    def _send(self, rank: int, method: str, args: tuple[Any, ...]) -> None:
        if self._failure is not None:
            raise DistributedError(f"the data-parallel job was stopped earlier ({self._failure}); "
                                   "build a new Trainer to train again")
        if self._closed:
            raise DistributedError(f"the {self.processes} data-parallel workers were stopped (the "
                                   "executable was closed); build a new Trainer to train or predict again")
        try:
            self._conns[rank].send((method, args))
        except (OSError, ValueError):
            self._check_alive(f"sending {method}")
            self._fail(f"lost the connection to worker {rank} while sending {method}")

    def _gather(self, ranks: Sequence[int] | range, what: str, *, fatal: bool) -> list[Any]:
        pending = {self._conns[rank]: rank for rank in ranks}
        replies: dict[int, Any] = {}
        deadline = time.monotonic() + self.timeout_s
        while pending:
            for conn in wait(list(pending), timeout=_POLL_S):
                rank = pending.pop(conn)  # type: ignore[call-overload]
                try:
                    replies[rank] = conn.recv()
                except (EOFError, OSError):
                    self._check_alive(f"during {what}", grace_s=_EXIT_GRACE_S)
                    self._fail(f"worker {rank} closed its connection during {what}")
            if pending:
                self._check_alive(f"during {what}")
                if time.monotonic() > deadline:
                    self._fail(f"worker(s) {sorted(pending.values())} did not answer {what} within "
                               f"{self.timeout_s:g} s (set ${ENV_TIMEOUT} to allow longer)")
        results = []
        for rank in ranks:
            status, value = replies[rank]
            if status == "error":
                if fatal:
                    self._stop(f"worker {rank} raised during {what}")
                if isinstance(value, PolyframeError):
                    raise value
                raise DistributedError(f"worker {rank} failed during {what}: {value}")
            results.append(value)
        return results

    # -- failures and shutdown -------------------------------------------------------------
    def _check_alive(self, when: str, *, grace_s: float = 0.0) -> None:
        """Fail naming the first worker that has exited; with ``grace_s``, wait that long for
        one to exit (a closed connection usually means its process is ending)."""
        deadline = time.monotonic() + grace_s
        while True:
            for rank, proc in enumerate(self._procs):
                code = proc.poll()
                if code is not None:
                    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                    self._fail(f"worker {rank} (pid {proc.pid}) {how} {when}")
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def _stop(self, reason: str) -> None:
        self._failure = reason
        self.close()

    def _fail(self, reason: str) -> None:
        self._stop(reason)
        raise DistributedError(
            f"data-parallel training on {self.backend!r} stopped: {reason}; the other workers "
            "were stopped too. Checkpoints written before this point are intact; resume from "
            "the newest (resume_from= / --resume)")

    def close(self) -> None:
        """Ask each worker to exit, then kill any still running after a grace period."""
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", ()))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _CLOSE_GRACE_S
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()) if self._failure is None else 0.0)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()
        self._conns = [] if self._failure is None else self._conns


# -- the worker side ---------------------------------------------------------------------------
def _build(setup: dict[str, Any]) -> Any:
    from .distributed import WorkerContext
    from .plugins import get_backend

    backend = get_backend(setup["backend"])
    module, _, name = backend.distributed.partition(":")  # type: ignore[union-attr]
    engine_class = getattr(import_module(module), name)
    address, port = setup["rendezvous"]
    context = WorkerContext(setup["rank"], setup["processes"], setup["local_devices"], address, port,
                            setup["timeout_s"])
    return engine_class(*setup["build_args"], context)


def _error(exc: BaseException) -> tuple[str, object]:
    if isinstance(exc, PolyframeError):
        return "error", exc
    return "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _serve() -> int:
    host, _, port = os.environ[_ENV_ADDRESS].rpartition(":")
    conn = Client((host, int(port)), authkey=bytes.fromhex(os.environ[_ENV_AUTHKEY]))
    conn.send(int(os.environ[_ENV_RANK]))
    try:
        engine = _build(conn.recv())
    except Exception as exc:
        conn.send(_error(exc))
        return 1
    conn.send(("ok", None))
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return 0
        if method == "close":
            return 0
        try:
            if method not in _METHODS:
                raise DistributedError(f"unknown worker request {method!r}")
            conn.send(("ok", getattr(engine, method)(*args)))
        except Exception as exc:
            conn.send(_error(exc))


if __name__ == "__main__":
    sys.exit(_serve())
