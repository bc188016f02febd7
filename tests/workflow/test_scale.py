"""At scale: 20,000 rows in 200 shards (the session runtime's jobs hold 100 records), with jobs that run an hour
or two days of simulated time. Every id comes out once, no history event carries more than 64 KB, and the
parent execution's history does not grow with the jobs' duration."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from workflow_helpers import results_rows, write_calls

from batch_classifier_local.runtime import LocalRuntime

ROWS = 20_000
SHARDS = 200  # MaxRecordsPerJob=100 in the session runtime
LARGEST_PAYLOAD = 64 * 1024


@pytest.fixture
def job_duration(runtime: LocalRuntime) -> Iterator[Callable[[float], None]]:
    """Set the simulated duration of every local batch job, with time scaled so that two days take a second."""
    assert runtime.bedrock is not None
    saved = (runtime.time_scale, runtime.bedrock.time_scale, runtime.bedrock.job_duration_seconds)

    def set_duration(hours: float) -> None:
        runtime.time_scale = runtime.bedrock.time_scale = 1e-5
        runtime.bedrock.job_duration_seconds = hours * 3600

    yield set_duration
    runtime.time_scale, runtime.bedrock.time_scale, runtime.bedrock.job_duration_seconds = saved


def history(runtime: LocalRuntime, execution_arn: str) -> list[dict]:
    sfn = runtime.client("stepfunctions")
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def largest_payload(events: list[dict]) -> int:
    """Bytes of the largest input, output or parameters any event of the history carries."""
    sizes = [0]
    for event in events:
        for key, details in event.items():
            if key.endswith("EventDetails") and isinstance(details, dict):
                sizes += [len(str(v).encode()) for k, v in details.items() if k in {"input", "output", "parameters"}]
    return max(sizes)


def classify(runtime: LocalRuntime, tmp_path, name: str, hours: float, set_duration) -> tuple[list[dict], list[str]]:
    set_duration(hours)
    ids = write_calls(tmp_path / name, ROWS, prefix=name[0].upper())
    arn = runtime.upload(tmp_path / name)
    described = runtime.wait(arn)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert summary["rows"] == ROWS and summary["by_status"]["classified"] == ROWS
    events = history(runtime, arn)
    plan = json.loads(described["output"])["plan"]
    shards = runtime.client("s3").get_object(Bucket=plan["bucket"], Key=plan["key"])["Body"].read()
    items = json.loads(shards)
    assert len(items) == SHARDS
    # A child's input is the run and one shard: the largest of them bounds what any child state carries.
    run = json.loads(described["output"])["run"]
    child_input = max(len(json.dumps({"run": run, "shard": item})) for item in items)
    assert largest_payload(events) <= LARGEST_PAYLOAD and child_input <= LARGEST_PAYLOAD
    print(
        f"{ROWS} rows, {SHARDS} shards, jobs of {hours:g} h: {len(events)} parent history events, "
        f"largest payload {largest_payload(events)} B (a child's input at most {child_input} B)"
    )
    return events, ids


def test_200_shards_each_row_once_and_the_parent_history_does_not_grow_with_job_duration(
    runtime, tmp_path, job_duration
):
    hour, _ = classify(runtime, tmp_path, "hour.csv", 1, job_duration)
    two_days, _ = classify(runtime, tmp_path, "days.csv", 48, job_duration)
    assert abs(len(two_days) - len(hour)) <= 0.1 * len(hour)
