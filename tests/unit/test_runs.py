"""The run steps on moto-backed S3 and DynamoDB, in workflow order, with Bedrock's output written as Bedrock does."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import boto3
import pytest
from aws_fixtures import CUSTOMER, ENVIRONMENT, INTERNAL, answer_batch_job, conversations_csv, create_cloud, reply_for
from botocore.exceptions import ClientError
from moto import mock_aws

from batch_classifier.errors import (
    EmptyInputError,
    InputChangedError,
    InputNotFoundError,
    InputTooLargeError,
    TaskError,
)
from batch_classifier.finalize import finalize_run
from batch_classifier.records import record_id
from batch_classifier.runs import (
    convert_input,
    plan_retries,
    process_shard,
    register_run,
    shard_lines,
    shard_records,
    task_name_for,
)
from batch_classifier.sharding import ShardKind
from batch_classifier.status import RunStatus, ShardStatus
from batch_classifier.storage import RunFiles
from batch_classifier.tasks import parse_task
from batch_classifier.workflow import ObjectCreated, RoundPlan, ShardRef


@pytest.fixture
def cloud(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield create_cloud(texts_per_request=1)


def round_shards(cloud, plan: RoundPlan) -> list[ShardRef]:
    """The shards of a round, as the ProcessShards map reads them from S3."""
    items = json.loads(cloud.s3.get_object(Bucket=plan.bucket, Key=plan.key)["Body"].read())
    return [ShardRef.model_validate(item) for item in items]


def write_job_input(cloud, run, shard: ShardRef) -> bytes:
    """What SubmitJob writes before it creates the job."""
    files = RunFiles(run.run_id)
    task = parse_task(cloud.s3.get_object(Bucket=INTERNAL, Key=files.task)["Body"].read().decode())
    lines = b"".join(shard_lines(cloud.s3, cloud.settings, task, shard))
    cloud.s3.put_object(Bucket=INTERNAL, Key=files.job_input(shard.name), Body=lines)
    return lines


def upload(cloud, key: str, body: bytes) -> ObjectCreated:
    put = cloud.s3.put_object(Bucket=CUSTOMER, Key=key, Body=body)
    return ObjectCreated(
        bucket=CUSTOMER, key=key, size=len(body), etag=put["ETag"].strip('"'), version_id=put.get("VersionId")
    )


@pytest.mark.parametrize(
    ("key", "task"),
    [("input_data/calls.csv", "travel"), ("input_data/support-root-cause/cases.xlsx", "support-root-cause")],
)
def test_task_comes_from_the_key(key, task):
    assert task_name_for(key, "travel") == task


def test_register_run_is_idempotent_per_upload(cloud):
    event = upload(cloud, "input_data/calls.csv", conversations_csv(5))
    first = register_run(event, cloud.store, cloud.settings)
    again = register_run(event, cloud.store, cloud.settings)
    assert not first.duplicate and again.duplicate
    assert first.run_id == again.run_id
    item = cloud.store.get_run(first.run_id)
    assert item["run_status"] == RunStatus.RUNNING.value and item["source_key"] == "input_data/calls.csv"
    # A failed run of the same upload may start again; a succeeded one may not.
    cloud.store.finish_run(first.run_id, RunStatus.FAILED, error="boom")
    assert not register_run(event, cloud.store, cloud.settings).duplicate


def test_a_folder_key_is_ignored_without_a_run(cloud):
    put = cloud.s3.put_object(Bucket=CUSTOMER, Key="input_data/travel/", Body=b"")
    event = ObjectCreated(bucket=CUSTOMER, key="input_data/travel/", size=0, etag=put["ETag"].strip('"'))
    run = register_run(event, cloud.store, cloud.settings)
    assert run.ignored == "input_data/travel/ is a folder, not a file: there is nothing to classify."
    assert not run.duplicate and cloud.store.get_run(run.run_id) is None


@pytest.mark.parametrize(
    ("stored", "delivered"),
    [
        ("input_data/calls 2024+Q1 é.csv", "input_data/calls 2024+Q1 é.csv"),  # as given
        ("input_data/calls 2024+Q1 é.csv", "input_data/calls+2024%2BQ1+%C3%A9.csv"),  # S3 notification encoding
        ("input_data/calls 2024+Q1 é.csv", "input_data/calls%202024%2BQ1%20%C3%A9.csv"),  # URL encoding
        ("input_data/a+b 100%25.csv", "input_data/a+b 100%25.csv"),  # a raw '+' and '%' are read as they are
    ],
)
def test_a_key_is_read_as_given_then_as_decoded(cloud, stored, delivered):
    body = conversations_csv(3)
    put = cloud.s3.put_object(Bucket=CUSTOMER, Key=stored, Body=body)
    event = ObjectCreated(bucket=CUSTOMER, key=delivered, size=len(body), etag=put["ETag"].strip('"'))
    run = register_run(event, cloud.store, cloud.settings)
    assert convert_input(run, cloud.s3, cloud.store, cloud.settings)["rows"] == 3


def test_a_missing_object_is_a_named_input_error(cloud):
    event = ObjectCreated(bucket=CUSTOMER, key="input_data/gone+away.csv", size=10, etag="abc")
    run = register_run(event, cloud.store, cloud.settings)
    with pytest.raises(InputNotFoundError, match=r"gone\+away\.csv is not there any more"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_an_upload_too_large_for_one_run_is_a_named_error_before_anything_is_paid(cloud):
    event = upload(cloud, "input_data/calls.csv", conversations_csv(25_000))
    run = register_run(event, cloud.store, cloud.settings)
    small = dataclasses.replace(cloud.settings, max_upload_bytes=event.size - 1)
    with pytest.raises(InputTooLargeError, match="MaxUploadBytes"):
        convert_input(run, cloud.s3, cloud.store, small)
    few = dataclasses.replace(cloud.settings, max_rows_per_run=20_000)
    with pytest.raises(InputTooLargeError, match="more than 20,000 rows"):
        convert_input(run, cloud.s3, cloud.store, few)
    assert convert_input(run, cloud.s3, cloud.store, cloud.settings)["rows"] == 25_000


def test_an_overwritten_key_is_read_as_each_upload_was_uploaded(cloud):
    first = upload(cloud, "input_data/calls.csv", conversations_csv(120))
    second = upload(cloud, "input_data/calls.csv", conversations_csv(80))  # a moment later, before the first run reads
    runs = [register_run(event, cloud.store, cloud.settings) for event in (first, second)]
    assert runs[0].run_id != runs[1].run_id
    assert [convert_input(run, cloud.s3, cloud.store, cloud.settings)["rows"] for run in runs] == [120, 80]


def test_without_versions_a_replaced_upload_is_a_named_error_not_the_newer_file(cloud):
    first = upload(cloud, "input_data/calls.csv", conversations_csv(120)).model_copy(update={"version_id": "null"})
    upload(cloud, "input_data/calls.csv", conversations_csv(80))
    run = register_run(first, cloud.store, cloud.settings)
    assert run.version_id is None  # S3's "null" version: an unversioned object, read by key and ETag
    with pytest.raises(InputChangedError, match="replaced by a newer upload"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_a_deleted_upload_is_a_named_error(cloud):
    event = upload(cloud, "input_data/gone.csv", conversations_csv(5))
    cloud.s3.delete_object(Bucket=CUSTOMER, Key="input_data/gone.csv", VersionId=event.version_id)
    run = register_run(event, cloud.store, cloud.settings)
    with pytest.raises(InputNotFoundError, match="not there any more"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_a_header_only_file_is_a_named_error(cloud):
    run = register_run(
        upload(cloud, "input_data/empty.csv", b"conversation_id,conversation\n"), cloud.store, cloud.settings
    )
    with pytest.raises(EmptyInputError, match="header but no rows"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_a_task_whose_model_has_no_price_is_refused_before_anything_is_spent(cloud):
    task = (
        "name: fruit\nmodel_id: acme.unpriced-model-v1\npersona: You sort fruit.\n"
        "input: {text_columns: [conversation], id_column: conversation_id}\n"
        "categories:\n  - {name: Apple, description: red}\n  - {name: Pear, description: green}\n"
    )
    cloud.s3.put_object(Bucket=CUSTOMER, Key="config/tasks/fruit.yaml", Body=task.encode())
    run = register_run(upload(cloud, "input_data/fruit/calls.csv", conversations_csv(4)), cloud.store, cloud.settings)
    with pytest.raises(TaskError, match=r"acme\.unpriced-model-v1"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_unknown_task_is_a_named_error(cloud):
    event = upload(cloud, "input_data/nope/calls.csv", conversations_csv(5))
    run = register_run(event, cloud.store, cloud.settings)
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)


def test_user_task_from_the_bucket(cloud):
    task = (
        "name: fruit\npersona: You sort fruit.\ninput: {text_columns: [conversation], id_column: conversation_id}\n"
        "categories:\n  - {name: Apple, description: red}\n  - {name: Pear, description: green}\n"
    )
    cloud.s3.put_object(Bucket=CUSTOMER, Key="config/tasks/fruit.yaml", Body=task.encode())
    run = register_run(upload(cloud, "input_data/fruit/calls.csv", conversations_csv(4)), cloud.store, cloud.settings)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    stored = cloud.s3.get_object(Bucket=INTERNAL, Key=RunFiles(run.run_id).task)["Body"].read().decode()
    assert "name: fruit" in stored


def test_whole_run_with_record_errors_retried_and_duplicates_fanned_out(cloud):
    run = register_run(
        upload(cloud, "input_data/calls.csv", conversations_csv(230, duplicates=10, empty=2)),
        cloud.store,
        cloud.settings,
    )
    counts = convert_input(run, cloud.s3, cloud.store, cloud.settings)
    assert (counts["rows"], counts["invalid"], counts["distinct_texts"]) == (230, 2, 219)

    plan = shard_records(run, cloud.s3, cloud.store, cloud.settings)
    assert (plan.round, plan.shards, plan.batch_jobs, plan.retry) == (0, 1, 1, False)
    shards = round_shards(cloud, plan)
    assert [(s.name, s.kind.value, s.records) for s in shards] == [("shard-00001", "batch", 219)]
    files = RunFiles(run.run_id)
    write_job_input(cloud, run, shards[0])
    answer_batch_job(
        cloud.s3,
        files.job_input("shard-00001"),
        files.batch_output_prefix("shard-00001"),
        errors={
            record_id(3): {"errorCode": 429, "errorMessage": "Too many requests"},
            record_id(4): {"errorCode": 400, "errorMessage": "Malformed input"},
        },
        drop=frozenset({record_id(5)}),
    )
    outcome = process_shard(run, shards[0], cloud.s3, None, cloud.store, cloud.settings)
    assert outcome["retryable"] == 2  # the 429 and the missing record; the 400 stands
    assert cloud.store.get_shard(run.run_id, "shard-00001")["shard_status"] == ShardStatus.PROCESSED.value
    # Processed already (a redriven map runs its children again): nothing is judged twice.
    assert process_shard(run, shards[0], cloud.s3, None, cloud.store, cloud.settings)["again"]

    retry = plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings)
    assert retry.retry and retry.round == 1
    retry_shards = round_shards(cloud, retry)
    assert [(s.name, s.kind.value, s.records) for s in retry_shards] == [("retry1-shard-00001", "on_demand", 2)]

    # The retry round's answers (written here as a batch output would be) replace the errors.
    retry_shard = retry_shards[0].model_copy(update={"kind": ShardKind.BATCH})
    lines = write_job_input(cloud, run, retry_shard)
    assert [json.loads(x)["recordId"] for x in lines.splitlines()] == [record_id(3), record_id(5)]
    answer_batch_job(cloud.s3, files.job_input("retry1-shard-00001"), files.batch_output_prefix("retry1-shard-00001"))
    process_shard(run, retry_shard, cloud.s3, None, cloud.store, cloud.settings)
    assert not plan_retries(run, retry, cloud.s3, cloud.store, cloud.settings).retry

    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    assert result["rows"] == 230
    assert result["by_status"]["classified"] == 227
    assert result["by_status"]["model_error"] == 1 and result["by_status"]["invalid_input"] == 2
    csv_key = next(k for k in result["outputs"] if k.endswith(".csv") and "rejects" not in k)
    body = cloud.s3.get_object(Bucket=CUSTOMER, Key=csv_key.split(f"{CUSTOMER}/", 1)[1])["Body"].read()
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [r["id"] for r in rows] == [f"c-{i}" for i in range(1, 231)]
    assert {rows[i]["class"] for i in range(10)} == {"Travel Information"}
    assert any(k.endswith(".xlsx") for k in result["outputs"])
    assert any(k.endswith("rejects.csv") for k in result["outputs"])
    summary = json.loads(
        cloud.s3.get_object(Bucket=CUSTOMER, Key=result["summary"].split(f"{CUSTOMER}/", 1)[1])["Body"].read()
    )
    assert summary["evaluation"]["rows"] == 230
    assert summary["tokens"]["input"] > 0 and summary["cost_usd"] > 0
    analytics = cloud.s3.list_objects_v2(Bucket=INTERNAL, Prefix="analytics/results/")["Contents"]
    assert len(analytics) == 1 and analytics[0]["Key"].endswith(f"/{run.run_id}.parquet")
    item = cloud.store.get_run(run.run_id)
    assert item["run_status"] == RunStatus.SUCCEEDED.value
    assert not cloud.store.finish_run(run.run_id, RunStatus.FAILED)  # a succeeded run never moves back


def test_a_failed_job_leaves_every_record_retryable(cloud):
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(120)), cloud.store, cloud.settings)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    plan = shard_records(run, cloud.s3, cloud.store, cloud.settings)
    outcome = process_shard(run, round_shards(cloud, plan)[0], cloud.s3, None, cloud.store, cloud.settings)
    assert outcome["retryable"] == 120
    retry = plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings)
    assert [(s.kind.value, s.records, s.keyed) for s in round_shards(cloud, retry)] == [("batch", 120, True)]


class FakeRuntime:
    """bedrock-runtime at the client boundary: answers invoke_model like an Anthropic model, throttling once."""

    def __init__(self):
        self.calls = 0
        self.exceptions = boto3.client("bedrock-runtime", region_name="us-east-1").exceptions

    def invoke_model(self, modelId, body, **kwargs):  # noqa: N803 - boto3's keyword names
        self.calls += 1
        if self.calls == 1:
            raise self.exceptions.ThrottlingException(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel"
            )
        text = json.loads(body)["messages"][0]["content"][0]["text"]
        reply = {
            "content": [{"type": "text", "text": reply_for(text)}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1500, "output_tokens": 20},
        }
        return {"body": io.BytesIO(json.dumps(reply).encode())}


def test_an_on_demand_shard_is_classified_with_bedrock_runtime(cloud, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(40)), cloud.store, cloud.settings)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    shards = round_shards(cloud, shard_records(run, cloud.s3, cloud.store, cloud.settings))
    assert [(s.kind.value, s.records) for s in shards] == [("on_demand", 40)]
    runtime = FakeRuntime()
    outcome = process_shard(run, shards[0], cloud.s3, runtime, cloud.store, cloud.settings)
    assert outcome["by_status"] == {"classified": 40} and outcome["retryable"] == 0
    assert runtime.calls == 41  # one throttled call, retried
    shard = cloud.store.get_shard(run.run_id, shards[0].name)
    assert shard["input_tokens"] == 40 * 1500
    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    assert result["by_status"]["classified"] == 40


def test_a_failed_run_being_redriven_runs_again_but_a_succeeded_one_stays(cloud):
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(5)), cloud.store, cloud.settings)
    cloud.store.finish_run(run.run_id, RunStatus.FAILED, error="ClientError")
    convert_input(run, cloud.s3, cloud.store, cloud.settings)  # a redrive resuming at ConvertInput
    assert cloud.store.get_run(run.run_id)["run_status"] == RunStatus.RUNNING.value
    cloud.store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        cloud.store.update_run(run.run_id, counts={})
