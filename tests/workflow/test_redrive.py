"""Redrive on the local runtime: RedriveExecution reruns the same execution from the state that failed (same ARN,
``redriveCount``, ``ExecutionRedriven`` in the history), through boto3 and through `batch-classifier redrive`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from workflow_helpers import (
    HAPPY,
    as_served,
    results_rows,
    run_id_of_execution,
    run_item,
    shard_items,
    until,
    write_calls,
)

from batch_classifier_cli import local_commands, runtimes
from batch_classifier_cli.runtimes import LocalRuntimeError
from batch_classifier_local.executions import ExecutionNotRedrivable, format_execution, history, redrive
from batch_classifier_local.runtime import LocalRuntime

# What follows a ProcessShards that succeeds with nothing to retry.
AFTER_THE_MAP = HAPPY[HAPPY.index("PlanRetries") :]


def run(runtime: LocalRuntime, path: Path) -> tuple[str, dict]:
    arn = runtime.upload(path)
    return arn, runtime.wait(arn)


def attempt_states(events: list[dict], attempt: int) -> list[str]:
    """The states entered in one attempt of an execution (0: before any redrive)."""
    seen, names = 0, []
    for event in events:
        if event["type"] == "ExecutionRedriven":
            seen += 1
        elif seen == attempt and "stateEnteredEventDetails" in event:
            names.append(event["stateEnteredEventDetails"]["name"])
    return names


@pytest.fixture
def served_by(runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> LocalRuntime:
    """The session's runtime as `batch-classifier serve` would be found by the CLI's commands."""
    remote = as_served(runtime)
    monkeypatch.setattr(runtimes, "running_server", lambda: remote)
    return runtime


@pytest.fixture
def failure_notices(runtime: LocalRuntime):
    """Messages published to the run events topic from now on, read from an SQS queue subscribed to it."""
    sqs, sns = runtime.client("sqs"), runtime.client("sns")
    queue = sqs.create_queue(QueueName=f"run-events-{time.monotonic_ns()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=runtime.stack.outputs["RunEventsTopicArn"], Protocol="sqs", Endpoint=queue_arn)
    received: list[dict] = []

    def read(execution_arn: str) -> list[dict]:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [m for m in received if m.get("execution") == execution_arn and m.get("status") == "FAILED"]

    return read


def test_the_cli_redrives_a_failed_map_in_the_same_execution_without_a_second_job(served_by, tmp_path, capsys):
    runtime = served_by
    ids = write_calls(tmp_path / "redrive.csv", 250, prefix="R")
    # One child fails, late (after the others succeeded); nothing is tolerated, so the Distributed Map fails.
    runtime.fail_next(
        "ProcessShardFunction", when=lambda event: event["shard"]["name"] == "shard-00002", after_seconds=6
    )
    arn, described = run(runtime, tmp_path / "redrive.csv")
    assert described["status"] == "FAILED"
    assert described["error"] == "States.ExceedToleratedFailureThreshold"
    assert described["redriveCount"] == 0 and described["redriveStatus"] == "REDRIVABLE"
    # RecordFailure (fired by the execution's status change) marks the run failed.
    until(
        lambda: run_item(runtime, run_id_of_execution(described)).get("run_status") == "FAILED",
        "the run to be marked FAILED",
    )
    sfn = runtime.client("stepfunctions")
    executions_before = sfn.list_executions(stateMachineArn=runtime.stack.state_machine_arn)["executions"]
    events_before = history(sfn, arn)
    jobs_before = runtime.bedrock.stats.create_calls
    processed = []  # the shards ProcessShard is invoked for from now on (a "failure" that never fails)
    runtime.fail_next("ProcessShardFunction", when=lambda event: processed.append(event["shard"]["name"]), times=999)

    name = arn.rsplit(":", 1)[-1]
    assert local_commands.cmd_redrive(argparse.Namespace(execution=name)) == 0
    printed = capsys.readouterr().out
    assert f"redriving execution {name} at ProcessShards (same execution ARN; redriven once)" in printed
    assert "status   SUCCEEDED" in printed and "redriven once" in printed

    final = sfn.describe_execution(executionArn=arn)
    assert final["status"] == "SUCCEEDED" and final["redriveCount"] == 1 and final["redriveDate"]
    assert final["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."
    # The same execution: no new one, the history goes on after an ExecutionRedriven event (ids continue).
    executions = sfn.list_executions(stateMachineArn=runtime.stack.state_machine_arn)["executions"]
    assert len(executions) == len(executions_before)
    assert [e["redriveCount"] for e in executions if e["executionArn"] == arn] == [1]
    events = history(sfn, arn)
    assert events[: len(events_before)] == events_before
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    redriven = events[len(events_before)]
    assert redriven["type"] == "ExecutionRedriven" and redriven["executionRedrivenEventDetails"]["redriveCount"] == 1
    # Only the failed state and what follows ran again, with the input the failed state had.
    assert attempt_states(events, 1) == ["ProcessShards", *AFTER_THE_MAP]
    entered = [e["stateEnteredEventDetails"] for e in events if "stateEnteredEventDetails" in e]
    map_inputs = [json.loads(d["input"]) for d in entered if d["name"] == "ProcessShards"]
    assert map_inputs[-1] == map_inputs[-2]
    # In the map, only the child that failed ran again; its shard's job was submitted once, before.
    assert processed == ["shard-00002"]
    assert runtime.bedrock.stats.create_calls == jobs_before
    assert {s["shard_status"] for s in shard_items(runtime, run_id_of_execution(described))} == {"PROCESSED"}
    _, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    until(
        lambda: run_item(runtime, run_id_of_execution(described)).get("run_status") == "SUCCEEDED",
        "the run to be SUCCEEDED",
    )


def test_a_redriven_execution_that_fails_again_is_announced_again(runtime, tmp_path, failure_notices):
    write_calls(tmp_path / "twice-failed.csv", 60, prefix="F")
    runtime.fail_next("ProcessShardFunction", times=2)  # the first attempt and the redrive
    arn, described = run(runtime, tmp_path / "twice-failed.csv")
    assert described["status"] == "FAILED"
    until(lambda: len(failure_notices(arn)) == 1, "RecordFailure's first notice")
    sfn = runtime.client("stepfunctions")
    assert redrive(sfn, arn).count == 1
    again = runtime.wait(arn)
    assert again["status"] == "FAILED" and again["redriveCount"] == 1
    assert again["error"] == "States.ExceedToleratedFailureThreshold"
    # The second stop is a status change of its own: RecordFailure records and announces it too.
    notices = until(lambda: len(failure_notices(arn)) == 2 and failure_notices(arn), "RecordFailure's second notice")
    assert [n["error"] for n in notices] == ["States.ExceedToleratedFailureThreshold"] * 2
    assert run_item(runtime, run_id_of_execution(again)).get("run_status") == "FAILED"
    # A second redrive goes on from the same state.
    assert redrive(sfn, arn).count == 2
    final = runtime.wait(arn)
    assert final["status"] == "SUCCEEDED" and final["redriveCount"] == 2
    assert attempt_states(history(sfn, arn), 2) == ["ProcessShards", *AFTER_THE_MAP]
    assert "redriven 2 times" in format_execution(sfn, arn)


def test_a_succeeded_execution_is_not_redriven(runtime, tmp_path):
    write_calls(tmp_path / "fine.csv", 20, prefix="G")
    arn, described = run(runtime, tmp_path / "fine.csv")
    assert described["status"] == "SUCCEEDED"
    assert described["redriveStatus"] == "NOT_REDRIVABLE"
    sfn = runtime.client("stepfunctions")
    with pytest.raises(ClientError) as refused:
        sfn.redrive_execution(executionArn=arn)
    assert refused.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert "Execution is SUCCEEDED and cannot be redriven." in refused.value.response["Error"]["Message"]
    with pytest.raises(ExecutionNotRedrivable, match="cannot be redriven: Execution is SUCCEEDED"):
        redrive(sfn, arn)
    assert sfn.describe_execution(executionArn=arn)["redriveCount"] == 0
    with pytest.raises(ClientError) as missing:
        sfn.redrive_execution(executionArn=arn + "-not-there")
    assert missing.value.response["Error"]["Code"] == "ExecutionDoesNotExist"


def test_an_input_error_is_not_redriven_by_the_cli_as_it_would_fail_the_same_way(served_by, tmp_path):
    runtime = served_by
    source = tmp_path / "unreadable.csv"
    source.write_text("ticket,body\n1,hello\n", encoding="utf-8")  # no 'conversation' column for the travel task
    arn, described = run(runtime, source)
    assert described["status"] == "FAILED" and described["error"] == "MissingColumnError"
    name = arn.rsplit(":", 1)[-1]
    with pytest.raises(LocalRuntimeError, match="Fix the file and upload it again") as refused:
        local_commands.cmd_redrive(argparse.Namespace(execution=name))
    assert str(refused.value).startswith(f"{name} failed on its input (MissingColumnError): a redrive would fail")
    sfn = runtime.client("stepfunctions")
    assert sfn.describe_execution(executionArn=arn)["redriveCount"] == 0
    # RedriveExecution itself does what Step Functions does: it replays the Fail state the execution ended in.
    sfn.redrive_execution(executionArn=arn)
    again = runtime.wait(arn)
    assert again["status"] == "FAILED" and again["error"] == "MissingColumnError" and again["redriveCount"] == 1
    assert attempt_states(history(sfn, arn), 1) == ["RunFailed"]
