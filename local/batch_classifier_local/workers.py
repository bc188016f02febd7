"""Warm worker processes for the local Lambda functions.

Each function gets its own processes (like Lambda containers): its own environment variables, one invocation
at a time per process, more processes when invocations overlap (so Map iterations really run in parallel, up to
twice the cores per function), and
its timeout enforced by killing the process. A process whose code changed on disk since it started is replaced
before its next invocation, so an edited handler takes effect on the next run without a restart.

An invocation of a function of the workflow (the functions the state machine calls, in its order) starts a process
for the next functions of the workflow that have none yet, one after the other, so that a run's steps do not each
wait for a Python process to import its handler (about a second each). A process idle for a while is stopped, as
Lambda reclaims idle containers: a run's earlier steps (ConvertInput, ShardRecords, ...) do not hold their memory
while the later ones run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .worker import READY

# Lambda's own error names for a timeout and for a container that died.
TIMEOUT_ERROR = "Sandbox.Timedout"
EXIT_ERROR = "Runtime.ExitError"
# Seconds a process that answered an invocation, and one warmed but never used, stays idle before it is stopped.
IDLE_SECONDS = 5.0
WARM_IDLE_SECONDS = 300.0
# Functions of the workflow warmed ahead of the one invoked; seconds a warming waits for a process to import its
# handler before it warms the next function.
WARM_AHEAD = 2
_WARM_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to run one deployed function."""

    name: str
    app: Path
    environment: dict[str, str]
    timeout: int = 3
    memory: int = 512


@dataclass
class Answer:
    ok: bool
    payload: dict[str, Any] | list[Any] | str | int | float | bool | None
    error_type: str | None = None

    def body(self) -> bytes:
        return json.dumps(self.payload, default=str).encode()


def _code_stamp(roots: Iterable[Path]) -> float:
    latest = 0.0
    for root in roots:
        for path in root.rglob("*.py") if root.is_dir() else [root]:
            latest = max(latest, path.stat().st_mtime)
    return latest


