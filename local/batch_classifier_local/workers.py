"""Warm worker processes for the local Lambda functions.

Each function gets its own processes (like Lambda containers): its own environment variables, one invocation
at a time per process, more processes when invocations overlap (so Map iterations really run in parallel, up to
twice the cores per function), and
its timeout enforced by killing the process. A process whose code changed on disk since it started is replaced
before its next invocation, so an edited handler takes effect on the next run without a restart.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Lambda's own error names for a timeout and for a container that died.
TIMEOUT_ERROR = "Sandbox.Timedout"
EXIT_ERROR = "Runtime.ExitError"


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
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._answers.put(line)
        self._answers.put(None)

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def invoke(self, event: Any) -> Answer:
        assert self._process.stdin is not None
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
    more wait for a worker, so a Map of many iterations does not start a process per iteration.
    """

    specs: dict[str, FunctionSpec]
    log_dir: Path
    code_roots: list[Path]
    concurrency: int = field(default_factory=default_concurrency)
    _idle: dict[str, list[Worker]] = field(default_factory=dict)
    _slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _logs: dict[str, IO[str]] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)

    def invoke(self, function_name: str, event: Any) -> Answer:
        spec = self.specs[function_name]
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
            idle = self._idle.setdefault(spec.name, [])
            while idle:
                worker = idle.pop()
                if worker.alive and worker.stamp >= stamp:
                    return worker
                worker.stop()
            log = self._logs.get(spec.name)
            if log is None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = (self.log_dir / f"{spec.app.parent.name}.log").open("a", encoding="utf-8")
                self._logs[spec.name] = log
        return Worker(spec, log, stamp)

    def _give_back(self, worker: Worker) -> None:
        if worker.alive and self.specs.get(worker.spec.name) is worker.spec:
            with self._lock:
                self._idle.setdefault(worker.spec.name, []).append(worker)
        else:
            worker.stop()  # its function's spec changed while it ran (retire): it is not used again

    def retire(self, function_name: str) -> None:
        """Stop the idle workers of a function (its spec changed): its next invocations start new ones."""
        with self._lock:
            for worker in self._idle.pop(function_name, []):
                worker.stop()

    def close(self) -> None:
        with self._lock:
            for workers in self._idle.values():
                for worker in workers:
                    worker.stop()
            self._idle.clear()
            for log in self._logs.values():
                log.close()
            self._logs.clear()
