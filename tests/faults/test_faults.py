"""The fault suite: every way a run can go wrong, on the local runtime, each checked for what a user relies on.

Each scenario uploads a small file under faults the runtime injects (its fault plan: job statuses, record
errors, missing and malformed output lines, throttling, quota refusals, a slow model, a function that fails,
crashes or times out at each step; or bad input, odd keys, duplicate and overlapping uploads, an abort) and
checks: the execution's final status and the run's outcome; every input id exactly once in the results, with
the statuses expected; CreateModelInvocationJob calls that created jobs equal to the batch shards submitted (none
billed twice); the status table's final state; the notification sent; and, where the first attempt fails, that
a redrive of the same execution completes it. ``make test`` runs it; its summary line reads
``fault suite: N scenarios, N passed``.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from workflow_helpers import (
    results_rows,
    run_id_of_execution,
    run_item,
    shard_items,
    state_names,
    until,
    wait_for_run_status,
    write_calls,
)

from batch_classifier_local.executions import finalize_result
from batch_classifier_local.faults import FaultPlan
from batch_classifier_local.runtime import LocalRuntime

OPEN = {"Submitted", "Validating", "Scheduled", "InProgress"}
CHILD_STEPS = {"SubmitJob", "CheckJob", "ProcessShard"}  # the per-shard child workflow's
WAIT = 240  # seconds an execution may take before the scenario fails
STEPS = [
    "RegisterRun",
    "ConvertInput",
    "ShardRecords",
    "SubmitJob",
    "CheckJob",
    "ProcessShard",
    "PlanRetries",
    "FinalizeRun",
]


@dataclass
class Scenario:
    """A file of ``rows`` labelled conversations uploaded under ``plan``; what should come of it."""

    name: str
    rows: int = 200
    plan: dict[str, Any] = field(default_factory=dict)
    status: str = "SUCCEEDED"  # the execution's status after its first attempt
    redrive: bool = False  # the first attempt fails; a redrive with the faults cleared completes it
    outcome: str = "succeeded"
    by_status: dict[str, int] | None = None  # counts of the results' statuses (None: every row classified)
    error: str | None = None  # the execution's error when it ends FAILED
    # The run in the status table once the first attempt has failed: FAILED (RecordFailure marked it), SUCCEEDED
    # (FinalizeRun finished it before the invocation was lost: left alone, no failure notice) or None (no run yet).
    failed_run: str | None = "FAILED"

    def __str__(self) -> str:
        return self.name


def _function_scenarios() -> list[Scenario]:
    found = []
    for step in STEPS:
        # A transient Lambda error: the task's Retry absorbs it.
        found.append(Scenario(f"{step}-fails-once", plan={"functions": {step: {"fail": 1}}}))
        # A container that dies, and an invocation that ran but timed out: the execution stops there; a redrive
        # resumes at that state and the step, run again, must not lose, repeat or double-bill anything.
        for kind, own_error in (("crash", "Runtime.ExitError"), ("timeout", "Sandbox.Timedout")):
            # a child workflow's failure fails the Distributed Map
            error = "States.ExceedToleratedFailureThreshold" if step in CHILD_STEPS else own_error
            found.append(
                Scenario(
                    f"{step}-{kind}",
                    plan={"functions": {step: {kind: 1}}},
                    status="FAILED",
                    redrive=True,
                    error=error,
                    failed_run={("RegisterRun", "crash"): None, ("FinalizeRun", "timeout"): "SUCCEEDED"}.get(
                        (step, kind), "FAILED"
                    ),
                )
            )
    return found


SCENARIOS = [
    Scenario("all-well"),
    # Every terminal status of a batch job: the records the job did not answer go to a retry round.
    *(
        Scenario(f"job-{s.lower()}", plan={"job_statuses": {"jobs/shard-00001": s}})
        for s in ("Failed", "PartiallyCompleted", "Expired", "Stopped")
    ),
    Scenario("both-jobs-partially-completed", plan={"job_statuses": {"jobs/shard-": "PartiallyCompleted"}}),
    Scenario(
        "one-job-fails-every-round",
        plan={"job_statuses": {"shard-00001": "Failed"}},
        outcome="succeeded_with_errors",
        by_status={"classified": 100, "model_error": 100},
    ),
    Scenario(
        "every-job-fails-every-round",
        plan={"job_statuses": {"shard-": "Failed"}},
        status="FAILED",
        outcome="failed",
        by_status={"model_error": 200},
        error="NothingClassifiedError",
    ),
    # Record errors: throttling and server errors are tried again; a 400 is the record's own fault.
    Scenario("record-errors-429", plan={"record_errors": {"429": 3}}),
    Scenario("record-errors-500-503", plan={"record_errors": {"500": 2, "503": 2}}),
    Scenario("record-errors-408", plan={"record_errors": {"408": 2}}),
    Scenario("record-errors-400", plan={"record_errors": {"400": 2}}, by_status={"classified": 196, "model_error": 4}),
    Scenario(
        "record-errors-400-many",
        plan={"record_errors": {"400": 10}},
        outcome="succeeded_with_errors",
        by_status={"classified": 180, "model_error": 20},
    ),
    # Output lines absent or cut short: the records are tried again, never guessed.
    Scenario("missing-output-lines", plan={"missing_records": 2}),
    Scenario("malformed-output-lines", plan={"malformed_lines": 3}),
    Scenario("missing-and-malformed-lines", plan={"missing_records": 2, "malformed_lines": 2}),
    # Quotas, throttling and a slow model.
    Scenario("quota-refused-twice", plan={"quota_refusals": 2}),
    Scenario("quota-refused-often", plan={"quota_refusals": 6}),
    Scenario("on-demand-throttled", rows=40, plan={"throttle_on_demand": 8}),
    Scenario("on-demand-throttled-hard", rows=20, plan={"throttle_on_demand": 40}),
    Scenario("slow-model", rows=12, plan={"slow_on_demand_seconds": 0.3}),
    # Sizes around the 100-record minimum of a batch job.
    Scenario("one-row", rows=1),
    Scenario("99-rows", rows=99),
    Scenario("100-rows", rows=100),
    Scenario("101-rows", rows=101),
    Scenario("250-rows", rows=250),
    # A function that fails, crashes or times out at each step of the workflow.
    *_function_scenarios(),
]


# --- the checks ---------------------------------------------------------------------------------------------


def jobs_created(runtime: LocalRuntime) -> int:
    assert runtime.bedrock is not None
    return runtime.bedrock.stats.jobs_created


def redrive(runtime: LocalRuntime, arn: str) -> dict[str, Any]:
    runtime.client("stepfunctions").redrive_execution(executionArn=arn)
    return runtime.wait(arn, timeout=WAIT)


def check_results(
    runtime: LocalRuntime, arn: str, ids: list[str], by_status: dict[str, int] | None, outcome: str
) -> dict[str, Any]:
    """Every id exactly once, the statuses and outcome expected, and the summary agreeing with the rows."""
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids), "the results do not hold every input id exactly once"
    counts = dict(Counter(r["status"] for r in rows))
    assert counts == (by_status or {"classified": len(ids)})
    assert summary["rows"] == len(ids) and {k: n for k, n in summary["by_status"].items() if n} == counts
    assert summary["outcome"] == outcome
    return summary


def check_billing(runtime: LocalRuntime, run_id: str, created_before: int) -> list[dict[str, Any]]:
    """One job created per batch shard submitted, across rounds and redrives: nothing billed twice."""
    shards = shard_items(runtime, run_id)
    with_jobs = [s for s in shards if s.get("job_arn")]
    assert len({s["job_arn"] for s in with_jobs}) == len(with_jobs)
    assert jobs_created(runtime) - created_before == len(with_jobs)
    return shards


def check_notified(notifications: Any, run_id: str, arn: str, subject: str) -> None:
    sent = until(lambda: [n for n in notifications.about(run_id, arn) if n["subject"] == subject], subject)
    assert sent


# --- the scenarios ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario(runtime: LocalRuntime, notifications: Any, tmp_path: Path, scenario: Scenario) -> None:
    assert runtime.bedrock is not None
    path = tmp_path / f"{scenario.name}.csv"
    ids = write_calls(path, scenario.rows, prefix=f"F{zlib.crc32(scenario.name.encode()):08x}-")
    runtime.bedrock.faults = FaultPlan.from_dict(scenario.plan)
    before = jobs_created(runtime)

    arn = runtime.upload(path, f"input_data/fault-{scenario.name}.csv")
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == scenario.status, described.get("cause")
    run_id = run_id_of_execution(described)
    if scenario.error:
        assert described.get("error") == scenario.error

    if scenario.redrive:
        if scenario.failed_run is None:  # announced, with no run to mark
            assert run_item(runtime, run_id) == {}
        else:
            assert wait_for_run_status(runtime, run_id, scenario.failed_run)
        if scenario.failed_run != "SUCCEEDED":
            check_notified(notifications, run_id, arn, "Batch classification run failed")
        runtime.bedrock.faults = FaultPlan()
        described = redrive(runtime, arn)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        assert described.get("redriveCount") == 1

    check_results(runtime, arn, ids, scenario.by_status, scenario.outcome)
    shards = check_billing(runtime, run_id, before)
    final = "FAILED" if scenario.outcome == "failed" else "SUCCEEDED"
    assert wait_for_run_status(runtime, run_id, final)
    assert all(s["shard_status"] == "PROCESSED" for s in shards), sorted((s["sk"], s["shard_status"]) for s in shards)
    check_notified(notifications, run_id, arn, f"Batch classification run {scenario.outcome}")


# --- bad input: a named error, the run failed and announced, nothing paid ----------------------------------------


def _header_only(path: Path) -> None:
    path.write_text("conversation_id,conversation,class\n", encoding="utf-8")


def _no_text_column(path: Path) -> None:
    path.write_text("conversation_id,words\nA1,hello\n", encoding="utf-8")


def _not_utf8(path: Path) -> None:
    path.write_bytes("conversation_id,conversation\nA1,caf\xe9 cr\xe8me \x81\x8d\n".encode("latin-1"))


def _not_a_workbook(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 this is not really a workbook")


BAD_INPUTS = [
    ("header-only.csv", _header_only, "input_data/fault-header-only.csv", "EmptyInputError"),
    ("no-text-column.csv", _no_text_column, "input_data/fault-no-text-column.csv", "MissingColumnError"),
    ("not-utf8.csv", _not_utf8, "input_data/fault-not-utf8.csv", "InputEncodingError"),
    ("broken.xlsx", _not_a_workbook, "input_data/fault-broken.xlsx", "InputFormatError"),
    ("unknown-task.csv", lambda p: write_calls(p, 5), "input_data/no-such-task/unknown-task.csv", "TaskError"),
    ("notes.pdf", lambda p: p.write_bytes(b"%PDF-1.4"), "input_data/fault-notes.pdf", "InputFormatError"),
]


@pytest.mark.parametrize(("name", "make", "key", "error"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(
    runtime: LocalRuntime, notifications: Any, tmp_path: Path, name: str, make: Any, key: str, error: str
) -> None:
    path = tmp_path / name
    make(path)
    before = jobs_created(runtime)
    arn = runtime.upload(path, key)
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "FAILED" and described.get("error") == error, described.get("cause")
    assert state_names(runtime, arn)[-3:] == ["MarkRunFailed", "NotifyRunFailed", "RunFailed"]
    run_id = run_id_of_execution(described)
    item = wait_for_run_status(runtime, run_id, "FAILED")
    assert item.get("error") == error
    assert jobs_created(runtime) == before
    sent = until(lambda: notifications.about(arn), "the failure notice")
    assert [n["subject"] for n in sent] == ["Batch classification run failed"]
    assert error in sent[0]["message"]


def test_a_task_whose_model_cannot_be_priced_is_refused_before_anything_is_spent(
    runtime: LocalRuntime, notifications: Any, tmp_path: Path
) -> None:
    assert runtime.stack is not None
    task = (Path(__file__).resolve().parents[2] / "layers/common/batch_classifier/tasks/travel.yaml").read_text()
    replaced = {"model_id:": "model_id: example.unpriced-model-v1", "invocation_type:": "invocation_type: Converse"}
    task = "\n".join(
        next((new for old, new in replaced.items() if line.startswith(old)), line) for line in task.splitlines()
    )
    task = task.replace("name: travel", "name: unpriced", 1)
    s3 = runtime.client("s3")
    s3.put_object(Bucket=runtime.stack.customer_bucket, Key="config/tasks/unpriced.yaml", Body=task.encode())
    write_calls(tmp_path / "calls.csv", 20)
    before = jobs_created(runtime)
    arn = runtime.upload(tmp_path / "calls.csv", "input_data/unpriced/calls.csv")
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "FAILED" and described.get("error") == "TaskError", described.get("cause")
    assert "cannot price" in described.get("cause", "")
    assert jobs_created(runtime) == before
    until(lambda: notifications.about(arn), "the failure notice")


def test_an_object_deleted_before_it_is_read_is_a_named_input_error(runtime: LocalRuntime, notifications: Any) -> None:
    assert runtime.stack is not None
    # The event of an upload delivered after the object was deleted (EventBridge delivers late, never early).
    event = {"bucket": runtime.stack.customer_bucket, "key": "input_data/fault-gone.csv", "size": 120, "etag": "0" * 32}
    arn = runtime.start_execution(runtime.stack.state_machine_arn, event, hint="gone")
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "FAILED" and described.get("error") == "InputNotFoundError", described.get("cause")
    assert "is not there any more" in described.get("cause", "")
    until(lambda: notifications.about(arn), "the failure notice")


def test_rejected_rows_are_reported_and_spreadsheet_safe(runtime: LocalRuntime, tmp_path: Path) -> None:
    path = tmp_path / "formula-ids.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["conversation_id", "conversation", "class"])
        writer.writerow(["=cmd|' /C calc'!A0", "", "Complaint"])  # no text: rejected
        writer.writerow(["+SUM(A1)", "   ", "Complaint"])
        for i in range(1, 11):
            writer.writerow([f"OK{i}", f"User: refund {i} please.", "Refund Issues"])
    arn = runtime.upload(path, "input_data/fault-formula-ids.csv")
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    _, rows = results_rows(runtime, arn)
    assert Counter(r["status"] for r in rows) == {"classified": 10, "invalid_input": 2}
    result = finalize_result(runtime.client("stepfunctions"), arn)
    assert result is not None
    rejects = next(u for u in result["outputs"] if u.endswith("rejects.csv"))
    bucket, key = rejects.removeprefix("s3://").split("/", 1)
    text = runtime.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig")
    cells = [cell for row in csv.reader(text.splitlines()) for cell in row]
    assert "=cmd|' /C calc'!A0" not in cells and "'=cmd|' /C calc'!A0" in cells
    assert not any(cell[:1] in "=+-@" for cell in cells if cell)


# --- keys, duplicates, overlapping uploads, an abort --------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "input_data/fault-calls with spaces.csv",
        "input_data/fault-calls+plus.csv",
        "input_data/fault-calls 100%25 done.csv",
        "input_data/fault-appels-été-ü.csv",
    ],
    ids=["space", "plus", "percent", "non-ascii"],
)
def test_a_key_with_special_characters_is_classified(runtime: LocalRuntime, tmp_path: Path, key: str) -> None:
    ids = write_calls(tmp_path / "calls.csv", 30, prefix="K")
    arn = runtime.upload(tmp_path / "calls.csv", key)
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    check_results(runtime, arn, ids, None, "succeeded")


def test_a_folder_starts_no_run_and_no_notice(runtime: LocalRuntime, notifications: Any) -> None:
    assert runtime.stack is not None
    sfn = runtime.client("stepfunctions")

    def folder_execution() -> str | None:
        for e in sfn.list_executions(stateMachineArn=runtime.stack.state_machine_arn)["executions"]:
            if "fault-folder/" in sfn.describe_execution(executionArn=e["executionArn"])["input"]:
                return str(e["executionArn"])
        return None

    runtime.client("s3").put_object(Bucket=runtime.stack.customer_bucket, Key="input_data/fault-folder/", Body=b"")
    arn = until(folder_execution, "the folder's execution")
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "SUCCEEDED" and state_names(runtime, arn)[-1] == "FolderIgnored"
    # Nothing to wait for: the workflow's notifications are its own states' sns:Publish, which the local SNS delivers
    # to the queue as it publishes, and RecordFailure's (after an event) follow only FAILED, TIMED_OUT and ABORTED.
    assert notifications.about(arn, run_id_of_execution(described)) == []


def test_the_same_upload_delivered_twice_is_one_run(runtime: LocalRuntime, tmp_path: Path) -> None:
    assert runtime.stack is not None
    ids = write_calls(tmp_path / "twice.csv", 30, prefix="T")
    before = jobs_created(runtime)
    first = runtime.upload(tmp_path / "twice.csv", "input_data/fault-twice.csv")
    described = runtime.wait(first, timeout=WAIT)
    again = runtime.start_execution(runtime.stack.state_machine_arn, json.loads(described["input"]), hint="again")
    repeated = runtime.wait(again, timeout=WAIT)
    assert repeated["status"] == "SUCCEEDED" and state_names(runtime, again)[-1] == "DuplicateRunIgnored"
    check_results(runtime, first, ids, None, "succeeded")
    check_billing(runtime, run_id_of_execution(described), before)


def test_an_overwritten_key_classifies_each_upload_as_it_was_uploaded(runtime: LocalRuntime, tmp_path: Path) -> None:
    first_ids = write_calls(tmp_path / "first.csv", 40, prefix="A")
    second_ids = write_calls(tmp_path / "second.csv", 25, prefix="B")
    key = "input_data/fault-overwritten.csv"
    first = runtime.upload(tmp_path / "first.csv", key)
    second = runtime.upload(tmp_path / "second.csv", key)  # a moment later, before the first run reads it
    one, two = runtime.wait(first, timeout=WAIT), runtime.wait(second, timeout=WAIT)
    assert two["status"] == "SUCCEEDED", two.get("cause")
    check_results(runtime, second, second_ids, None, "succeeded")
    if one["status"] == "SUCCEEDED":  # read before the second upload replaced it
        check_results(runtime, first, first_ids, None, "succeeded")
    else:  # replaced first: a named error, and the second upload is not classified twice
        assert one.get("error") == "InputChangedError", one.get("cause")


def test_concurrent_uploads_each_get_their_own_run(runtime: LocalRuntime, tmp_path: Path) -> None:
    files = {
        name: write_calls(tmp_path / f"{name}.csv", rows, prefix=name)
        for name, rows in (("X", 150), ("Y", 60), ("Z", 120))
    }
    arns = {name: runtime.upload(tmp_path / f"{name}.csv", f"input_data/fault-concurrent-{name}.csv") for name in files}
    for name, arn in arns.items():
        described = runtime.wait(arn, timeout=WAIT)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        check_results(runtime, arn, files[name], None, "succeeded")


def _abort_while_jobs_run(runtime: LocalRuntime, path: Path) -> tuple[str, str, list[dict[str, Any]]]:
    """Upload, abort the execution while its two batch jobs run, and check RecordFailure stopped them."""
    assert runtime.bedrock is not None
    arn = runtime.upload(path, "input_data/fault-aborted.csv")
    stepfunctions = runtime.client("stepfunctions")
    run_id = run_id_of_execution(stepfunctions.describe_execution(executionArn=arn))

    def running_jobs() -> list[dict[str, Any]]:
        batch = [s for s in shard_items(runtime, run_id) if s["kind"] == "batch"]
        return batch if len(batch) == 2 and all(s.get("shard_status") == "InProgress" for s in batch) else []

    jobs = until(running_jobs, "the run's two batch jobs to be InProgress")
    answered = runtime.bedrock.stats.records_answered
    until(lambda: runtime.bedrock.stats.records_answered > answered, "the jobs to answer some of their records")
    stops_before = runtime.bedrock.stats.stop_calls

    stepfunctions.stop_execution(executionArn=arn, error="OperatorAborted", cause="aborted by the test")

    failed = until(lambda: (item := run_item(runtime, run_id)).get("run_status") == "FAILED" and item, "the run FAILED")
    assert failed["error"] in {"OperatorAborted", "ABORTED"}  # moto's DescribeExecution drops StopExecution's error
    assert runtime.bedrock.stats.stop_calls - stops_before == len(jobs)
    bedrock = runtime.client("bedrock")
    for job in jobs:
        # Stopping in the status table when RecordFailure stopped it (a redrive's CheckJob reads it on to Stopped).
        shard = next(s for s in shard_items(runtime, run_id) if s["sk"] == job["sk"])
        assert shard["shard_status"] == "Stopping", shard
        assert shard["stop_reason"].endswith("ABORTED")
        until(
            lambda arn=job["job_arn"]: bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopped",
            f"{job['job_arn']} to be Stopped",
        )
    assert not {s["shard_status"] for s in shard_items(runtime, run_id)} & OPEN

    return arn, run_id, jobs


def test_an_aborted_execution_stops_the_jobs_it_started_and_a_redrive_loses_no_row(
    runtime: LocalRuntime, notifications: Any, tmp_path: Path
) -> None:
    ids = write_calls(tmp_path / "aborted.csv", 250, prefix="A")
    assert runtime.bedrock is not None
    runtime.bedrock.job_duration_seconds = 36_000  # 10 simulated hours: the jobs run while the execution is aborted
    try:
        arn, run_id, jobs = _abort_while_jobs_run(runtime, tmp_path / "aborted.csv")
    finally:
        runtime.bedrock.job_duration_seconds = None  # the retry round's jobs end soon
    check_notified(notifications, run_id, arn, "Batch classification run failed")
    stepfunctions = runtime.client("stepfunctions")
    creates_before = runtime.bedrock.stats.create_calls
    # A redrive keeps what the stopped jobs answered and sends the rest again (a retry round), billing no shard twice.
    stepfunctions.redrive_execution(executionArn=arn)
    described = runtime.wait(arn, timeout=WAIT)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    shards = {s["sk"]: s for s in shard_items(runtime, run_id)}
    for job in jobs:
        assert shards[job["sk"]]["job_arn"] == job["job_arn"]  # the stopped job stands: no second job
        assert shards[job["sk"]]["shard_status"] == "PROCESSED"
    retried = [s for s in shards.values() if s["sk"].startswith("SHARD#retry")]
    assert retried, "the records the stopped jobs did not answer go in a retry round"
    retry_jobs = [s for s in retried if s["kind"] == "batch"]
    assert runtime.bedrock.stats.create_calls - creates_before == len(retry_jobs)
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert summary["by_status"]["classified"] == 250
    wait_for_run_status(runtime, run_id, "SUCCEEDED")
    check_notified(notifications, run_id, arn, "Batch classification run succeeded")


def test_a_run_above_the_spend_cap_submits_nothing_and_a_redrive_after_raising_it_completes(
    runtime: LocalRuntime, notifications: Any, tmp_path: Path
) -> None:
    ids = write_calls(tmp_path / "capped.csv", 150, prefix="CAP")
    before = jobs_created(runtime)
    runtime.update_function_environment("ShardRecordsFunction", MAX_RUN_COST_USD="0.0001")
    try:
        arn = runtime.upload(tmp_path / "capped.csv", "input_data/fault-capped.csv")
        described = runtime.wait(arn, timeout=WAIT)
        assert described["status"] == "FAILED" and described.get("error") == "SpendCapError", described.get("cause")
        assert "above the cap of $0.00" in described["cause"] and "nothing was submitted" in described["cause"]
        run_id = run_id_of_execution(described)
        item = wait_for_run_status(runtime, run_id, "FAILED")
        assert float(item["preflight"]["estimated_usd"]["N"]) > 0.0001  # a map keeps its typed values
        assert jobs_created(runtime) == before and shard_items(runtime, run_id) == []
        check_notified(notifications, run_id, arn, "Batch classification run failed")
    finally:
        runtime.update_function_environment("ShardRecordsFunction", MAX_RUN_COST_USD="0")  # the cap lifted
    described = redrive(runtime, arn)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    summary = check_results(runtime, arn, ids, None, "succeeded")
    assert summary["cost"]["estimated_usd"] > 0 and summary["cost"]["cap_usd"] is None
    assert 0.2 < summary["cost"]["billed_to_estimate"] < 5
    check_billing(runtime, run_id, before)
