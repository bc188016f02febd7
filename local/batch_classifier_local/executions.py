"""Executions as the Step Functions console shows them, and redrive.

Everything here speaks the Step Functions API through a boto3 client, so it works against the local runtime in
this process, against ``batch-classifier serve`` in another, or against AWS.

:func:`redrive` is RedriveExecution (the local runtime adds it to moto): the same execution, same ARN, resumes at
the state that did not succeed, with the input that state had; states that succeeded are not run again, and in a
failed Distributed Map only the children that did not succeed run again. It refuses what Step Functions refuses
(an execution that succeeded, is running, or stopped more than 14 days ago) and, before asking, an execution that
ended in one of the workflow's Fail states (a file it cannot read, a run in which nothing was classified): a
redrive replays that state and fails the same way, so the file must be fixed and uploaded again instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from batch_classifier.failures import INPUT_ERRORS, RECORDED_BY_WORKFLOW

TERMINAL_FAILURES = {"FAILED", "TIMED_OUT", "ABORTED"}


def iso(moment: Any) -> str | None:
    """A time the API returned (a datetime), as ISO 8601; None when there is none."""
    return moment.isoformat() if isinstance(moment, datetime) else (str(moment) if moment is not None else None)


def seconds_between(start: Any, stop: Any) -> float | None:
    """Seconds from ``start`` to ``stop`` (datetimes the API returned), to the millisecond; None without both."""
    if isinstance(start, datetime) and isinstance(stop, datetime):
        return round((stop - start).total_seconds(), 3)
    return None


class ExecutionNotRedrivable(Exception):
    """The execution cannot be redriven: Step Functions refuses, or a redrive would fail the same way."""


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
    output: str | None = None
    retries: int = 0  # failures its Retry recovered from (the state went on and succeeded)

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
    """Every execution of every state machine (all pages), newest first, with the uploaded file when known."""
    rows = []
    machines = [m for page in sfn.get_paginator("list_state_machines").paginate() for m in page["stateMachines"]]
    for machine in machines:
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"])
        for execution in (e for page in pages for e in page["executions"]):
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                source = json.loads(described.get("input") or "{}")
                source = source.get("key") or source.get("input", {}).get("key") or ""
            except (ValueError, AttributeError):
                source = ""
            rows.append(
                {**execution, "file": source, "state_machine": machine["name"], "input": described.get("input")}
            )
    rows.sort(key=lambda r: r["startDate"], reverse=True)
    return rows


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of an execution's history, oldest first (all pages)."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return [event for page in pages for event in page["events"]]


def state_runs(sfn: Any, execution_arn: str) -> list[StateRun]:
    """The states of an execution in the order they ran (a redriven execution: each attempt's), with durations,
    errors and Map iteration counts."""
    runs: list[StateRun] = []
    open_runs: dict[str, StateRun] = {}
    maps: list[StateRun] = []
    for event in history(sfn, execution_arn):
        kind: str = event["type"]
        if kind == "ExecutionRedriven":  # the attempt before ended: what it left open ended with it
            for left in open_runs.values():
                if left.status == "running":
                    left.status = "failed"
            open_runs.clear()
        elif kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            run = StateRun(name=details["name"], kind=kind.removesuffix("StateEntered"), entered=event["timestamp"])
            run.input = details.get("input")
            runs.append(run)
            open_runs[run.name] = run
            if run.kind == "Map":
                maps.append(run)
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            exited = open_runs.pop(name, None)
            if exited is None:  # a failure its Catch caught: the state failed, and leaves with the error added
                exited = next((run for run in reversed(runs) if run.name == name and run.status == "failed"), None)
            if exited is not None:
                exited.exited = event["timestamp"]
                exited.output = event["stateExitedEventDetails"].get("output")
                if exited.status == "running":
                    exited.status = "succeeded"
        elif kind in _TASK_SUCCEEDED:  # a Task whose earlier attempt failed and was retried: it goes on
            retried = next((run for run in reversed(runs) if run.kind == "Task"), None)
            if retried is not None and retried.status == "failed" and retried.name not in open_runs:
                retried.status, retried.exited, retried.error, retried.cause = "running", None, None, None
                retried.retries += 1
                open_runs[retried.name] = retried
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


_TASK_SUCCEEDED = {"TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"}


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
    if described.get("redriveCount"):
        times = "once" if described["redriveCount"] == 1 else f"{described['redriveCount']} times"
        lines.append(f"  redriven {times}, last at {described['redriveDate']:%Y-%m-%d %H:%M:%S}")
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


@dataclass
class Redrive:
    """A redrive that started: the same execution, its redrive count, the state it resumes at, and how many of its
    history's events came before (the redriven attempt's events follow)."""

    execution_arn: str
    count: int
    resumes_at: str
    events_before: int


def redrive(sfn: Any, execution_arn: str) -> Redrive:
    """Redrive a failed, timed-out or aborted execution (RedriveExecution): it resumes at the state that did not
    succeed. Refuses, without asking, an execution that ended in one of the workflow's Fail states."""
    described = sfn.describe_execution(executionArn=execution_arn)
    name = described["name"]
    stopped_in = unsuccessful_state(sfn, execution_arn)
    refusal = _fails_the_same_way(described, stopped_in)
    if refusal:
        raise ExecutionNotRedrivable(refusal)
    try:
        sfn.redrive_execution(executionArn=execution_arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionNotRedrivable":
            raise
        reason = sfn.describe_execution(executionArn=execution_arn).get("redriveStatusReason")
        raise ExecutionNotRedrivable(
            f"{name} cannot be redriven: {reason or exc.response['Error'].get('Message', 'Step Functions refused')}"
        ) from None
    count = int(sfn.describe_execution(executionArn=execution_arn).get("redriveCount") or 0)
    events = history(sfn, execution_arn)
    before = next(
        (
            index + 1
            for index, event in reversed(list(enumerate(events)))
            if event["type"] == "ExecutionRedriven"
            and int(event.get("executionRedrivenEventDetails", {}).get("redriveCount") or 0) == count
        ),
        len(events),
    )
    return Redrive(execution_arn, count, stopped_in[0] if stopped_in else "?", before)


def redrive_refusal(sfn: Any, execution_arn: str) -> str | None:
    """Why :func:`redrive` would refuse this execution now (Step Functions' reason, or that it would fail the same
    way), or None when it can be redriven: what a console says beside its Redrive button."""
    described = sfn.describe_execution(executionArn=execution_arn)
    if described["status"] not in TERMINAL_FAILURES:
        return f"{described['name']} is {described['status']}: only a failed, timed-out or aborted one is redriven."
    if described.get("redriveStatus") == "NOT_REDRIVABLE":
        reason = described.get("redriveStatusReason") or "Step Functions refuses"
        return f"{described['name']} cannot be redriven: {reason}"
    return _fails_the_same_way(described, unsuccessful_state(sfn, execution_arn))


def unsuccessful_state(sfn: Any, execution_arn: str) -> tuple[str, str] | None:
    """The top-level state (name, type) where the execution's last attempt stopped: the last one it entered and did
    not leave (the one a redrive resumes at); None when there is none."""
    definition = json.loads(sfn.describe_state_machine_for_execution(executionArn=execution_arn)["definition"])
    types = {name: str(state.get("Type", "")) for name, state in definition.get("States", {}).items()}
    entered: list[str] = []
    for event in history(sfn, execution_arn):
        if event["type"] == "ExecutionRedriven":
            entered.clear()
        state = (event.get("stateEnteredEventDetails") or {}).get("name")
        if isinstance(state, str) and state in types:
            entered = [name for name in entered if name != state] + [state]
        left = (event.get("stateExitedEventDetails") or {}).get("name")
        if left in entered:
            entered.remove(left)
    return (entered[-1], types[entered[-1]]) if entered else None


def _fails_the_same_way(described: dict[str, Any], stopped_in: tuple[str, str] | None) -> str | None:
    """Why redriving this execution would only fail again, or None. An execution that ended in a Fail state (input
    the product cannot read: ConvertInput's errors, caught, end in RunFailed; a run in which nothing was
    classified ends in NothingClassified) replays that Fail state when redriven."""
    if described["status"] not in TERMINAL_FAILURES:
        return None  # Step Functions says why
    error = str(described.get("error") or "")
    name = described["name"]
    in_fail_state = stopped_in is not None and stopped_in[1] == "Fail"
    if error in INPUT_ERRORS:
        return (
            f"{name} failed on its input ({error}): a redrive would fail the same way. Fix the file and upload it "
            "again; the new upload starts a new run."
        )
    if error in RECORDED_BY_WORKFLOW or in_fail_state:
        state = f" {stopped_in[0]}" if stopped_in else ""
        return (
            f"{name} ended in the workflow's Fail state{state} ({error or described['status']}): a redrive would "
            "replay that state and fail the same way. Fix the cause, then upload the file again; the new upload "
            "starts a new run."
        )
    return None
