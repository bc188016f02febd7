"""Helpers of the workflow tests: the paths they read, and what they look at in an execution."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from batch_classifier_local.executions import finalize_result
from batch_classifier_local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-data" / "travel_calls.csv"
SEED = ROOT.parent / "shared" / "data"


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
