"""The local runtime's worker pool: workers warmed ahead along the workflow, and idle workers stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_classifier_local.workers import Answer, FunctionSpec, WorkerPool

MakePool = Callable[..., WorkerPool]
HANDLER = """
import os


def lambda_handler(event, context):
    return {"pid": os.getpid(), "event": event, "function": context.function_name}
"""


def _result(answer: Answer) -> dict[str, Any]:
    assert answer.ok and isinstance(answer.payload, dict)
    return answer.payload


def _specs(root: Path, names: list[str]) -> dict[str, FunctionSpec]:
    specs = {}
    for name in names:
        folder = root / name
        folder.mkdir()
        (folder / "app.py").write_text(HANDLER, encoding="utf-8")
        specs[name] = FunctionSpec(name=name, app=folder / "app.py", environment={}, timeout=30)
    return specs


def _wait_for(condition: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def make_pool(tmp_path: Path) -> Iterator[MakePool]:
    pools: list[WorkerPool] = []

    def make(names: list[str], **options: Any) -> WorkerPool:
        pool = WorkerPool(
            specs=_specs(tmp_path, names),
            log_dir=tmp_path / "logs",
            code_roots=[],
            **options,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_an_invocation_warms_the_next_functions_of_the_workflow(make_pool: MakePool) -> None:
    pool = make_pool(["first", "second", "third", "fourth", "other"], workflow=["first", "second", "third", "fourth"])
    answer = _result(pool.invoke("first", {"n": 1}))
    assert answer["event"] == {"n": 1} and answer["function"] == "first"
    # The next two functions of the workflow get a worker each, imported and idle; the others none.
    _wait_for(lambda: all(pool._idle.get(name) for name in ("second", "third")))
    warmed = pool._idle["second"][0]
    assert warmed.ready.is_set() and not warmed.used
    assert not pool._idle.get("fourth") and not pool._idle.get("other")
    # The warmed worker answers the function's invocation: no other process is started for it.
    answer = _result(pool.invoke("second", {"n": 2}))
    assert answer["pid"] == warmed._process.pid and answer["event"] == {"n": 2}
    _wait_for(lambda: bool(pool._idle.get("fourth")))  # second warms third (it has one already) and fourth
    assert len(pool._idle["third"]) == 1


def test_an_invocation_takes_a_worker_still_importing_its_handler(make_pool: MakePool) -> None:
    pool = make_pool(["first", "second"], workflow=["first", "second"])
    pool.invoke("first", {})
    _wait_for(lambda: "second" in pool._warming or bool(pool._idle.get("second")))
    warming = pool._warming.get("second") or pool._idle["second"][0]
    assert _result(pool.invoke("second", {"n": 3}))["pid"] == warming._process.pid
    assert pool.invocations == {"first": 1, "second": 1}


def test_idle_workers_are_stopped_and_started_again_when_needed(make_pool: MakePool) -> None:
    pool = make_pool(["only", "warmed"], workflow=["only", "warmed"], idle_seconds=0.2, warm_idle_seconds=3.0)
    first = _result(pool.invoke("only", {}))
    worker = pool._idle["only"][0]
    _wait_for(lambda: bool(pool._idle.get("warmed")))
    warmed = pool._idle["warmed"][0]
    _wait_for(lambda: not pool._idle.get("only") and not worker.alive)  # stopped once idle past idle_seconds
    assert warmed.alive and pool._idle["warmed"] == [warmed]  # a warmed worker never used waits longer
    _wait_for(lambda: not pool._idle.get("warmed") and not warmed.alive)  # and is stopped past warm_idle_seconds
    again = _result(pool.invoke("only", {"again": True}))
    assert again["pid"] != first["pid"] and again["event"] == {"again": True}


def test_without_a_workflow_nothing_is_warmed_nor_stopped(make_pool: MakePool) -> None:
    pool = make_pool(["one", "two"], idle_seconds=None, warm_idle_seconds=None)
    first = _result(pool.invoke("one", {}))
    time.sleep(1.5)
    assert not pool._idle.get("two") and not pool._warming
    assert _result(pool.invoke("one", {}))["pid"] == first["pid"]


def test_a_closed_pool_stops_its_workers(make_pool: MakePool) -> None:
    pool = make_pool(["first", "second"], workflow=["first", "second"])
    pool.invoke("first", {})
    _wait_for(lambda: bool(pool._idle.get("second")))
    workers = [w for ws in pool._idle.values() for w in ws]
    pool.close()
    assert workers and not any(w.alive for w in workers) and not pool._idle
