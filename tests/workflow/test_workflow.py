"""The workflow as a workflow: uploads go through EventBridge into the real state machine, which runs the real
handlers against moto and the local Bedrock. Histories are asserted by state name; outputs row by row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from workflow_helpers import (
    HAPPY,
    ROOT,
    SAMPLE,
    results_rows,
    run_id_of_execution,
    shard_items,
    state_names,
    wait_for_run_status,
    write_calls,
)

from batch_classifier.tasks import load_task
from batch_classifier_local.analytics import mirror, query
from batch_classifier_local.executions import format_execution, list_all
from batch_classifier_local.faults import FaultPlan
from batch_classifier_local.runtime import LocalRuntime
from batch_classifier_local.template import load_template


def run(runtime: LocalRuntime, path: Path, key: str | None = None) -> tuple[str, dict]:
    arn = runtime.upload(path, key)
    return arn, runtime.wait(arn)


def test_the_sample_file_runs_end_to_end(runtime, tmp_path):
    source = tmp_path / "travel_calls.csv"
    shutil.copy(SAMPLE, source)
    arn, described = run(runtime, source)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert state_names(runtime, arn) == HAPPY
    shards = shard_items(runtime, run_id_of_execution(described))
    assert sorted((s["kind"], s["shard_status"]) for s in shards) == [
        ("batch", "PROCESSED"),
        ("batch", "PROCESSED"),
        ("on_demand", "PROCESSED"),
    ]
    assert all(s["job_arn"] for s in shards if s["kind"] == "batch")
    summary, rows = results_rows(runtime, arn)
    source_ids = [
        line.split(",", 1)[0] for line in SAMPLE.read_text(encoding="utf-8").splitlines()[1:] if line[:1] == "T"
    ]
    assert sorted(r["id"] for r in rows) == sorted(set(source_ids)) and len(rows) == summary["rows"]
    assert summary["by_status"]["classified"] == summary["rows"]
    assert summary["outcome"] == "succeeded"
    assert 0.0 < summary["evaluation"]["accuracy"] <= 1.0


def test_a_small_file_takes_the_on_demand_path(runtime, tmp_path):
    ids = write_calls(tmp_path / "small.csv", 40, prefix="S")
    jobs_before = runtime.bedrock.stats.create_calls
    arn, described = run(runtime, tmp_path / "small.csv")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert runtime.bedrock.stats.create_calls == jobs_before
    shards = shard_items(runtime, run_id_of_execution(described))
    assert [(s["kind"], int(s["records"])) for s in shards] == [("on_demand", 40)]
    _, rows = results_rows(runtime, arn)
    assert [r["id"] for r in rows] == ids


@pytest.mark.seed
def test_the_seed_workbook_gives_every_row_once(runtime, tmp_path, seed_data):
    source = tmp_path / "travel_conversations_labeled.xlsx"
    shutil.copy(seed_data / source.name, source)
    arn, described = run(runtime, source)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    summary, rows = results_rows(runtime, arn)
    assert len(rows) == 1190 and len({r["id"] for r in rows}) == 1190
    assert summary["evaluation"]["rows"] == 1190
    print(f"offline classifier accuracy on the seed workbook: {summary['evaluation']['accuracy']:.1%}")


def test_a_partially_completed_job_has_its_failed_records_retried(runtime, tmp_path):
    ids = write_calls(tmp_path / "partial.csv", 150, prefix="P")
    runtime.bedrock.faults = FaultPlan(job_statuses={"shard-00001": "PartiallyCompleted"}, record_errors={"429": 3})
    arn, described = run(runtime, tmp_path / "partial.csv")
    assert described["status"] == "SUCCEEDED", described.get("cause")
    names = state_names(runtime, arn)
    assert names.count("PlanRetries") == 2  # the retry round, then nothing left to retry
    assert names.count("ProcessShards") == 2
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert summary["by_status"]["classified"] == 150


def test_a_duplicate_event_starts_no_second_run(runtime, tmp_path):
    write_calls(tmp_path / "twice.csv", 30, prefix="D")
    _, described = run(runtime, tmp_path / "twice.csv", "input_data/twice.csv")
    assert described["status"] == "SUCCEEDED"
    second, described = run(runtime, tmp_path / "twice.csv", "input_data/twice.csv")  # same bytes, same ETag
    assert described["status"] == "SUCCEEDED"
    assert state_names(runtime, second) == ["RegisterRun", "IsDuplicateRun?", "DuplicateRunIgnored"]


def test_a_console_folder_starts_no_run_and_no_failure_notice(runtime, tmp_path):
    folder = tmp_path / "empty"
    folder.write_bytes(b"")
    _, described = run(runtime, folder, "input_data/new-folder/")
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["run"]["ignored"].startswith("input_data/new-folder/ is a folder")


def test_console_views_and_sql_over_the_results(runtime, tmp_path):
    write_calls(tmp_path / "views.csv", 60, prefix="V")
    arn, described = run(runtime, tmp_path / "views.csv")
    assert described["status"] == "SUCCEEDED"
    sfn = runtime.client("stepfunctions")
    text = format_execution(sfn, arn)
    assert "status   SUCCEEDED" in text
    for state in ("RegisterRun", "ConvertInput", "ProcessShards", "FinalizeRun"):
        assert state in text
    names = [row["name"] for row in list_all(sfn)]
    assert arn.rsplit(":", 1)[-1] in names
    files = mirror(runtime.client("s3"), runtime.stack.internal_bucket, tmp_path / "mirror")
    table = runtime.stack.outputs.get("AnalyticsTableName", "results")
    columns, rows = query(
        files, f"SELECT status, count(*) AS n FROM {table} WHERE source_key LIKE '%views.csv' GROUP BY status"
    )
    assert columns == ["status", "n"] and rows == [("classified", 60)]


def test_an_unreadable_file_fails_the_run_with_a_named_error(runtime, tmp_path):
    source = tmp_path / "calls.csv"
    source.write_text("ticket,body\n1,hello\n", encoding="utf-8")  # no 'conversation' column for the travel task
    arn, described = run(runtime, source)
    assert described["status"] == "FAILED"
    assert described["error"] == "MissingColumnError"
    assert "its columns are: 'ticket', 'body'" in described["cause"]
    assert state_names(runtime, arn)[-3:] == ["MarkRunFailed", "NotifyRunFailed", "RunFailed"]


def test_a_file_of_only_invalid_rows_still_gives_every_row_a_status(runtime, tmp_path):
    source = tmp_path / "empty-texts.csv"
    source.write_text("conversation_id,conversation\n1,\n2,   \n", encoding="utf-8")
    arn, described = run(runtime, source)
    # Nothing was classified: the run fails, but every row still comes out with its status.
    assert (described["status"], described["error"]) == ("FAILED", "NothingClassifiedError")
    assert state_names(runtime, arn)[-3:] == ["AnythingClassified?", "NotifyNothingClassified", "NothingClassified"]
    summary, rows = results_rows(runtime, arn)
    assert [(r["id"], r["status"]) for r in rows] == [("1", "invalid_input"), ("2", "invalid_input")]
    assert summary["by_status"]["invalid_input"] == 2
    assert summary["outcome"] == "failed" and summary["headline"].startswith("no row was classified")
    item = wait_for_run_status(runtime, run_id_of_execution(described), "FAILED")
    assert (item["outcome"], item["error"]) == ("failed", "NothingClassifiedError")


def test_a_run_whose_jobs_all_fail_is_a_failed_run_with_every_row_out(runtime, tmp_path):
    ids = write_calls(tmp_path / "doomed.csv", 100, prefix="F")
    runtime.bedrock.faults = FaultPlan(job_statuses={"shard-": "Failed"})  # every job, the retry rounds' too
    arn, described = run(runtime, tmp_path / "doomed.csv")
    assert (described["status"], described["error"]) == ("FAILED", "NothingClassifiedError")
    assert state_names(runtime, arn).count("ProcessShards") == 3  # the run's round and two retry rounds
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"model_error"} and summary["outcome"] == "failed"


def test_runs_record_their_task_version_and_the_named_query_gives_accuracy_by_version(runtime, tmp_path):
    """Each run records its task's version (label @ content hash) in the status table, summary.json and the
    analytics table; the template's "Accuracy by task version" query, run locally, tells the versions apart."""
    s3 = runtime.client("s3")
    bucket = runtime.stack.customer_bucket
    base = load_task("travel")
    hashes = {}
    for label, persona in (("v1", base.persona), ("v2", base.persona + " Be brief.")):
        task = base.model_copy(update={"name": "versioned", "version": label, "persona": persona})
        s3.put_object(Bucket=bucket, Key="config/tasks/versioned.yaml", Body=task.to_yaml().encode())
        write_calls(tmp_path / f"{label}.csv", 30, prefix=label.upper())
        arn, described = run(runtime, tmp_path / f"{label}.csv", f"input_data/versioned/{label}.csv")
        assert described["status"] == "SUCCEEDED", described.get("cause")
        summary, _ = results_rows(runtime, arn)
        assert summary["task_version"] == task.version_id == f"{label}@{task.content_hash}"
        item = wait_for_run_status(runtime, run_id_of_execution(described), "SUCCEEDED")
        assert item["task_version"] == task.version_id
        hashes[label] = task.content_hash
    assert hashes["v1"] != hashes["v2"]
    template = load_template(ROOT / "template.yaml")
    sql = template["Resources"]["AccuracyByTaskVersionQuery"]["Properties"]["QueryString"]["Fn::Sub"]
    table = runtime.stack.outputs.get("AnalyticsTableName", "results")
    sql = sql.replace('"${AnalyticsDatabase}"."${AnalyticsResultsTable}"', table)
    files = mirror(s3, runtime.stack.internal_bucket, tmp_path / "mirror")
    columns, rows = query(files, sql)
    found = {row[1]: dict(zip(columns, row, strict=True)) for row in rows if row[0] == "versioned"}
    assert set(found) == {f"v1@{hashes['v1']}", f"v2@{hashes['v2']}"}
    assert all(r["runs"] == 1 and r["labelled_rows"] == 30 and 0 <= r["accuracy"] <= 1 for r in found.values())
