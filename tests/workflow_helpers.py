"""Helpers of the workflow tests: the paths they read, and what they look at in an execution."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from batch_classifier.runs import run_id_of
from batch_classifier.workflow import ObjectCreated
from batch_classifier_cli.runtimes import Remote
from batch_classifier_local.executions import finalize_result
from batch_classifier_local.faults import FaultPlan
from batch_classifier_local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample-data" / "travel_calls.csv"
SEED = ROOT.parent / "shared" / "data"
# The states a run that succeeds in one round goes through, in order.
HAPPY = [
    "RegisterRun",
    "IsDuplicateRun?",
    "ConvertInput",
    "ShardRecords",
    "ProcessShards",
    "PlanRetries",
    "RetryNeeded?",
    "FinalizeRun",
    "AnythingClassified?",
    "NotifyRunCompleted",
    "RunSucceeded",
]


def state_names(runtime: LocalRuntime, execution_arn: str) -> list[str]:
    """Top-level and Map-inner state names in the order they were entered."""
    events = runtime.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def results_rows(runtime: LocalRuntime, execution_arn: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The summary and the CSV results of an execution that reached FinalizeRun."""
    result = finalize_result(runtime.client("stepfunctions"), execution_arn)
    assert result is not None, f"{execution_arn} did not reach FinalizeRun"
    s3 = runtime.client("s3")
    bucket, key = result["summary"].removeprefix("s3://").split("/", 1)
    summary = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    csv_uri = next(u for u in result["outputs"] if u.endswith(".csv") and not u.endswith("rejects.csv"))
    body = s3.get_object(Bucket=bucket, Key=csv_uri.removeprefix("s3://").split("/", 1)[1])["Body"].read()
    return summary, list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def write_calls(path: Path, rows: int, prefix: str = "C") -> list[str]:
    """A labelled CSV of ``rows`` distinct conversations; returns their ids."""
    classes = ["Booking Inquiry", "Refund Issues", "Complaint", "Technical Support", "Loyalty Program"]
    ids = []
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["conversation_id", "conversation", "class"])
        for i in range(1, rows + 1):
            label = classes[i % len(classes)]
            ids.append(f"{prefix}{i:05d}")
            writer.writerow([ids[-1], f"User: ticket {prefix}{i} is about my {label.lower()}.\nAgent: I see.", label])
    return ids


def shard_items(runtime: LocalRuntime, run_id: str) -> list[dict]:
    """The run's shard items in the status table, as plain values."""
    found = runtime.client("dynamodb").query(
        TableName=runtime.stack.outputs["RunsTableName"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :shard)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":shard": {"S": "SHARD#"}},
        ConsistentRead=True,
    )["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in found]


def run_id_of_execution(described: dict) -> str:
    return run_id_of(ObjectCreated.model_validate(json.loads(described["input"])))


def wait_for_run_status(runtime: LocalRuntime, run_id: str, status: str) -> dict:
    table = runtime.client("dynamodb")
    deadline = time.monotonic() + 20
    while True:
        item = table.get_item(
            TableName=runtime.stack.outputs["RunsTableName"], Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}}
        ).get("Item", {})
        if item.get("run_status", {}).get("S") == status:
            return {k: next(iter(v.values())) for k, v in item.items()}
        assert time.monotonic() < deadline, f"run {run_id} is {item.get('run_status')}, not {status}"
        time.sleep(0.2)


def clear_faults(runtime: LocalRuntime) -> None:
    """No fault injected: neither the tests' own (``fail_next``) nor the runtime's fault plan."""
    runtime.failures.clear()
    assert runtime.bedrock is not None
    runtime.bedrock.faults = FaultPlan()


def run_item(runtime: LocalRuntime, run_id: str) -> dict[str, Any]:
    """The run's item in the status table, as plain values ({} when there is none)."""
    assert runtime.stack is not None
    item = (
        runtime.client("dynamodb")
        .get_item(
            TableName=runtime.stack.outputs["RunsTableName"],
            Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    return {k: next(iter(v.values())) for k, v in item.items()}


def until(condition: Any, what: str, seconds: float = 60) -> Any:
    """What ``condition()`` returns once it is truthy; fails the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def as_served(runtime: LocalRuntime, console: str | None = None) -> Remote:
    """The session's runtime as the CLI's commands find a running ``batch-classifier serve`` (its console at
    ``console``)."""
    assert runtime.stack is not None and runtime.bedrock is not None
    return Remote(
        runtime.endpoint, runtime.bedrock.url, runtime.stack.outputs, runtime.stack.state_machine_arn, console=console
    )
