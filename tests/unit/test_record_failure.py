"""RecordFailure on moto-backed DynamoDB and SNS: an execution that stopped marks its run FAILED and is announced."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from aws_fixtures import (
    CUSTOMER,
    ENVIRONMENT,
    INTERNAL,
    REGION,
    LambdaContext,
    answer_batch_job,
    conversations_csv,
    create_cloud,
    event,
    load_handler,
)
from botocore.stub import Stubber
from moto import mock_aws

from batch_classifier import aws
from batch_classifier.bedrock import check_job
from batch_classifier.failures import INPUT_ERRORS, MAX_CAUSE_CHARS, SUBJECT, record_failure
from batch_classifier.records import record_id
from batch_classifier.runs import (
    convert_input,
    plan_retries,
    process_shard,
    register_run,
    run_id_of,
    shard_lines,
    shard_records,
)
from batch_classifier.settings import ConfigurationError
from batch_classifier.sharding import ShardKind
from batch_classifier.status import RunStatus, ShardStatus
from batch_classifier.storage import RunFiles
from batch_classifier.tasks import parse_task
from batch_classifier.workflow import JobCheck, ObjectCreated, ShardRef, run_id_for

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "batch-classifier-run-events"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:{TOPIC}"
EXECUTION = event("record_failure")["detail"]["executionArn"]
NO_JOBS = {"jobs_stopped": [], "jobs_ended": [], "jobs_refused": [], "jobs_running": []}


class NoBedrock:
    """A Bedrock client that must not be called (an AssertionError is not a client error RecordFailure forgives)."""

    def __getattr__(self, name: str):
        raise AssertionError(f"unexpected Bedrock call: {name}")


NO_BEDROCK = NoBedrock()


@pytest.fixture
def cloud(monkeypatch):
    for name, value in {**ENVIRONMENT, "RUN_EVENTS_TOPIC_ARN": TOPIC_ARN}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        aws.reset()
        made = create_cloud(texts_per_request=1)
        sns = boto3.client("sns", region_name=REGION)
        assert sns.create_topic(Name=TOPIC)["TopicArn"] == TOPIC_ARN
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="run-events-subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=TOPIC_ARN, Protocol="sqs", Endpoint=queue_arn)
        made.sns = sns
        made.published = lambda: _published(sqs, queue_url)
        yield made
        aws.reset()


def _published(sqs, queue_url: str) -> list[dict]:
    """The SNS notifications the subscribed queue received (subject, attributes and the decoded message)."""
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    notes = []
    for message in received:
        body = json.loads(message["Body"])
        notes.append(
            {
                "subject": body["Subject"],
                "status": body["MessageAttributes"]["status"]["Value"],
                "message": json.loads(body["Message"]),
            }
        )
    return notes


def upload() -> ObjectCreated:
    return ObjectCreated.model_validate(event("workflow_input"))


def register(cloud, execution: str = EXECUTION) -> str:
    return register_run(upload(), cloud.store, cloud.settings, execution=execution).run_id


def failure(**detail) -> dict:
    failed = copy.deepcopy(event("record_failure"))
    failed["detail"].update(detail)
    return failed


def test_the_run_id_is_the_one_register_run_gives():
    start = upload()
    assert run_id_of(start) == run_id_for(start.bucket, "input_data/travel/calls-2024-Q1.csv", start.etag)
    # Without an ETag, the event id still tells one upload from a redelivery.
    assert run_id_of(start.model_copy(update={"etag": ""})) != run_id_of(start)


def test_a_running_run_becomes_failed_and_is_announced(cloud):
    run_id = register(cloud)
    sample = event("record_failure")["detail"]

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done == {
        "execution": EXECUTION,
        "execution_status": "FAILED",
        "run_id": run_id,
        "recorded": True,
        "notified": True,
        **NO_JOBS,
    }
    item = cloud.store.get_run(run_id)
    assert item["run_status"] == RunStatus.FAILED.value
    assert item["error"] == "ClientError"
    assert item["cause"] == sample["cause"]
    assert item["execution"] == EXECUTION
    assert item["finished_at"]
    (note,) = cloud.published()
    assert note["subject"] == SUBJECT
    assert note["status"] == "FAILED"
    assert note["message"] == {
        "status": "FAILED",
        "run_id": run_id,
        "execution": EXECUTION,
        "error": "ClientError",
        "cause": sample["cause"],
        "source": "s3://batch-classifier-customer-123456789012/input_data/travel/calls-2024-Q1.csv",
        "jobs_stopped": 0,
        "jobs_running": [],
    }
    # A redrive that then succeeds moves the run on (FinalizeRun's finish_run).
    assert cloud.store.finish_run(run_id, RunStatus.SUCCEEDED)
    assert cloud.store.get_run(run_id)["run_status"] == RunStatus.SUCCEEDED.value


def test_a_succeeded_run_is_left_alone_and_nothing_is_published(cloud):
    run_id = register(cloud)
    assert cloud.store.finish_run(run_id, RunStatus.SUCCEEDED, output_prefix="output_data/x/")

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["recorded"] is False and done["notified"] is False
    assert done["run_id"] == run_id
    item = cloud.store.get_run(run_id)
    assert item["run_status"] == RunStatus.SUCCEEDED.value
    assert "error" not in item
    assert cloud.published() == []


def test_an_unregistered_run_is_only_announced(cloud):
    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["run_id"] is None
    assert done["recorded"] is False and done["notified"] is True
    assert cloud.store.get_run(run_id_of(upload())) is None
    (note,) = cloud.published()
    assert note["message"]["run_id"] is None
    assert note["message"]["error"] == "ClientError"
    assert note["message"]["source"].startswith("s3://batch-classifier-customer-123456789012/input_data/")


def test_an_execution_without_readable_input_is_still_announced(cloud):
    register(cloud)

    done = record_failure(failure(input=None), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["run_id"] is None and done["notified"] is True
    (note,) = cloud.published()
    assert note["message"]["source"] is None and note["message"]["run_id"] is None


def test_timed_out_and_aborted_executions_name_their_status_when_they_carry_no_error(cloud):
    run_id = register(cloud)

    done = record_failure(
        failure(status="TIMED_OUT", error=None, cause=None), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK
    )

    assert done["recorded"] is True and done["execution_status"] == "TIMED_OUT"
    item = cloud.store.get_run(run_id)
    assert item["run_status"] == RunStatus.FAILED.value
    assert item["error"] == "TIMED_OUT"
    (note,) = cloud.published()
    assert note["message"]["error"] == "TIMED_OUT"
    assert note["message"]["cause"] == "the execution ended TIMED_OUT"


def test_a_long_cause_is_truncated(cloud):
    run_id = register(cloud)

    record_failure(failure(cause="x" * 50_000), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    cause = cloud.store.get_run(run_id)["cause"]
    assert len(cause) == MAX_CAUSE_CHARS and cause.endswith("…")
    (note,) = cloud.published()
    assert note["message"]["cause"] == cause


def test_an_input_error_the_workflow_already_reported_is_not_reported_twice(cloud):
    run_id = register(cloud)
    # What MarkRunFailed writes before NotifyRunFailed and RunFailed (which ends the execution with this error).
    assert cloud.store.finish_run(run_id, RunStatus.FAILED, error="EmptyInputError", cause="'calls.csv' has no rows.")

    done = record_failure(
        failure(error="EmptyInputError", cause="'calls.csv' has no rows."),
        cloud.store,
        cloud.sns,
        TOPIC_ARN,
        bedrock=NO_BEDROCK,
    )

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.published() == []


def test_a_run_registered_by_another_execution_is_not_touched(cloud):
    other = EXECUTION.rsplit(":", 1)[0] + ":a-later-upload-event"
    run_id = register(cloud, execution=other)

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.store.get_run(run_id)["run_status"] == RunStatus.RUNNING.value
    assert cloud.published() == []


def test_an_execution_that_did_not_stop_is_ignored(cloud):
    register(cloud)

    done = record_failure(
        failure(status="SUCCEEDED", error=None, cause=None), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK
    )

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.published() == []


def test_the_topic_must_be_configured(cloud):
    with pytest.raises(ConfigurationError, match="RUN_EVENTS_TOPIC_ARN"):
        record_failure(event("record_failure"), cloud.store, cloud.sns, "", bedrock=NO_BEDROCK)


def test_the_input_errors_are_the_ones_convert_input_catches():
    definition = json.loads((ROOT / "statemachine" / "batch_classifier.asl.json").read_text(encoding="utf-8"))
    caught = {error for catch in definition["States"]["ConvertInput"]["Catch"] for error in catch["ErrorEquals"]}
    assert caught == INPUT_ERRORS


def test_the_handler_records_its_sample_event(cloud):
    registered = load_handler("register_run").lambda_handler(event("register_run"), LambdaContext())
    assert event("register_run")["execution"] == EXECUTION

    result = load_handler("record_failure").lambda_handler(event("record_failure"), LambdaContext())

    assert result == {
        "execution": EXECUTION,
        "execution_status": "FAILED",
        "run_id": registered["run_id"],
        "recorded": True,
        "notified": True,
        **NO_JOBS,
    }
    assert cloud.store.get_run(registered["run_id"])["run_status"] == RunStatus.FAILED.value
    (note,) = cloud.published()
    assert note["message"]["run_id"] == registered["run_id"]


# ----------------------------------------------------------------------------------------------------------------
# The run's Bedrock batch jobs: stopped when the execution was aborted or timed out, kept when it failed
# ----------------------------------------------------------------------------------------------------------------


def job_arn(job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:123456789012:model-invocation-job/{job_id}"


# One shard in every state a shard item can be in; only the open jobs can be stopped.
SHARDS = {
    "s1": ShardStatus.IN_PROGRESS,
    "s2": ShardStatus.SUBMITTED,
    "s3": ShardStatus.VALIDATING,
    "s4": ShardStatus.SCHEDULED,
    "s5": ShardStatus.STOPPING,  # already on its way to Stopped
    "s6": ShardStatus.COMPLETED,
    "s7": ShardStatus.PROCESSED,
    "s8": ShardStatus.QUEUED,  # no job yet
}
OPEN = ["s1", "s2", "s3", "s4"]


def add_shards(cloud, run_id: str, statuses: dict[str, ShardStatus] = SHARDS) -> None:
    refs = [ShardRef(name=name, kind=ShardKind.BATCH, records=100, round=0) for name in statuses]
    cloud.store.add_shards(run_id, refs)
    for name, status in statuses.items():
        if status is not ShardStatus.QUEUED:
            assert cloud.store.mark_submitted(run_id, name, job_arn(f"job{name}"), f"bbc-{name}")
            assert cloud.store.set_shard_status(run_id, name, status)


def shard_statuses(cloud, run_id: str) -> dict[str, str]:
    return {item["sk"].removeprefix("SHARD#"): item["shard_status"] for item in cloud.store.shards(run_id)}


@pytest.fixture
def bedrock():
    """A Bedrock client whose calls are stubbed (moto has no batch inference jobs)."""
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT"])
def test_an_aborted_or_timed_out_execution_stops_the_open_jobs_of_its_run(cloud, bedrock, status):
    client, stubber = bedrock
    run_id = register(cloud)
    add_shards(cloud, run_id)
    for name in OPEN:
        stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": job_arn(f"job{name}")})

    done = record_failure(
        failure(status=status, error=None, cause=None), cloud.store, cloud.sns, TOPIC_ARN, bedrock=client
    )

    assert done["recorded"] is True and done["notified"] is True
    assert done["jobs_stopped"] == [job_arn(f"job{name}") for name in OPEN]
    assert done["jobs_running"] == [] and done["jobs_refused"] == [] and done["jobs_ended"] == []
    # The stopped shards are Stopping (CheckJob polls them on to Stopped); the others are as they were.
    assert shard_statuses(cloud, run_id) == {
        **{name: status.value for name, status in SHARDS.items()},
        **dict.fromkeys(OPEN, ShardStatus.STOPPING.value),
    }
    stopped = cloud.store.get_shard(run_id, "s1")
    assert stopped["job_arn"] == job_arn("jobs1")
    assert stopped["stop_reason"] == f"the execution {EXECUTION} {status}"
    assert stopped["stop_requested_at"]
    assert cloud.store.get_run(run_id)["run_status"] == RunStatus.FAILED.value
    (note,) = cloud.published()
    assert note["message"]["jobs_stopped"] == len(OPEN)
    assert note["message"]["jobs_running"] == []


def test_a_failed_execution_keeps_its_jobs_for_the_redrive_and_lists_them(cloud):
    run_id = register(cloud)
    add_shards(cloud, run_id)

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["recorded"] is True
    assert done["jobs_stopped"] == []
    assert done["jobs_running"] == [job_arn(f"job{name}") for name in OPEN]
    assert shard_statuses(cloud, run_id) == {name: status.value for name, status in SHARDS.items()}
    (note,) = cloud.published()
    assert note["message"]["jobs_stopped"] == 0
    assert note["message"]["jobs_running"] == done["jobs_running"]


def test_a_job_that_cannot_be_stopped_does_not_keep_the_others_running(cloud, bedrock):
    client, stubber = bedrock
    run_id = register(cloud)
    add_shards(cloud, run_id, {name: ShardStatus.IN_PROGRESS for name in ("s1", "s2", "s3", "s4")})
    ended = "The batch inference job is Completed and cannot be stopped."
    stubber.add_client_error("stop_model_invocation_job", "ValidationException", ended, 400)
    stubber.add_client_error("stop_model_invocation_job", "ResourceNotFoundException", "no such job", 404)
    stubber.add_client_error("stop_model_invocation_job", "AccessDeniedException", "not allowed", 403)
    stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": job_arn("jobs4")})

    done = record_failure(failure(status="ABORTED"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=client)

    assert done["jobs_ended"] == [job_arn("jobs1"), job_arn("jobs2")]
    assert done["jobs_refused"] == [{"job_arn": job_arn("jobs3"), "error": "AccessDeniedException: not allowed"}]
    assert done["jobs_stopped"] == [job_arn("jobs4")]
    assert done["jobs_running"] == [job_arn("jobs3")]
    # A job that had ended keeps the status CheckJob will read from Bedrock; a refused one is still open.
    assert shard_statuses(cloud, run_id) == {
        "s1": ShardStatus.IN_PROGRESS.value,
        "s2": ShardStatus.IN_PROGRESS.value,
        "s3": ShardStatus.IN_PROGRESS.value,
        "s4": ShardStatus.STOPPING.value,
    }
    assert done["recorded"] is True and done["notified"] is True
    (note,) = cloud.published()
    assert note["message"]["jobs_stopped"] == 1
    assert note["message"]["jobs_running"] == [job_arn("jobs3")]


def test_the_jobs_of_a_run_registered_by_another_execution_are_not_stopped(cloud):
    other = EXECUTION.rsplit(":", 1)[0] + ":a-later-upload-event"
    run_id = register(cloud, execution=other)
    add_shards(cloud, run_id)

    done = record_failure(failure(status="ABORTED"), cloud.store, cloud.sns, TOPIC_ARN, bedrock=NO_BEDROCK)

    assert done["recorded"] is False and done["notified"] is False
    assert shard_statuses(cloud, run_id) == {name: status.value for name, status in SHARDS.items()}
    assert cloud.published() == []


def test_a_redrive_after_a_stop_judges_what_the_job_answered_and_retries_the_rest(cloud, bedrock):
    """The stopped shard as the rest of the workflow sees it: CheckJob polls it on to Stopped (terminal), ProcessShard
    judges the records the job answered before the stop, and PlanRetries sends the others again."""
    client, stubber = bedrock
    body = conversations_csv(120)
    put = cloud.s3.put_object(Bucket=CUSTOMER, Key="input_data/calls.csv", Body=body)
    start = ObjectCreated(
        bucket=CUSTOMER, key="input_data/calls.csv", size=len(body), etag=put["ETag"].strip('"'), event_id="e-1"
    )
    run = register_run(start, cloud.store, cloud.settings, execution=EXECUTION)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    plan = shard_records(run, cloud.s3, cloud.store, cloud.settings)
    items = json.loads(cloud.s3.get_object(Bucket=plan.bucket, Key=plan.key)["Body"].read())
    (shard,) = [ShardRef.model_validate(item) for item in items]
    assert shard.kind is ShardKind.BATCH and shard.records == 120
    files = RunFiles(run.run_id)
    task = parse_task(cloud.s3.get_object(Bucket=INTERNAL, Key=files.task)["Body"].read().decode())
    lines = b"".join(shard_lines(cloud.s3, cloud.settings, task, shard))
    cloud.s3.put_object(Bucket=INTERNAL, Key=files.job_input(shard.name), Body=lines)
    arn = job_arn("abcd1234efgh")
    assert cloud.store.mark_submitted(run.run_id, shard.name, arn, "bbc-job")
    assert cloud.store.set_shard_status(run.run_id, shard.name, ShardStatus.IN_PROGRESS)
    stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": arn})

    aborted = failure(status="ABORTED", error=None, cause=None, input=json.dumps(start.model_dump(mode="json")))
    done = record_failure(aborted, cloud.store, cloud.sns, TOPIC_ARN, bedrock=client)
    assert done["run_id"] == run.run_id and done["jobs_stopped"] == [arn]

    # The job answered 70 records before the stop; Bedrock then reports it Stopped.
    unanswered = frozenset(record_id(i) for i in range(71, 121))
    answer_batch_job(cloud.s3, files.job_input(shard.name), files.batch_output_prefix(shard.name), drop=unanswered)
    stubber.add_response("get_model_invocation_job", stopped_job(arn), {"jobIdentifier": arn})
    checked = check_job(
        client, cloud.store, cloud.settings, run, shard, JobCheck(status="Stopping"), invocation=not_submitted
    )
    assert checked.done is True and checked.status == ShardStatus.STOPPED.value

    processed = process_shard(run, shard, cloud.s3, None, cloud.store, cloud.settings)
    assert processed["by_status"]["classified"] == 70 and processed["retryable"] == 50
    retry = plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings)
    assert retry.retry is True and retry.round == 1
    again = json.loads(cloud.s3.get_object(Bucket=retry.bucket, Key=retry.key)["Body"].read())
    assert sum(item["records"] for item in again) == 50


def not_submitted() -> tuple[str, str]:
    raise AssertionError("a shard with a job is never submitted again")


def stopped_job(arn: str) -> dict:
    uri = f"s3://{INTERNAL}/x"
    return {
        "jobArn": arn,
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "roleArn": "arn:aws:iam::123456789012:role/BedrockBatchRole",
        "status": "Stopped",
        "message": "The job was stopped by a user.",
        "submitTime": datetime(2026, 11, 22, 6, 1, tzinfo=UTC),
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": uri}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri}},
        "totalRecordCount": 120,
        "processedRecordCount": 70,
        "successRecordCount": 70,
        "errorRecordCount": 0,
    }
