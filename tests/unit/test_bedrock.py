"""Batch job submission and polling, and on-demand calls (batch_classifier.bedrock).

DynamoDB is moto; the Bedrock clients are real boto3 clients under ``botocore.stub.Stubber``, which checks
every request and canned response against the service model and fails on any call that was not expected
(that is how "no second job" is proven). The concurrency test uses a small fake runtime instead: Stubber
answers calls strictly in queue order and cannot tell whether calls overlapped.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from aws_fixtures import create_status_table
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from batch_classifier.bedrock import (
    JOB_NAME_MAX,
    OVERDUE_GRACE_HOURS,
    JobOverdueError,
    JobSubmissionError,
    Submission,
    check_job,
    client_token,
    invoke_on_demand,
    job_name,
    next_wait,
    polls_for,
    submit_shard,
)
from batch_classifier.errors import BatchClassifierError, MalformedInputError
from batch_classifier.settings import Settings
from batch_classifier.sharding import ShardKind
from batch_classifier.status import TERMINAL_JOB_STATUSES, ShardStatus, StatusStore
from batch_classifier.tasks import BatchLimits
from batch_classifier.workflow import JobCheck, RunRef, ShardRef

RUN = RunRef(
    run_id="8ad1be7e2405fb3223b7",
    task="travel",
    bucket="bbc-customer-test",
    key="input_data/travel/calls.csv",
    etag="9b2cf535f27731c974343645a3985328",
)
ROLE = "arn:aws:iam::123456789012:role/bbc-bedrock-batch"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
SETTINGS = Settings(
    runs_table="bbc-runs",
    customer_bucket="bbc-customer-test",
    internal_bucket="bbc-internal-test",
    limits=BatchLimits(max_concurrent_jobs=2),
    poll_min_seconds=60,
    poll_max_seconds=900,
    job_timeout_hours=48,
    bedrock_role_arn=ROLE,
    stage="test",
)
_MODEL = botocore.session.get_session().get_service_model("bedrock")
JOB_NAME_PATTERN = _MODEL.shape_for("ModelInvocationJobName").metadata["pattern"]
TOKEN_PATTERN = _MODEL.shape_for("ModelInvocationIdempotencyToken").metadata["pattern"]


def arn(job_id: str) -> str:
    return f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"


def batch(name: str, records: int = 150, round: int = 0) -> ShardRef:
    return ShardRef(name=name, kind=ShardKind.BATCH, records=records, round=round)


def create_params(shard: str, model: str = MODEL, invocation: str = "InvokeModel") -> dict[str, Any]:
    """The exact CreateModelInvocationJob request for a shard of RUN."""
    prefix = f"s3://bbc-internal-test/runs/{RUN.run_id}"
    return {
        "jobName": job_name(RUN.run_id, shard, "test"),
        "roleArn": ROLE,
        "clientRequestToken": client_token(RUN.run_id, shard),
        "modelId": model,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"{prefix}/jobs/{shard}.jsonl", "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"{prefix}/batch-output/{shard}/"}},
        "timeoutDurationInHours": 48,
        "modelInvocationType": invocation,
    }


def job(job_arn: str, status: str, **extra: Any) -> dict[str, Any]:
    """A GetModelInvocationJob response."""
    uri = "s3://bbc-internal-test/x"
    return {
        "jobArn": job_arn,
        "modelId": MODEL,
        "roleArn": ROLE,
        "status": status,
        "submitTime": datetime(2024, 6, 3, 9, 20, tzinfo=UTC),
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": uri}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri}},
        **extra,
    }


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatusStore]:
    """The status table, created as docs/workflow.md describes it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        table = create_status_table(boto3.resource("dynamodb"), "bbc-runs")
        yield StatusStore(table)


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def runtime() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def submitted(store: StatusStore, name: str, job_arn: str, round: int = 0) -> None:
    """A shard whose job was created earlier."""
    store.add_shards(RUN.run_id, [batch(name, round=round)])
    assert store.mark_submitted(RUN.run_id, name, job_arn, job_name(RUN.run_id, name, "test"))


def item(store: StatusStore, name: str) -> dict[str, Any]:
    found = store.get_shard(RUN.run_id, name)
    assert found is not None
    return found


# --- names ----------------------------------------------------------------------------------------------


