"""The SubmitJob handler end to end with its sample event: moto for DynamoDB and S3, a stubbed Bedrock client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_fixtures import LambdaContext, create_status_table, load_handler
from botocore.stub import Stubber
from moto import mock_aws

from batch_classifier import aws as clients
from batch_classifier.bedrock import JobSubmissionError, client_token, job_name
from batch_classifier.status import StatusStore
from batch_classifier.storage import RunFiles
from batch_classifier.tasks import load_task
from batch_classifier.workflow import ShardInput

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_EVENT = json.loads((ROOT / "events" / "submit_job.json").read_text(encoding="utf-8"))
# The shard's 150 texts, as ConvertInput writes them; the event's range is set to cover them.
TEXTS = b"".join(f'"conversation {i}: I want a refund"\n'.encode() for i in range(1, 151))
EVENT = {**SAMPLE_EVENT, "shard": {**SAMPLE_EVENT["shard"], "start": 0, "end": len(TEXTS)}}
RUN_ID = EVENT["run"]["run_id"]
SHARD = EVENT["shard"]["name"]
ROLE = "arn:aws:iam::123456789012:role/bbc-bedrock-batch"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "submit_job",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchClassifierTest",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "RUNS_TABLE": "bbc-runs",
    "CUSTOMER_BUCKET": "bbc-customer-test",
    "INTERNAL_BUCKET": "bbc-internal-test",
    "BEDROCK_ROLE_ARN": ROLE,
    "STAGE": "test",
    "MAX_CONCURRENT_JOBS": "2",
    "JOB_TIMEOUT_HOURS": "24",
}


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="SubmitJobFunction")


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
            Bucket="bbc-internal-test",
            Key=RunFiles(RUN_ID).task,
            Body=load_task("travel").model_copy(update={"texts_per_request": 1}).to_yaml().encode(),
        )
        s3.put_object(Bucket="bbc-internal-test", Key=EVENT["shard"]["texts_key"], Body=TEXTS)
        yield StatusStore(table)
    clients.reset()


@pytest.fixture
def app(aws: StatusStore) -> ModuleType:
    """The handler module, loaded from its file as Lambda loads it (fresh per test: no cached clients)."""
    return load_handler("submit_job")


@pytest.fixture
def bedrock(app: ModuleType) -> Iterator[Stubber]:
    """The handler's own Bedrock client, stubbed: any call not expected fails the test."""
    with Stubber(clients.bedrock()) as stub:
        yield stub
        stub.assert_no_pending_responses()


def expected_request() -> dict[str, Any]:
    prefix = f"s3://bbc-internal-test/runs/{RUN_ID}"
    return {
        "jobName": job_name(RUN_ID, SHARD, "test"),
        "roleArn": ROLE,
        "clientRequestToken": client_token(RUN_ID, SHARD),
        "modelId": load_task("travel").model_id,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"{prefix}/jobs/{SHARD}.jsonl", "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"{prefix}/batch-output/{SHARD}/"}},
        "timeoutDurationInHours": 24,
        "modelInvocationType": load_task("travel").invocation_type.value,
    }


def test_the_sample_event_is_a_shard_input() -> None:
    payload = ShardInput.model_validate(SAMPLE_EVENT)
    assert payload.shard.kind.value == "batch"


def test_writes_the_job_input_and_submits_the_shard_once(
    app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any
) -> None:
    aws.add_shards(RUN_ID, [ShardInput.model_validate(EVENT).shard])
    bedrock.add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, expected_request())

    first = app.lambda_handler(EVENT, lambda_context)
    again = app.lambda_handler(EVENT, lambda_context)  # a retried or redriven iteration

    assert first == again == {"status": "Submitted", "done": False, "wait_seconds": 60}
    saved = aws.get_shard(RUN_ID, SHARD)
    assert saved is not None
    assert saved["job_arn"] == JOB_ARN
    body = boto3.client("s3").get_object(Bucket="bbc-internal-test", Key=RunFiles(RUN_ID).job_input(SHARD))["Body"]
    lines = [json.loads(line) for line in body.read().splitlines()]
    assert [line["recordId"] for line in lines] == [f"R{i:010d}" for i in range(1, 151)]
    assert "conversation 150: I want a refund" in json.dumps(lines[-1]["modelInput"])


def test_a_quota_refusal_is_not_a_failure(
    app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any
) -> None:
    aws.add_shards(RUN_ID, [ShardInput.model_validate(EVENT).shard])
    bedrock.add_client_error("create_model_invocation_job", "ServiceQuotaExceededException", "quota", 400)

    result = app.lambda_handler(EVENT, lambda_context)

    assert result == {"status": "QUEUED", "done": False, "wait_seconds": 60}
    saved = aws.get_shard(RUN_ID, SHARD)
    assert saved is not None and "job_arn" not in saved


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the handler raised before counting
def test_a_rejected_job_raises_its_named_error(
    app: ModuleType, aws: StatusStore, bedrock: Stubber, lambda_context: Any
) -> None:
    aws.add_shards(RUN_ID, [ShardInput.model_validate(EVENT).shard])
    bedrock.add_client_error("create_model_invocation_job", "ValidationException", "bad role", 400)
    bedrock.add_response("list_model_invocation_jobs", {"invocationJobSummaries": []})

    with pytest.raises(JobSubmissionError, match=SHARD):
        app.lambda_handler(EVENT, lambda_context)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the handler raised before counting
def test_a_bad_event_fails_before_any_call(app: ModuleType, bedrock: Stubber, lambda_context: Any) -> None:
    with pytest.raises(ValueError, match="shard"):
        app.lambda_handler({"run": EVENT["run"]}, lambda_context)
