"""Executions as the Step Functions console shows them, and redrive for a runtime that has none.

Everything here speaks the Step Functions API through a boto3 client, so it works against the local runtime in
this process, against ``batch-classifier serve`` in another, or against AWS.

Redrive follows RedriveExecution's semantics: the execution resumes at the state that failed, with the input
that state received; states that succeeded are not run again, and in a failed inline Map state only the
iterations that did not succeed run again. A Distributed Map that reads its items from S3 runs all its children
again: ours are idempotent, so the children that had succeeded end at once. moto has no RedriveExecution, so a
redrive here is a new execution of a copy of the state machine that starts at the failed state (named
``<state machine>-redrive``); the execution is named ``<original>-redrive-<n>``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_FAILURES = {"FAILED", "TIMED_OUT", "ABORTED"}
REDRIVE_ITEMS = "__redrive_items"


class ExecutionNotRedrivable(Exception):
    """The execution cannot be redriven (it did not fail, or its failure point cannot be found)."""


@dataclass
class StateRun:
    """One state's passage in an execution, as the console's table lists it."""

    name: str
    kind: str
    entered: datetime | None = None
    exited: datetime | None = None
    status: str = "running"
    error: str | None = None
    cause: str | None = None
    input: str | None = None
    iterations: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.entered and self.exited:
            return (self.exited - self.entered).total_seconds()
        return None


def resolve(sfn: Any, name_or_arn: str) -> str:
    """An execution ARN from an ARN or an execution name (searched in every state machine)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    for machine in sfn.list_state_machines()["stateMachines"]:
        for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            if execution["name"] == name_or_arn:
                return str(execution["executionArn"])
    raise KeyError(f"no execution named {name_or_arn!r}; `batch-classifier executions` lists them")


def list_all(sfn: Any) -> list[dict[str, Any]]:
    """Every execution of every state machine, newest first, with the uploaded file when known."""
    rows = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                source = json.loads(described.get("input") or "{}")
                source = source.get("key") or source.get("input", {}).get("key") or ""
            except (ValueError, AttributeError):
                source = ""
            rows.append({**execution, "file": source, "state_machine": machine["name"]})
    rows.sort(key=lambda r: r["startDate"], reverse=True)
    return rows


def state_runs(sfn: Any, execution_arn: str) -> list[StateRun]:
    """The states of an execution in the order they ran, with durations, errors and Map iteration counts."""
    events = sfn.get_execution_history(executionArn=execution_arn)["events"]
    runs: list[StateRun] = []
    open_runs: dict[str, StateRun] = {}
    maps: list[StateRun] = []
    for event in events:
        kind: str = event["type"]
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            run = StateRun(name=details["name"], kind=kind.removesuffix("StateEntered"), entered=event["timestamp"])
            run.input = details.get("input")
            runs.append(run)
            open_runs[run.name] = run
            if run.kind == "Map":
                maps.append(run)
        elif kind.endswith("StateExited"):
            exited = open_runs.pop(event["stateExitedEventDetails"]["name"], None)
            if exited is not None:
                exited.exited = event["timestamp"]
                if exited.status == "running":
                    exited.status = "succeeded"
        elif kind.startswith("MapIteration") and maps:
            state = kind.removeprefix("MapIteration").lower()
            maps[-1].iterations[state] = maps[-1].iterations.get(state, 0) + 1
        elif kind.endswith("Failed") or kind.endswith("TimedOut") or kind.endswith("Aborted"):
            failure: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            target = _innermost_open(runs, open_runs)
            if target is not None and kind != "ExecutionFailed":
                target.status = "failed"
                target.error = failure.get("error", target.error)
                target.cause = failure.get("cause", target.cause)
                target.exited = event["timestamp"]
                if kind in {"MapStateFailed"} or target.kind != "Map":
                    open_runs.pop(target.name, None)
    for run in open_runs.values():
        if run.status == "running" and run.kind == "Fail":
            run.status = "failed"
    return runs


def _innermost_open(runs: list[StateRun], open_runs: dict[str, StateRun]) -> StateRun | None:
    for run in reversed(runs):
        if open_runs.get(run.name) is run:
            return run
    return None


def finalize_result(sfn: Any, execution_arn: str) -> dict[str, Any] | None:
    """What FinalizeRun returned (``$.result``): from the execution's output, or from its history when the
    execution failed after it (a run in which nothing was classified); None when it never got there."""
    described = sfn.describe_execution(executionArn=execution_arn)
    if described.get("output"):
        result = json.loads(described["output"]).get("result")
        return result if isinstance(result, dict) else None
    for event in reversed(sfn.get_execution_history(executionArn=execution_arn)["events"]):
        exited = event.get("stateExitedEventDetails") or {}
        if exited.get("name") == "FinalizeRun" and exited.get("output"):
            result = json.loads(exited["output"]).get("result")
            return result if isinstance(result, dict) else None
    return None


