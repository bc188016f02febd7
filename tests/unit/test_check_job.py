"""The CheckJob handler end to end with its sample event: moto for DynamoDB and S3, a stubbed Bedrock client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_fixtures import LambdaContext, create_status_table, load_handler
from botocore.stub import Stubber
from moto import mock_aws

from batch_classifier import aws as clients
from batch_classifier.bedrock import job_name
from batch_classifier.sharding import ShardKind
from batch_classifier.status import StatusStore
from batch_classifier.storage import RunFiles
from batch_classifier.tasks import load_task
from batch_classifier.workflow import JobInput, ShardRef

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "events" / "check_job.json").read_text(encoding="utf-8"))
RUN_ID = EVENT["run"]["run_id"]
ROLE = "arn:aws:iam::123456789012:role/bbc-bedrock-batch"
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "check_job",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchClassifierTest",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "RUNS_TABLE": "bbc-runs",
    "CUSTOMER_BUCKET": "bbc-customer-test",
    "INTERNAL_BUCKET": "bbc-internal-test",
    "BEDROCK_ROLE_ARN": ROLE,
    "STAGE": "test",
    "MAX_CONCURRENT_JOBS": "2",
    "POLL_MIN_SECONDS": "60",
    "POLL_MAX_SECONDS": "900",
}


def arn(job_id: str) -> str:
    return f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"


def job(job_arn: str, status: str) -> dict[str, Any]:
    uri = "s3://bbc-internal-test/x"
    return {
        "jobArn": job_arn,
        "modelId": load_task("travel").model_id,
        "roleArn": ROLE,
        "status": status,
        "submitTime": datetime(2024, 6, 3, 9, 20, tzinfo=UTC),
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": uri}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri}},
    }


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="CheckJobFunction")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatusStore]:
    """The deployed environment: settings in the environment, the status table and the run's task snapshot."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    with mock_aws():
        table = create_status_table(boto3.resource("dynamodb"), "bbc-runs")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bbc-internal-test")
        s3.put_object(
            Bucket="bbc-internal-test", Key=RunFiles(RUN_ID).task, Body=load_task("travel").to_yaml().encode()
        )
        yield StatusStore(table)
    clients.reset()


@pytest.fixture
def app(aws: StatusStore) -> ModuleType:
    """The handler module, loaded from its file as Lambda loads it (fresh per test: no cached clients)."""
    return load_handler("check_job")


@pytest.fixture
def bedrock(app: ModuleType) -> Iterator[Stubber]:
    """The handler's own Bedrock client, stubbed: any call not expected fails the test."""
    with Stubber(clients.bedrock()) as stub:
        yield stub
        stub.assert_no_pending_responses()


def shard(name: str) -> ShardRef:
    return ShardRef(name=name, kind=ShardKind.BATCH, records=150)


def test_the_sample_event_is_a_job_input() -> None:
    assert JobInput.model_validate(EVENT).job.wait_seconds == 60


def test_submits_a_queued_shard(app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any) -> None:
    aws.add_shards(RUN_ID, [shard("shard-00001")])
    bedrock.add_response("create_model_invocation_job", {"jobArn": arn("aaaaaaaaaaa1")})

    result = app.lambda_handler({**EVENT, "job": {"status": "QUEUED", "wait_seconds": 240}}, lambda_context)

    assert result == {"status": "Submitted", "done": False, "wait_seconds": 60}


def test_done_when_the_job_has_ended(app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any) -> None:
    aws.add_shards(RUN_ID, [shard("shard-00001")])
    aws.mark_submitted(RUN_ID, "shard-00001", arn("aaaaaaaaaaa1"), job_name(RUN_ID, "shard-00001", "test"))
    bedrock.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "Expired"))

    result = app.lambda_handler({**EVENT, "job": {**EVENT["job"], "wait_seconds": 900}}, lambda_context)

    assert result == {"status": "Expired", "done": True, "wait_seconds": 0}


def test_the_wait_grows_while_nothing_changes(
    app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any
) -> None:
    aws.add_shards(RUN_ID, [shard("shard-00001")])
    aws.mark_submitted(RUN_ID, "shard-00001", arn("aaaaaaaaaaa1"), job_name(RUN_ID, "shard-00001", "test"))
    event = EVENT
    waits = []
    for _ in range(6):
        bedrock.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "InProgress"))
        checked = app.lambda_handler(event, lambda_context)
        waits.append(checked["wait_seconds"])
        event = {**EVENT, "job": checked}

    assert waits == [120, 240, 480, 900, 900, 900]