def test_job_name_is_readable_deterministic_and_valid() -> None:
    name = job_name(RUN.run_id, "shard-00001", "test")
    assert name == "bbc-test-8ad1be7e2405fb3223b7-shard-00001"
    assert job_name(RUN.run_id, "shard-00001", "test") == name
    assert re.fullmatch(JOB_NAME_PATTERN, name)
    assert job_name(RUN.run_id, "shard-00002", "test") != name
    assert job_name(RUN.run_id, "shard-00001", "prod") != name


@pytest.mark.parametrize(
    ("run_id", "shard", "stage"),
    [
        ("f" * 64, "retry2-shard-00001", "production-eu-west-1-blue"),
        (RUN.run_id, "s" * 300, "dev"),
        (RUN.run_id, "shard-00001", "x" * 200),
        ("run id/with spaces", "shard_00001", "dev_eu west"),
    ],
)
def test_job_name_stays_within_the_api_limits(run_id: str, shard: str, stage: str) -> None:
    name = job_name(run_id, shard, stage)
    assert len(name) <= JOB_NAME_MAX
    assert re.fullmatch(JOB_NAME_PATTERN, name)
    assert job_name(run_id, shard, stage) == name


def test_long_job_names_of_different_shards_differ() -> None:
    stage = "a-very-long-stage-name-that-fills-the-job-name"
    names = {job_name(RUN.run_id, f"retry1-shard-{n:05d}", stage) for n in range(1, 50)}
    assert len(names) == 49
    assert all(len(n) <= JOB_NAME_MAX for n in names)
    assert job_name("a" * 20 + "1", "shard-00001", "dev") != job_name("a" * 20 + "2", "shard-00001", "dev")


def test_client_token_is_deterministic_and_valid() -> None:
    token = client_token(RUN.run_id, "shard-00001")
    assert token == client_token(RUN.run_id, "shard-00001")
    assert token != client_token(RUN.run_id, "shard-00002")
    assert token != client_token("0" * 20, "shard-00001")
    assert 1 <= len(token) <= 256
    assert re.fullmatch(TOKEN_PATTERN, token)


# --- submitting -----------------------------------------------------------------------------------------


