"""RecordFailure on moto-backed DynamoDB and SNS: an execution that stopped marks its run FAILED and is announced."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import boto3
import pytest
from aws_fixtures import ENVIRONMENT, REGION, LambdaContext, create_cloud, event, load_handler
from moto import mock_aws

from batch_classifier import aws
from batch_classifier.failures import INPUT_ERRORS, MAX_CAUSE_CHARS, SUBJECT, record_failure
from batch_classifier.runs import register_run, run_id_of
from batch_classifier.settings import ConfigurationError
from batch_classifier.status import RunStatus
from batch_classifier.workflow import ObjectCreated, run_id_for

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "batch-classifier-run-events"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:{TOPIC}"
EXECUTION = event("record_failure")["detail"]["executionArn"]


@pytest.fixture
def cloud(monkeypatch):
    for name, value in {**ENVIRONMENT, "RUN_EVENTS_TOPIC_ARN": TOPIC_ARN}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        aws.reset()
        made = create_cloud()
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
    assert run_id_of(start) == run_id_for(start.bucket, "input_data/travel/calls 2024+Q1.csv", start.etag)
    # Without an ETag, the event id still tells one upload from a redelivery.
    assert run_id_of(start.model_copy(update={"etag": ""})) != run_id_of(start)


def test_a_running_run_becomes_failed_and_is_announced(cloud):
    run_id = register(cloud)
    sample = event("record_failure")["detail"]

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN)

    assert done == {
        "execution": EXECUTION,
        "execution_status": "FAILED",
        "run_id": run_id,
        "recorded": True,
        "notified": True,
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
        "source": "s3://batch-classifier-customer-123456789012/input_data/travel/calls 2024+Q1.csv",
    }
    # A redrive that then succeeds moves the run on (FinalizeRun's finish_run).
    assert cloud.store.finish_run(run_id, RunStatus.SUCCEEDED)
    assert cloud.store.get_run(run_id)["run_status"] == RunStatus.SUCCEEDED.value


def test_a_succeeded_run_is_left_alone_and_nothing_is_published(cloud):
    run_id = register(cloud)
    assert cloud.store.finish_run(run_id, RunStatus.SUCCEEDED, output_prefix="output_data/x/")

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["recorded"] is False and done["notified"] is False
    assert done["run_id"] == run_id
    item = cloud.store.get_run(run_id)
    assert item["run_status"] == RunStatus.SUCCEEDED.value
    assert "error" not in item
    assert cloud.published() == []


def test_an_unregistered_run_is_only_announced(cloud):
    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["run_id"] is None
    assert done["recorded"] is False and done["notified"] is True
    assert cloud.store.get_run(run_id_of(upload())) is None
    (note,) = cloud.published()
    assert note["message"]["run_id"] is None
    assert note["message"]["error"] == "ClientError"
    assert note["message"]["source"].startswith("s3://batch-classifier-customer-123456789012/input_data/")


def test_an_execution_without_readable_input_is_still_announced(cloud):
    register(cloud)

    done = record_failure(failure(input=None), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["run_id"] is None and done["notified"] is True
    (note,) = cloud.published()
    assert note["message"]["source"] is None and note["message"]["run_id"] is None


def test_timed_out_and_aborted_executions_name_their_status_when_they_carry_no_error(cloud):
    run_id = register(cloud)

    done = record_failure(failure(status="TIMED_OUT", error=None, cause=None), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["recorded"] is True and done["execution_status"] == "TIMED_OUT"
    item = cloud.store.get_run(run_id)
    assert item["run_status"] == RunStatus.FAILED.value
    assert item["error"] == "TIMED_OUT"
    (note,) = cloud.published()
    assert note["message"]["error"] == "TIMED_OUT"
    assert note["message"]["cause"] == "the execution ended TIMED_OUT"


def test_a_long_cause_is_truncated(cloud):
    run_id = register(cloud)

    record_failure(failure(cause="x" * 50_000), cloud.store, cloud.sns, TOPIC_ARN)

    cause = cloud.store.get_run(run_id)["cause"]
    assert len(cause) == MAX_CAUSE_CHARS and cause.endswith("…")
    (note,) = cloud.published()
    assert note["message"]["cause"] == cause


def test_an_input_error_the_workflow_already_reported_is_not_reported_twice(cloud):
    run_id = register(cloud)
    # What MarkRunFailed writes before NotifyRunFailed and RunFailed (which ends the execution with this error).
    assert cloud.store.finish_run(run_id, RunStatus.FAILED, error="EmptyInputError", cause="'calls.csv' has no rows.")

    done = record_failure(
        failure(error="EmptyInputError", cause="'calls.csv' has no rows."), cloud.store, cloud.sns, TOPIC_ARN
    )

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.published() == []


def test_a_run_registered_by_another_execution_is_not_touched(cloud):
    other = EXECUTION.rsplit(":", 1)[0] + ":a-later-upload-event"
    run_id = register(cloud, execution=other)

    done = record_failure(event("record_failure"), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.store.get_run(run_id)["run_status"] == RunStatus.RUNNING.value
    assert cloud.published() == []


def test_an_execution_that_did_not_stop_is_ignored(cloud):
    register(cloud)

    done = record_failure(failure(status="SUCCEEDED", error=None, cause=None), cloud.store, cloud.sns, TOPIC_ARN)

    assert done["recorded"] is False and done["notified"] is False
    assert cloud.published() == []


def test_the_topic_must_be_configured(cloud):
    with pytest.raises(ConfigurationError, match="RUN_EVENTS_TOPIC_ARN"):
        record_failure(event("record_failure"), cloud.store, cloud.sns, "")


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
    }
    assert cloud.store.get_run(registered["run_id"])["run_status"] == RunStatus.FAILED.value
    (note,) = cloud.published()
    assert note["message"]["run_id"] == registered["run_id"]