def format_execution(sfn: Any, execution_arn: str) -> str:
    """A text view of an execution: its status, then every state with status, duration, error and cause."""
    described = sfn.describe_execution(executionArn=execution_arn)
    lines = [
        f"Execution {described['name']}",
        f"  status   {described['status']}",
        f"  started  {described['startDate']:%Y-%m-%d %H:%M:%S}",
    ]
    if described.get("stopDate"):
        seconds = (described["stopDate"] - described["startDate"]).total_seconds()
        lines.append(f"  duration {seconds:.1f}s")
    if described.get("error"):
        lines.append(f"  error    {described['error']}")
        lines.append(f"  cause    {_short(described.get('cause'))}")
    lines.append("")
    lines.append(f"  {'state':<22} {'type':<8} {'status':<10} {'seconds':>8}  details")
    for run in state_runs(sfn, execution_arn):
        seconds = f"{run.seconds:.2f}" if run.seconds is not None else ""
        details = ""
        if run.iterations:
            details = "iterations: " + ", ".join(f"{k} {v}" for k, v in sorted(run.iterations.items()))
        if run.error:
            details = f"{details}  {run.error}: {_short(run.cause)}".strip()
        lines.append(f"  {run.name:<22} {run.kind:<8} {run.status:<10} {seconds:>8}  {details}")
    return "\n".join(lines)


def _short(cause: str | None, limit: int = 160) -> str:
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = str(parsed["errorMessage"])
    except ValueError:
        pass
    cause = " ".join(cause.split())
    return cause if len(cause) <= limit else cause[: limit - 1] + "…"


# --- redrive ----------------------------------------------------------------------------------------------


def redrive(sfn: Any, execution_arn: str) -> str:
    """Resume a failed execution at its failed state; returns the new execution's ARN."""
    described = sfn.describe_execution(executionArn=execution_arn)
    if described["status"] not in TERMINAL_FAILURES:
        raise ExecutionNotRedrivable(
            f"{described['name']} is {described['status']}: only failed, timed out or aborted executions redrive."
        )
    machine = sfn.describe_state_machine(stateMachineArn=described["stateMachineArn"])
    definition = json.loads(machine["definition"])
    top_level = set(definition["States"])
    failed = next(
        (r for r in reversed(state_runs(sfn, execution_arn)) if r.name in top_level and r.status != "succeeded"),
        None,
    )
    if failed is None or failed.input is None:
        raise ExecutionNotRedrivable(f"cannot find where {described['name']} failed in its history.")
    state_input = json.loads(failed.input)
    plan = copy.deepcopy(definition)
    plan["StartAt"] = failed.name
    state = plan["States"][failed.name]
    if state["Type"] == "Map" and "ItemReader" not in state:
        items = _path(state_input, state.get("ItemsPath", "$"))
        done = _succeeded_iterations(sfn, execution_arn, failed.name)
        state_input[REDRIVE_ITEMS] = [item for index, item in enumerate(items) if index not in done]
        state["ItemsPath"] = f"$.{REDRIVE_ITEMS}"
        if state.get("ResultPath", "$") is not None:
            raise ExecutionNotRedrivable(
                f"{failed.name} keeps its iterations' results, which a local redrive cannot restore."
            )
    name = f"{machine['name']}-redrive"[:80]
    existing = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if name in existing:
        sfn.update_state_machine(stateMachineArn=existing[name], definition=json.dumps(plan))
        redrive_machine = existing[name]
    else:
        redrive_machine = sfn.create_state_machine(
            name=name, definition=json.dumps(plan), roleArn=machine["roleArn"], type="STANDARD"
        )["stateMachineArn"]
    attempt = 1 + sum(
        1
        for e in sfn.list_executions(stateMachineArn=redrive_machine)["executions"]
        if e["name"].startswith(f"{described['name']}-redrive-")
    )
    started = sfn.start_execution(
        stateMachineArn=redrive_machine,
        name=f"{described['name']}-redrive-{attempt}"[:80],
        input=json.dumps(state_input),
    )
    return str(started["executionArn"])


def _succeeded_iterations(sfn: Any, execution_arn: str, map_state: str) -> set[int]:
    events = sfn.get_execution_history(executionArn=execution_arn)["events"]
    done: set[int] = set()
    inside = False
    for event in events:
        details = event.get("stateEnteredEventDetails") or {}
        if event["type"] == "MapStateEntered" and details.get("name") == map_state:
            inside, done = True, set()
        elif inside and event["type"] == "MapIterationSucceeded":
            done.add(int(event["mapIterationSucceededEventDetails"]["index"]))
    return done


def _path(data: Any, path: str) -> Any:
    """A simple JSONPath (``$.a.b``) into data."""
    value = data
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        value = value[part]
    return value