def test_submit_creates_a_job_with_the_exact_parameters(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    stub.add_response("create_model_invocation_job", {"jobArn": arn("abc123def456")}, create_params("shard-00001"))

    outcome = submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert outcome.outcome is Submission.SUBMITTED
    assert outcome.job_arn == arn("abc123def456")
    assert outcome.job_name == "bbc-test-8ad1be7e2405fb3223b7-shard-00001"
    saved = item(store, "shard-00001")
    assert saved["shard_status"] == ShardStatus.SUBMITTED.value
    assert saved["job_arn"] == arn("abc123def456")
    assert saved["job_name"] == outcome.job_name
    assert saved["attempts"] == 1


def test_the_stack_model_and_converse_reach_the_request(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    override = Settings(**{**SETTINGS.__dict__, "model_id": "amazon.nova-lite-v1:0"})
    stub.add_response(
        "create_model_invocation_job",
        {"jobArn": arn("abc123def456")},
        create_params("shard-00001", model="amazon.nova-lite-v1:0", invocation="Converse"),
    )

    outcome = submit_shard(client, store, override, RUN, batch("shard-00001"), MODEL, "Converse")

    assert outcome.outcome is Submission.SUBMITTED
    assert item(store, "shard-00001")["records"] == 150  # a shard missing from the table is added first


def test_a_second_submit_of_the_same_shard_creates_no_second_job(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    stub.add_response("create_model_invocation_job", {"jobArn": arn("abc123def456")}, create_params("shard-00001"))
    first = submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    # Nothing more is stubbed: any further Bedrock call would fail the test.
    again = submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert first.outcome is Submission.SUBMITTED
    assert again.outcome is Submission.EXISTING
    assert again.job_arn == first.job_arn
    assert item(store, "shard-00001")["attempts"] == 1


@pytest.mark.parametrize("code", ["ServiceQuotaExceededException", "ThrottlingException"])
def test_a_quota_refusal_leaves_the_shard_queued(store: StatusStore, bedrock: tuple[Any, Stubber], code: str) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    for _ in range(2):
        stub.add_client_error(
            "create_model_invocation_job",
            service_error_code=code,
            service_message="Too many jobs in progress",
            http_status_code=429 if code == "ThrottlingException" else 400,
            expected_params=create_params("shard-00001"),
        )

    outcomes = [submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel") for _ in "12"]

    assert [o.outcome for o in outcomes] == [Submission.QUEUED, Submission.QUEUED]
    assert outcomes[0].job_arn is None
    saved = item(store, "shard-00001")
    assert saved["shard_status"] == ShardStatus.QUEUED.value
    assert saved["attempts"] == 2
    assert saved["error"] == f"{code}: Too many jobs in progress"
    assert "job_arn" not in saved


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ConflictException", "A job with this name is being created"),
        ("ValidationException", "The provided job name is currently in use."),
    ],
)
def test_a_conflict_on_create_resolves_to_the_existing_job(
    store: StatusStore, bedrock: tuple[Any, Stubber], code: str, message: str
) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    name = job_name(RUN.run_id, "shard-00001", "test")
    stub.add_client_error(
        "create_model_invocation_job", code, message, 400, expected_params=create_params("shard-00001")
    )
    uri = {"s3Uri": "s3://bbc-internal-test/x"}
    summary = {
        "modelId": MODEL,
        "roleArn": ROLE,
        "submitTime": datetime(2024, 6, 3, tzinfo=UTC),
        "inputDataConfig": {"s3InputDataConfig": uri},
        "outputDataConfig": {"s3OutputDataConfig": uri},
    }
    stub.add_response(
        "list_model_invocation_jobs",
        {
            "invocationJobSummaries": [
                {**summary, "jobArn": arn("000000000009"), "jobName": f"{name}0"},  # contains the name, is another
                {**summary, "jobArn": arn("abc123def456"), "jobName": name},
            ]
        },
        {"nameContains": name, "sortBy": "CreationTime", "sortOrder": "Descending"},
    )

    outcome = submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert outcome.outcome is Submission.EXISTING
    assert outcome.job_arn == arn("abc123def456")
    assert item(store, "shard-00001")["job_arn"] == arn("abc123def456")


def test_a_conflict_with_no_job_behind_it_is_tried_again_later(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    stub.add_client_error("create_model_invocation_job", "ConflictException", "busy", 400)
    stub.add_response("list_model_invocation_jobs", {"invocationJobSummaries": []})

    outcome = submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert outcome.outcome is Submission.QUEUED
    assert item(store, "shard-00001")["attempts"] == 1


def test_a_validation_error_is_a_named_submission_error(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    stub.add_client_error(
        "create_model_invocation_job", "ValidationException", "The input file contains invalid JSON.", 400
    )
    stub.add_response("list_model_invocation_jobs", {"invocationJobSummaries": []})

    with pytest.raises(JobSubmissionError, match=r"shard shard-00001 .*invalid JSON") as raised:
        submit_shard(client, store, SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert isinstance(raised.value, BatchClassifierError)
    assert item(store, "shard-00001")["shard_status"] == ShardStatus.QUEUED.value


def test_when_another_writer_attached_a_job_first_theirs_stands(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaaa"))

    class StaleRead(StatusStore):
        def get_shard(self, run_id: str, shard: str) -> dict[str, Any] | None:
            return {"shard_status": ShardStatus.QUEUED.value}  # read before the other writer's update

    stub.add_response("create_model_invocation_job", {"jobArn": arn("aaaaaaaaaaaa")}, create_params("shard-00001"))
    outcome = submit_shard(client, StaleRead(store._table), SETTINGS, RUN, batch("shard-00001"), MODEL, "InvokeModel")

    assert outcome.outcome is Submission.EXISTING
    assert outcome.job_arn == arn("aaaaaaaaaaaa")
    assert item(store, "shard-00001")["attempts"] == 1


def test_an_on_demand_shard_is_never_a_job(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, _ = bedrock
    shard = ShardRef(name="shard-00009", kind=ShardKind.ON_DEMAND, records=12)
    with pytest.raises(JobSubmissionError, match="on-demand"):
        submit_shard(client, store, SETTINGS, RUN, shard, MODEL, "InvokeModel")


# --- polling --------------------------------------------------------------------------------------------


def poll(
    store: StatusStore, client: Any, name: str = "shard-00001", wait_seconds: int = 60, now: datetime | None = None
) -> JobCheck:
    return check_job(
        client,
        store,
        SETTINGS,
        RUN,
        batch(name),
        JobCheck(status="Submitted", wait_seconds=wait_seconds),
        invocation=lambda: (MODEL, "InvokeModel"),
        now=now,
    )


@pytest.mark.parametrize("status", sorted(TERMINAL_JOB_STATUSES))
def test_every_terminal_status_ends_the_loop(store: StatusStore, bedrock: tuple[Any, Stubber], status: str) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("abc123def456"))
    counts = {"totalRecordCount": 150, "processedRecordCount": 150, "successRecordCount": 140, "errorRecordCount": 10}
    ended = datetime(2024, 6, 3, 11, 0, tzinfo=UTC)
    stub.add_response(
        "get_model_invocation_job",
        job(arn("abc123def456"), status, message="job message", endTime=ended, **counts),
        {"jobIdentifier": arn("abc123def456")},
    )

    result = poll(store, client, wait_seconds=480)

    assert (result.done, result.status) == (True, status)
    saved = item(store, "shard-00001")
    assert saved["shard_status"] == status
    assert (saved["total_records"], saved["success_records"], saved["error_records"]) == (150, 140, 10)
    assert saved["job_message"] == "job message"
    assert saved["job_ended_at"] == "2024-06-03T11:00:00+00:00"


@pytest.mark.parametrize("status", ["Submitted", "Validating", "Scheduled", "InProgress", "Stopping"])
def test_jobs_in_progress_keep_the_loop_going(store: StatusStore, bedrock: tuple[Any, Stubber], status: str) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("abc123def456"))
    stub.add_response("get_model_invocation_job", job(arn("abc123def456"), status, processedRecordCount=20))

    result = poll(store, client, wait_seconds=60)

    assert (result.done, result.status, result.wait_seconds) == (False, status, 120)
    assert item(store, "shard-00001")["shard_status"] == status
    assert item(store, "shard-00001")["processed_records"] == 20


def test_a_queued_shard_is_submitted_by_the_loop_and_the_wait_starts_again(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00003")])
    stub.add_response("create_model_invocation_job", {"jobArn": arn("aaaaaaaaaaa3")}, create_params("shard-00003"))

    result = poll(store, client, name="shard-00003", wait_seconds=480)

    assert (result.done, result.status, result.wait_seconds) == (False, "Submitted", 60)
    assert item(store, "shard-00003")["job_arn"] == arn("aaaaaaaaaaa3")
    assert item(store, "shard-00003")["submitted_at"]


def test_a_quota_refusal_while_checking_keeps_the_shard_queued(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, stub = bedrock
    store.add_shards(RUN.run_id, [batch("shard-00001")])
    stub.add_client_error("create_model_invocation_job", "ServiceQuotaExceededException", "quota", 400)

    result = poll(store, client, wait_seconds=120)

    assert (result.done, result.status, result.wait_seconds) == (False, "QUEUED", 240)
    assert item(store, "shard-00001")["attempts"] == 1


def test_a_processed_shard_ends_the_loop_without_asking_bedrock(
    store: StatusStore, bedrock: tuple[Any, Stubber]
) -> None:
    client, _ = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaa1"))
    store.set_shard_status(RUN.run_id, "shard-00001", ShardStatus.PROCESSED)

    assert poll(store, client).done


def test_the_wait_doubles_up_to_the_maximum() -> None:
    waits = [60]
    for _ in range(6):
        waits.append(next_wait(waits[-1], SETTINGS))
    assert waits == [60, 120, 240, 480, 900, 900, 900]
    assert next_wait(1, SETTINGS) == 60  # never below the minimum
    assert next_wait(900, SETTINGS, reset=True) == 60


def test_a_week_long_job_is_a_few_hundred_polls_in_its_child_workflow() -> None:
    """Planning figure: the child history of a shard whose job runs 168 h, with the template's defaults."""
    defaults = Settings(runs_table="t", customer_bucket="c", internal_bucket="i", poll_min_seconds=60)
    defaults = dataclasses.replace(defaults, poll_max_seconds=1800)
    polls = polls_for(168 * 3600, defaults)
    # Each turn of WaitForJob → CheckJob → JobEnded? records 9 events (entered/exited of three states and
    # the Lambda task's scheduled/started/succeeded); the rest of the child is about 30 events.
    events = 9 * polls + 30
    assert 300 <= polls <= 400
    assert events < 25_000 / 5
    assert polls_for(3600, defaults) == 6  # 60 + 120 + 240 + 480 + 960 + 1800 s


def test_an_unchanged_job_grows_the_wait_and_writes_nothing(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaa1"))
    store.set_shard_status(RUN.run_id, "shard-00001", ShardStatus.IN_PROGRESS)
    before = item(store, "shard-00001")["updated_at"]
    waits = []
    wait_seconds = 60
    for _ in range(5):
        stub.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "InProgress"))
        wait_seconds = poll(store, client, wait_seconds=wait_seconds).wait_seconds
        waits.append(wait_seconds)
    assert waits == [120, 240, 480, 900, 900]
    assert item(store, "shard-00001")["updated_at"] == before


def test_a_throttled_status_read_waits_for_the_next_poll(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaa1"))
    stub.add_client_error("get_model_invocation_job", "ThrottlingException", "slow down", 429)

    result = poll(store, client)

    assert (result.done, result.status) == (False, "Submitted")


def test_a_job_open_long_past_its_timeout_is_a_named_error(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaa1"))
    submitted_at = datetime.fromisoformat(item(store, "shard-00001")["submitted_at"])
    limit = timedelta(hours=SETTINGS.job_timeout_hours + OVERDUE_GRACE_HOURS)
    stub.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "InProgress"))
    assert not poll(store, client, now=submitted_at + limit - timedelta(minutes=1)).done

    stub.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "InProgress"))
    with pytest.raises(JobOverdueError, match="redrive"):
        poll(store, client, now=submitted_at + limit + timedelta(minutes=1))


# --- on-demand calls ------------------------------------------------------------------------------------

INVOKE_INPUT = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 64,
    "system": "Classify.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "I want a refund"}]}],
}
CONVERSE_INPUT = {
    "system": [{"text": "Classify."}],
    "messages": [{"role": "user", "content": [{"text": "I want a refund"}]}],
    "inferenceConfig": {"maxTokens": 64, "temperature": 0.0},
}


def line(rid: str, model_input: dict[str, Any]) -> bytes:
    return json.dumps({"recordId": rid, "modelInput": model_input}).encode() + b"\n"


def invoke_reply(text: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 8},
        }
    ).encode()
    return {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"}


INVOKE_PARAMS = {
    "modelId": MODEL,
    "body": json.dumps(INVOKE_INPUT),
    "contentType": "application/json",
    "accept": "application/json",
}


def test_throttling_is_retried_with_backoff_then_succeeds(runtime: tuple[Any, Stubber]) -> None:
    client, stub = runtime
    stub.add_client_error(
        "invoke_model", "ThrottlingException", "Too many requests", 429, expected_params=INVOKE_PARAMS
    )
    stub.add_client_error("invoke_model", "ServiceUnavailableException", "Unavailable", 503)
    stub.add_response("invoke_model", invoke_reply("<classification>Refund</classification>"), INVOKE_PARAMS)
    sleeps: list[float] = []

    results = list(
        invoke_on_demand(client, MODEL, "InvokeModel", [line("R0000000001", INVOKE_INPUT)], 1, 5, sleeps.append)
    )

    assert len(results) == 1
    assert results[0].record_id == "R0000000001"
    assert not results[0].failed
    assert results[0].text == "<classification>Refund</classification>"
    assert (results[0].input_tokens, results[0].output_tokens) == (30, 8)
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter under a doubling ceiling


def test_a_validation_error_is_a_failed_result_without_retries(runtime: tuple[Any, Stubber]) -> None:
    client, stub = runtime
    stub.add_client_error("invoke_model", "ValidationException", "Input is too long for the model.", 400)
    stub.add_response("invoke_model", invoke_reply("<classification>Refund</classification>"))
    sleeps: list[float] = []
    lines = [line("R0000000001", INVOKE_INPUT), b"\n", line("R0000000002", INVOKE_INPUT)]

    results = {r.record_id: r for r in invoke_on_demand(client, MODEL, "InvokeModel", lines, 1, 5, sleeps.append)}

    assert results["R0000000001"].error_code == "ValidationException"
    assert results["R0000000001"].error_message == "Input is too long for the model."
    assert not results["R0000000001"].retryable
    assert not results["R0000000002"].failed
    assert sleeps == []


def test_retries_stop_after_max_attempts(runtime: tuple[Any, Stubber]) -> None:
    client, stub = runtime
    for _ in range(3):
        stub.add_client_error("invoke_model", "ThrottlingException", "Too many requests", 429)
    sleeps: list[float] = []

    [result] = invoke_on_demand(client, MODEL, "InvokeModel", [line("R0000000001", INVOKE_INPUT)], 1, 3, sleeps.append)

    assert result.error_code == "ThrottlingException"
    assert result.retryable  # a later retry round may still get it through
    assert len(sleeps) == 2


def test_converse_requests_and_replies(runtime: tuple[Any, Stubber]) -> None:
    client, stub = runtime
    stub.add_response(
        "converse",
        {
            "output": {
                "message": {"role": "assistant", "content": [{"text": "<classification>Refund</classification>"}]}
            },
            "stopReason": "end_turn",
            "usage": {"inputTokens": 25, "outputTokens": 7, "totalTokens": 32},
            "metrics": {"latencyMs": 420},
        },
        {"modelId": "amazon.nova-lite-v1:0", **CONVERSE_INPUT},
    )

    [result] = invoke_on_demand(client, "amazon.nova-lite-v1:0", "Converse", [line("R0000000001", CONVERSE_INPUT)])

    assert result.text == "<classification>Refund</classification>"
    assert result.stop_reason == "end_turn"
    assert (result.input_tokens, result.output_tokens) == (25, 7)


def test_an_unreadable_reply_is_a_failed_result(runtime: tuple[Any, Stubber]) -> None:
    client, stub = runtime
    body = b'{"unexpected": true}'
    stub.add_response("invoke_model", {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "x"})

    [result] = invoke_on_demand(client, MODEL, "InvokeModel", [line("R0000000001", INVOKE_INPUT)])

    assert result.error_code == "InvalidModelResponse"


def test_a_line_that_is_not_a_batch_line_is_an_input_error() -> None:
    with pytest.raises(MalformedInputError, match="line 2"):
        list(invoke_on_demand(object(), MODEL, "InvokeModel", [b"\n", b'{"recordId": 1}']))


class SlowRuntime:
    """A bedrock-runtime stand-in that measures how many calls overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0

    def converse(self, modelId: str, **request: Any) -> dict[str, Any]:  # noqa: N803 - the API's argument name
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        text = request["messages"][0]["content"][0]["text"]
        return {"output": {"message": {"content": [{"text": text}]}}, "stopReason": "end_turn", "usage": {}}


def test_concurrency_and_read_ahead_are_bounded() -> None:
    fake = SlowRuntime()
    read = 0

    def lines() -> Iterator[bytes]:
        nonlocal read
        for n in range(1, 31):
            read += 1
            yield line(f"R{n:010d}", {"messages": [{"role": "user", "content": [{"text": f"text {n}"}]}]})

    results = invoke_on_demand(fake, "amazon.nova-lite-v1:0", "Converse", lines(), concurrency=3)
    first = next(results)
    read_before_first = read
    rest = list(results)

    assert fake.most == 3
    assert read_before_first <= 2 * 3
    records = {r.record_id: r.text for r in [first, *rest]}
    assert records == {f"R{n:010d}": f"text {n}" for n in range(1, 31)}


def test_a_turn_that_only_polls_reads_nothing_of_the_run(store: StatusStore, bedrock: tuple[Any, Stubber]) -> None:
    client, stub = bedrock
    submitted(store, "shard-00001", arn("aaaaaaaaaaa1"))
    stub.add_response("get_model_invocation_job", job(arn("aaaaaaaaaaa1"), "InProgress"))

    def unexpected() -> tuple[str, str]:
        raise AssertionError("the run's task was read to poll a job")

    checked = check_job(
        client, store, SETTINGS, RUN, batch("shard-00001"), JobCheck(status="Submitted"), invocation=unexpected
    )
    assert checked.status == "InProgress"