class Worker:
    """One process running one function's handler."""

    def __init__(self, spec: FunctionSpec, log: IO[str], stamp: float) -> None:
        self.spec = spec
        self.stamp = stamp
        env = {**os.environ, **spec.environment}
        env["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(spec.memory)
        env["LOCAL_LAMBDA_TIMEOUT"] = str(spec.timeout)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "batch_classifier_local.worker", str(spec.app)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            encoding="utf-8",
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self.ready = threading.Event()  # the handler is imported (or the process ended)
        self.used = False  # it has answered an invocation
        self.idle_since = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if not self.ready.is_set() and line.strip() == READY:
                self.ready.set()
                continue
            self._answers.put(line)
        self.ready.set()
        self._answers.put(None)

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def invoke(self, event: Any) -> Answer:
        assert self._process.stdin is not None
        self.used = True
        try:
            self._process.stdin.write(json.dumps({"event": event}) + "\n")
            self._process.stdin.flush()
            line = self._answers.get(timeout=self.spec.timeout)
        except queue.Empty:
            self.stop()
            message = f"Task timed out after {self.spec.timeout} seconds"
            return Answer(False, {"errorType": TIMEOUT_ERROR, "errorMessage": message}, TIMEOUT_ERROR)
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            message = f"the worker of {self.spec.name} exited (code {self._process.poll()}); see its log"
            return Answer(False, {"errorType": EXIT_ERROR, "errorMessage": message}, EXIT_ERROR)
        answer = json.loads(line)
        if answer["ok"]:
            return Answer(True, answer["result"])
        error = {k: answer[k] for k in ("errorType", "errorMessage", "stackTrace")}
        return Answer(False, error, answer["errorType"])

    def stop(self) -> None:
        if self.alive:
            self._process.kill()
        self._process.wait()


def default_concurrency() -> int:
    """Invocations of one function that run at once: twice the cores (more only adds processes that wait)."""
    return max(2, 2 * (os.cpu_count() or 1))


@dataclass
class WorkerPool:
    """The workers of every function, started on demand and reused while their code is unchanged.

    At most ``concurrency`` invocations of one function run at once (a reserved concurrency, as Lambda has);
    more wait for a worker, so a Map of many iterations does not start a process per iteration. An invocation of a
    function of ``workflow`` (function names, in the order the workflow calls them) warms the next ``warm_ahead``
    ones that never had a worker, one at a time. A worker idle for ``idle_seconds`` after an invocation
    (``warm_idle_seconds`` when warmed and never used) is stopped (None: never).
    """

    specs: dict[str, FunctionSpec]
    log_dir: Path
    code_roots: list[Path]
    concurrency: int = field(default_factory=default_concurrency)
    workflow: list[str] = field(default_factory=list)
    warm_ahead: int = WARM_AHEAD
    idle_seconds: float | None = IDLE_SECONDS
    warm_idle_seconds: float | None = WARM_IDLE_SECONDS
    _idle: dict[str, list[Worker]] = field(default_factory=dict)
    _slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _logs: dict[str, IO[str]] = field(default_factory=dict)
    _busy: dict[str, int] = field(default_factory=dict)  # invocations running, by function
    _warming: dict[str, Worker] = field(default_factory=dict)  # workers being warmed, not yet idle
    _to_warm: queue.Queue[str] = field(default_factory=queue.Queue)
    _closed: threading.Event = field(default_factory=threading.Event)
    _helpers_started: bool = False
    invocations: dict[str, int] = field(default_factory=dict)

    def invoke(self, function_name: str, event: Any) -> Answer:
        spec = self.specs[function_name]
        self._start_helpers()
        if function_name in self.workflow:
            at = self.workflow.index(function_name) + 1
            for following in self.workflow[at : at + self.warm_ahead]:
                self._to_warm.put(following)
        with self._lock:
            slots = self._slots.setdefault(spec.name, threading.BoundedSemaphore(self.concurrency))
        with slots:
            worker = self._take(spec)
            try:
                return worker.invoke(event)
            finally:
                self._give_back(worker)

    def _take(self, spec: FunctionSpec) -> Worker:
        stamp = _code_stamp([spec.app.parent, *self.code_roots])
        with self._lock:
            self.invocations[spec.name] = self.invocations.get(spec.name, 0) + 1
            self._busy[spec.name] = self._busy.get(spec.name, 0) + 1
            idle = self._idle.setdefault(spec.name, [])
            while idle:
                worker = idle.pop()
                if worker.alive and worker.stamp >= stamp:
                    return worker
                worker.stop()
            warming = self._warming.pop(spec.name, None)
            if warming is not None and warming.alive and warming.stamp >= stamp and warming.spec is spec:
                return warming  # still importing its handler: it reads the event once it has
            log = self._log(spec)
        try:
            return Worker(spec, log, stamp)
        except BaseException:
            with self._lock:
                self._busy[spec.name] -= 1
            raise

    def _log(self, spec: FunctionSpec) -> IO[str]:
        """The function's log file, opened once (under the lock)."""
        log = self._logs.get(spec.name)
        if log is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"{spec.app.parent.name}.log").open("a", encoding="utf-8")
            self._logs[spec.name] = log
        return log

    def _give_back(self, worker: Worker, invoked: bool = True) -> None:
        worker.idle_since = time.monotonic()
        if invoked:
            with self._lock:
                self._busy[worker.spec.name] -= 1
        if worker.alive and self.specs.get(worker.spec.name) is worker.spec and not self._closed.is_set():
            with self._lock:
                self._idle.setdefault(worker.spec.name, []).append(worker)
        else:
            worker.stop()  # its function's spec changed while it ran (retire): it is not used again

    def _start_helpers(self) -> None:
        """On the first invocation: the warming of functions, and the stopping of idle workers."""
        if self._helpers_started:
            return
        with self._lock:
            if self._helpers_started or self._closed.is_set():
                return
            self._helpers_started = True
        if self.workflow and self.warm_ahead > 0:
            threading.Thread(target=self._warm, daemon=True, name="worker-warming").start()
        if self.idle_seconds is not None or self.warm_idle_seconds is not None:
            threading.Thread(target=self._stop_idle, daemon=True, name="worker-reaper").start()

    def _warm(self) -> None:
        """Start a worker for each function asked for that has never had one, one at a time: each imports its
        handler before the next starts, so that the run's own steps keep the cores."""
        while not self._closed.is_set():
            try:
                name = self._to_warm.get(timeout=1.0)
            except queue.Empty:
                continue
            spec = self.specs.get(name)
            if spec is None:
                continue
            stamp = _code_stamp([spec.app.parent, *self.code_roots])
            with self._lock:
                if self._closed.is_set() or self._idle.get(name) or name in self._warming or self._busy.get(name):
                    continue  # it has a worker already
                worker = self._warming[spec.name] = Worker(spec, self._log(spec), stamp)
            worker.ready.wait(_WARM_WAIT_SECONDS)
            with self._lock:
                if self._warming.get(spec.name) is not worker:
                    continue  # an invocation took it while it imported
                del self._warming[spec.name]
            self._give_back(worker, invoked=False)

    def _stop_idle(self) -> None:
        while not self._closed.wait(1.0):
            now = time.monotonic()
            stale: list[Worker] = []
            with self._lock:
                for name, workers in self._idle.items():
                    kept = [w for w in workers if not self._stale(w, now)]
                    stale += [w for w in workers if w not in kept]
                    self._idle[name] = kept
            for worker in stale:
                worker.stop()

    def _stale(self, worker: Worker, now: float) -> bool:
        limit = self.idle_seconds if worker.used else self.warm_idle_seconds
        return limit is not None and now - worker.idle_since > limit

    def retire(self, function_name: str) -> None:
        """Stop the idle workers of a function (its spec changed): its next invocations start new ones."""
        with self._lock:
            warming = self._warming.pop(function_name, None)
            for worker in [*self._idle.pop(function_name, []), *([warming] if warming else [])]:
                worker.stop()

    def close(self) -> None:
        self._closed.set()  # the warming and the stopping of idle workers end
        with self._lock:
            for worker in [*(w for ws in self._idle.values() for w in ws), *self._warming.values()]:
                worker.stop()
            self._idle.clear()
            self._warming.clear()
            for log in self._logs.values():
                log.close()
            self._logs.clear()
