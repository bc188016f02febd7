"""A local Bedrock job's answers worked out ahead, in processes of their own, for a model that allows it.

The process of the local runtime serves moto, the workflow's interpreter and the local Bedrock on one interpreter
lock: a job answering its records there uses one core at most. A model whose answers are pure computation (the
offline classifier says so with ``answers_in_processes``) answers in :class:`AnswerPool`'s processes instead, on the
machine's other cores, while the job's thread reads the records, writes the output lines and keeps the job's
counts and pace. The answers come back in the records' order, a few chunks ahead of the job, so that a job holds
a bounded number of them whatever its size. Any other model (one behind HTTP, the tests' models) answers in the
job's thread, as before.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from .model_protocol import Completion, Model

#: What a model is asked: the system prompt, the messages and the most tokens it may answer with.
Request = tuple[str, list[dict[str, Any]], int]
#: What a model did with a request: its completion and the seconds it took, or the exception it raised.
Outcome = tuple[Completion, float] | Exception

_CHUNK = 32  # requests a process answers at a time
_AHEAD = 8  # chunks of a job in the works at once

_MODEL: Model | None = None  # in a pool's process: the model it answers with
T = TypeVar("T")


def default_processes() -> int:
    """Processes answering for the local Bedrock: the cores but one (the runtime's own process needs one)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _start(model: Model) -> None:
    global _MODEL  # noqa: PLW0603
    _MODEL = model


def _answer_all(requests: list[Request | None]) -> list[Outcome | None]:
    assert _MODEL is not None
    outcomes: list[Outcome | None] = []
    for request in requests:
        if request is None:
            outcomes.append(None)
            continue
        started = time.monotonic()
        try:
            completion = _MODEL.complete(*request)
        except Exception as exc:  # handed to the job, which turns it into the record's error line
            outcomes.append(exc)
        else:
            outcomes.append((completion, time.monotonic() - started))
    return outcomes


class AnswerPool:
    """Processes answering requests with ``model`` (``processes`` of them, started at the first job that uses
    them); :meth:`ahead` gives each request's outcome in order."""

    def __init__(self, model: Model, processes: int | None = None) -> None:
        self.model = model
        self.processes = default_processes() if processes is None else processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the model answers in the pool's processes (else in the job's thread)."""
        return self.processes > 0 and bool(getattr(self.model, "answers_in_processes", False))

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=multiprocessing.get_context("spawn"),  # the runtime's process has many threads
                    initializer=_start,
                    initargs=(self.model,),
                )
            return self._executor

    def ahead(self, items: Iterable[tuple[T, Request | None]]) -> Generator[tuple[T, Outcome | None]]:
        """Each item with the outcome of its request (None for an item without one), in the items' order; when the
        pool is not enabled, every outcome is None (the caller asks the model itself)."""
        if not self.enabled:
            for key, _ in items:
                yield key, None
            return
        source = iter(items)
        pending: deque[tuple[list[T], Future[list[Outcome | None]]]] = deque()

        def submit() -> bool:
            chunk = list(itertools.islice(source, _CHUNK))
            if chunk:
                # One system prompt object per distinct prompt (a job's records share one): pickled once a chunk.
                systems: dict[str, str] = {}
                requests = [
                    None if request is None else (systems.setdefault(request[0], request[0]), *request[1:])
                    for _, request in chunk
                ]
                pending.append(([key for key, _ in chunk], self._pool().submit(_answer_all, requests)))
            return bool(chunk)

        try:
            while len(pending) < _AHEAD and submit():
                pass
            while pending:
                keys, future = pending.popleft()
                outcomes = future.result()
                submit()
                yield from zip(keys, outcomes, strict=True)
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the processes (requests not started are dropped)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
