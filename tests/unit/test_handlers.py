"""Each workflow handler run with its sample event from events/, in workflow order, on moto-backed AWS."""

from __future__ import annotations

import json

import pytest
from aws_fixtures import (
    CUSTOMER,
    ENVIRONMENT,
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
from batch_classifier.storage import RunFiles
from batch_classifier.workflow import ObjectCreated

JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"
HANDLERS = [
    "register_run",
    "convert_input",
    "shard_records",
    "submit_job",
    "check_job",
    "process_shard",
    "plan_retries",
    "finalize_run",
]


@pytest.fixture
def cloud(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        aws.reset()
        made = create_cloud(texts_per_request=1)
        yield made
        aws.reset()


@pytest.fixture(scope="module")
def handlers():
    return {name: load_handler(name) for name in HANDLERS}


def test_sample_events_drive_a_run_end_to_end(cloud, handlers):
    start = ObjectCreated.model_validate(event("workflow_input"))
    cloud.s3.put_object(Bucket=CUSTOMER, Key=start.object_key, Body=conversations_csv(150))
    context = LambdaContext()

    run = handlers["register_run"].lambda_handler(event("register_run"), context)
    assert run == {**event("convert_input")["run"], "started_at": run["started_at"]}
    duplicate = handlers["register_run"].lambda_handler(event("register_run"), context)
    assert duplicate["duplicate"] is True

    counts = handlers["convert_input"].lambda_handler(event("convert_input"), context)
    assert counts["rows"] == 150 and counts["labelled"] == 150

    planned = handlers["shard_records"].lambda_handler(event("shard_records"), context)
    assert planned == event("plan_retries")["plan"]
    items = json.loads(cloud.s3.get_object(Bucket=planned["bucket"], Key=planned["key"])["Body"].read())
    assert items == [event("submit_job")["shard"]] == [event("process_shard")["shard"]]

    files = RunFiles(run["run_id"])
    with Stubber(aws.bedrock()) as bedrock:  # moto has no batch inference jobs
        bedrock.add_response("create_model_invocation_job", {"jobArn": JOB_ARN})
        job = handlers["submit_job"].lambda_handler(event("submit_job"), context)
    assert job == {"status": "Submitted", "done": False, "wait_seconds": 60}
    job_input = cloud.s3.get_object(Bucket=planned["bucket"], Key=files.job_input("shard-00001"))["Body"].read()
    assert len(job_input.splitlines()) == 150
    answer_batch_job(cloud.s3, files.job_input("shard-00001"), files.batch_output_prefix("shard-00001"))
    processed = handlers["process_shard"].lambda_handler(event("process_shard"), context)
    assert processed == {
        "shard": "shard-00001",
        "records": 150,
        "by_status": {"classified": 150},
        "retryable": 0,
        "unsent": 0,
    }

    retry = handlers["plan_retries"].lambda_handler(event("plan_retries"), context)
    assert retry["retry"] is False

    result = handlers["finalize_run"].lambda_handler(event("finalize_run"), context)
    assert result["status"] == "SUCCEEDED" and result["rows"] == 150
    assert [o.rsplit(".", 1)[-1] for o in result["outputs"]] == ["csv", "xlsx"]
