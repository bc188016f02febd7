"""The local Bedrock service over real HTTP: boto3's ``bedrock`` and ``bedrock-runtime`` clients against it.

moto's server (in this process, on a free port) holds S3 and DynamoDB; the service reads job inputs from it and
writes outputs to it, and a stub model answers. The last tests run our own submit and on-demand code against it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_fixtures import create_status_table
from botocore.config import Config
from moto.server import ThreadedMotoServer

from batch_classifier.bedrock import Submission, client_token, invoke_on_demand, job_name, submit_shard
from batch_classifier.outputs import parse_manifest, parse_output_line
from batch_classifier.records import BatchLineEncoder, model_input, record_id
from batch_classifier.settings import Settings
from batch_classifier.sharding import ShardKind
from batch_classifier.status import StatusStore
from batch_classifier.storage import RunFiles, s3_uri
from batch_classifier.tasks import load_task
from batch_classifier.workflow import RunRef, ShardRef
from batch_classifier_local import bedrock_job_files, bedrock_jobs
from batch_classifier_local.bedrock_service import LocalBedrock
from batch_classifier_local.faults import TERMINAL_STATUSES, FaultPlan
from batch_classifier_local.models import Completion, ModelThrottled

REGION = "us-east-1"
CREDENTIALS = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BUCKET = "local-bedrock-test"
TABLE = "local-bedrock-runs"
ROLE = "arn:aws:iam::123456789012:role/bbc-bedrock-batch"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
NO_RETRIES = Config(retries={"total_max_attempts": 1})
FAST = 0.001


class EchoModel:
    """Answers with the last user message (fails on a message containing 'boom')."""

    name = "echo"

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        text = messages[-1]["content"]
        if "boom" in text:
            raise RuntimeError("the model broke")
        return Completion(
            text=f"<classification>Echo</classification><explanation>{text}</explanation>",
            input_tokens=len(system.split()) + len(text.split()),
            output_tokens=7,
        )


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, **CREDENTIALS).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture(scope="module")
def s3(moto_url: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_url, **CREDENTIALS)


@pytest.fixture
def service(s3: Any) -> Iterator[LocalBedrock]:
    with LocalBedrock(s3, EchoModel(), time_scale=FAST) as running:
        yield running


def clients(service: LocalBedrock) -> tuple[Any, Any]:
    bedrock = boto3.client("bedrock", endpoint_url=service.url, config=NO_RETRIES, **CREDENTIALS)
    runtime = boto3.client("bedrock-runtime", endpoint_url=service.url, config=NO_RETRIES, **CREDENTIALS)
    return bedrock, runtime


@pytest.fixture
def bedrock(service: LocalBedrock) -> Any:
    return clients(service)[0]


@pytest.fixture
def runtime(service: LocalBedrock) -> Any:
    return clients(service)[1]


_unique = iter(range(1, 1_000_000))


@pytest.fixture
def prefix() -> str:
    """A fresh folder of the shared bucket for each test."""
    return f"t{next(_unique):04d}-{time.monotonic_ns() % 100000}"


# --- helpers --------------------------------------------------------------------------------------------


def anthropic_input(text: str) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "system": "Classify the text.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def converse_input(text: str) -> dict[str, Any]:
    return {
        "system": [{"text": "Classify the text."}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 100},
    }


def put_lines(s3: Any, key: str, lines: list[str]) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
    return s3_uri(BUCKET, key)


def put_input(s3: Any, key: str, count: int, *, converse: bool = False, start: int = 0) -> str:
    make = converse_input if converse else anthropic_input
    lines = [
        json.dumps({"recordId": f"R{i:010d}", "modelInput": make(f"text number {i}")})
        for i in range(start, start + count)
    ]
    return put_lines(s3, key, lines)


def create(
    bedrock: Any,
    name: str,
    input_uri: str,
    output_uri: str,
    *,
    token: str | None = None,
    invocation: str = "InvokeModel",
    timeout_hours: int = 24,
) -> str:
    request: dict[str, Any] = {
        "jobName": name,
        "roleArn": ROLE,
        "modelId": MODEL_ID,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
        "timeoutDurationInHours": timeout_hours,
        "modelInvocationType": invocation,
    }
    if token is not None:
        request["clientRequestToken"] = token
    arn: str = bedrock.create_model_invocation_job(**request)["jobArn"]
    return arn


def wait(bedrock: Any, arn: str, timeout: float = 30.0) -> tuple[dict[str, Any], list[str]]:
    """Poll until the job ends; returns the last response and the distinct statuses seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in TERMINAL_STATUSES:
            return job, seen
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.005)


def job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def keys(s3: Any, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def read_lines(s3: Any, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def manifest(s3: Any, key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return loaded


def http(url: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


# --- batch jobs -----------------------------------------------------------------------------------------


def test_a_job_goes_through_the_lifecycle_and_writes_the_real_layout(s3: Any, prefix: str) -> None:
    with LocalBedrock(s3, EchoModel(), time_scale=0.1) as service:
        bedrock, _ = clients(service)
        source = put_input(s3, f"{prefix}/in/shard-1.jsonl", 20)
        arn = create(bedrock, "lifecycle-job", source, s3_uri(BUCKET, f"{prefix}/out/"))

        job, seen = wait(bedrock, arn)

    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")
    assert len(job_id(arn)) == 12
    assert seen == ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert job["totalRecordCount"] == job["processedRecordCount"] == job["successRecordCount"] == 20
    assert job["errorRecordCount"] == 0
    assert job["submitTime"] <= job["lastModifiedTime"] == job["endTime"]
    assert job["modelInvocationType"] == "InvokeModel"
    assert "message" not in job

    out = f"{prefix}/out/{job_id(arn)}/"
    assert keys(s3, f"{prefix}/out/") == {out + "shard-1.jsonl.out", out + "manifest.json.out"}
    lines = read_lines(s3, out + "shard-1.jsonl.out")
    ids = [line["recordId"] for line in lines]
    assert sorted(ids) == [f"R{i:010d}" for i in range(20)]
    assert ids != sorted(ids)  # Bedrock does not keep the input order
    first = next(line for line in lines if line["recordId"] == "R0000000003")
    assert list(first) == ["recordId", "modelInput", "modelOutput"]
    assert first["modelInput"] == anthropic_input("text number 3")
    reply = first["modelOutput"]
    assert reply["type"] == "message"
    assert reply["role"] == "assistant"
    assert reply["model"] == MODEL_ID
    assert reply["content"] == [
        {"type": "text", "text": "<classification>Echo</classification><explanation>text number 3</explanation>"}
    ]
    assert reply["stop_reason"] == "end_turn"
    assert reply["usage"] == {"input_tokens": 6, "output_tokens": 7}
    parsed = parse_output_line(json.dumps(first).encode())
    assert parsed.text is not None and "text number 3" in parsed.text
    summary = manifest(s3, out + "manifest.json.out")
    assert summary == {
        "totalRecordCount": 20,
        "processedRecordCount": 20,
        "successRecordCount": 20,
        "errorRecordCount": 0,
        "inputTokenCount": 20 * 6,
        "outputTokenCount": 20 * 7,
    }
    assert parse_manifest(json.dumps(summary)).success_records == 20


def test_a_prefix_input_reads_every_jsonl_file_under_it(
    service: LocalBedrock, bedrock: Any, s3: Any, prefix: str
) -> None:
    put_input(s3, f"{prefix}/in/a.jsonl", 3)
    put_input(s3, f"{prefix}/in/b.jsonl", 2, start=3)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/notes.txt", Body=b"not an input")

    arn = create(bedrock, "prefix-job", s3_uri(BUCKET, f"{prefix}/in"), s3_uri(BUCKET, f"{prefix}/out"))
    job, _ = wait(bedrock, arn)

    out = f"{prefix}/out/{job_id(arn)}/"
    assert job["status"] == "Completed"
    assert keys(s3, f"{prefix}/out/") == {out + "a.jsonl.out", out + "b.jsonl.out", out + "manifest.json.out"}
    assert len(read_lines(s3, out + "a.jsonl.out")) == 3
    assert {line["recordId"] for line in read_lines(s3, out + "b.jsonl.out")} == {"R0000000003", "R0000000004"}
    assert manifest(s3, out + "manifest.json.out")["totalRecordCount"] == 5


def test_a_missing_input_fails_the_job_with_a_message(service: LocalBedrock, bedrock: Any, prefix: str) -> None:
    arn = create(bedrock, "no-input", s3_uri(BUCKET, f"{prefix}/nothing/"), s3_uri(BUCKET, f"{prefix}/out/"))

    job, _ = wait(bedrock, arn)

    assert job["status"] == "Failed"
    assert ".jsonl" in job["message"]


def test_the_same_token_returns_the_same_job(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 2)
    output = s3_uri(BUCKET, f"{prefix}/out/")

    first = create(bedrock, "token-job", source, output, token="bbc-token-1")
    again = create(bedrock, "token-job", source, output, token="bbc-token-1")

    assert again == first
    assert service.stats.create_calls == 2
    assert service.stats.jobs_created == 1
    assert bedrock.get_model_invocation_job(jobIdentifier=first)["clientRequestToken"] == "bbc-token-1"


def test_a_name_taken_with_another_token_is_a_conflict(
    service: LocalBedrock, bedrock: Any, s3: Any, prefix: str
) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 2)
    output = s3_uri(BUCKET, f"{prefix}/out/")
    create(bedrock, "named-job", source, output, token="first-token")

    with pytest.raises(bedrock.exceptions.ConflictException) as raised:
        create(bedrock, "named-job", source, output, token="second-token")

    assert raised.value.response["Error"]["Code"] == "ConflictException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert service.stats.jobs_created == 1


def test_jobs_beyond_the_open_job_quota_are_refused(s3: Any, prefix: str) -> None:
    with LocalBedrock(s3, EchoModel(), time_scale=0.2, max_open_jobs=2) as service:
        bedrock, _ = clients(service)
        source = put_input(s3, f"{prefix}/in.jsonl", 2)
        output = s3_uri(BUCKET, f"{prefix}/out/")
        arns = [create(bedrock, f"quota-{i}", source, output) for i in range(2)]

        with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException) as raised:
            create(bedrock, "quota-2", source, output)
        assert raised.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "(2)" in raised.value.response["Error"]["Message"]

        bedrock.stop_model_invocation_job(jobIdentifier=arns[0])
        assert service.wait_until_ended(arns[0]) == "Stopped"
        create(bedrock, "quota-2", source, output)  # a slot is free again

    assert service.stats.quota_refusals == 1
    assert service.stats.jobs_created == 3


def test_the_fault_plan_refuses_the_next_creates(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 2)
    output = s3_uri(BUCKET, f"{prefix}/out/")
    service.faults = FaultPlan(quota_refusals=2)

    for _ in range(2):
        with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException) as raised:
            create(bedrock, "refused-job", source, output, token="same-token")
        assert raised.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    arn = create(bedrock, "refused-job", source, output, token="same-token")

    assert wait(bedrock, arn)[0]["status"] == "Completed"
    assert service.faults.quota_refusals == 0
    assert (service.stats.create_calls, service.stats.jobs_created, service.stats.quota_refusals) == (3, 1, 2)


@pytest.mark.parametrize("status", ["Failed", "PartiallyCompleted", "Expired", "Stopped"])
def test_each_injected_terminal_status(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str, status: str) -> None:
    service.faults = FaultPlan(job_statuses={f"doomed-{status}": status, "untouched": "Failed"})
    source = put_input(s3, f"{prefix}/in/shard.jsonl", 10)
    output = s3_uri(BUCKET, f"{prefix}/out/")

    arn = create(bedrock, f"doomed-{status}", source, output)
    healthy = create(bedrock, "healthy", source, s3_uri(BUCKET, f"{prefix}/healthy/"))
    job, _ = wait(bedrock, arn)

    assert wait(bedrock, healthy)[0]["status"] == "Completed"
    assert job["status"] == status
    assert job["message"]
    assert "endTime" in job
    found = keys(s3, f"{prefix}/out/")
    if status == "Failed":
        assert found == set()
        return
    out = f"{prefix}/out/{job_id(arn)}/"
    assert found == {out + "shard.jsonl.out", out + "manifest.json.out"}
    assert len(read_lines(s3, out + "shard.jsonl.out")) == 5
    summary = manifest(s3, out + "manifest.json.out")
    assert (summary["totalRecordCount"], summary["processedRecordCount"], summary["successRecordCount"]) == (10, 5, 5)
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (10, 5)


def test_a_status_fault_can_match_the_input_uri(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    service.faults = FaultPlan(job_statuses={f"{prefix}/special": "Expired"})
    source = put_input(s3, f"{prefix}/special/in.jsonl", 4)

    arn = create(bedrock, "by-uri", source, s3_uri(BUCKET, f"{prefix}/out/"))

    assert wait(bedrock, arn)[0]["status"] == "Expired"


def test_record_errors_malformed_lines_and_missing_records(
    service: LocalBedrock, bedrock: Any, s3: Any, prefix: str
) -> None:
    service.faults = FaultPlan(record_errors={"429": 2, "400": 1, "500": 1}, missing_records=2)
    good = [json.dumps({"recordId": f"R{i:010d}", "modelInput": anthropic_input(f"text {i}")}) for i in range(10)]
    lines = [
        *good[:5],
        "this is not json",
        json.dumps({"recordId": "RNOINPUT001"}),
        json.dumps({"recordId": "RBADBODY001", "modelInput": {"messages": []}}),
        json.dumps({"recordId": "RBOOM000001", "modelInput": anthropic_input("boom")}),
        *good[5:],
    ]
    source = put_lines(s3, f"{prefix}/in.jsonl", lines)

    arn = create(bedrock, "faulty-records", source, s3_uri(BUCKET, f"{prefix}/out/"))
    job, _ = wait(bedrock, arn)

    assert job["status"] == "Completed"  # record errors alone do not make a job PartiallyCompleted
    out = read_lines(s3, f"{prefix}/out/{job_id(arn)}/in.jsonl.out")
    by_id = {line["recordId"]: line for line in out}
    errors = {rid: line["error"]["errorCode"] for rid, line in by_id.items() if "error" in line}
    generated = "00000000006"  # the id Bedrock gives the sixth line, which has none of its own
    assert errors == {
        "R0000000000": 429,
        "R0000000001": 429,
        "R0000000002": 400,
        "R0000000003": 500,
        generated: 400,
        "RNOINPUT001": 400,
        "RBADBODY001": 400,
        "RBOOM000001": 500,
    }
    assert "modelInput" not in by_id[generated]
    assert "anthropic_version" in by_id["RBADBODY001"]["error"]["errorMessage"]
    assert all(line["error"]["errorMessage"] for line in by_id.values() if "error" in line)
    assert set(by_id) - set(errors) == {f"R{i:010d}" for i in (4, 5, 6, 7)}  # R8 and R9 went missing
    assert parse_output_line(json.dumps(by_id["R0000000000"])).retryable
    summary = manifest(s3, f"{prefix}/out/{job_id(arn)}/manifest.json.out")
    assert summary["totalRecordCount"] == summary["processedRecordCount"] == 14
    assert (summary["successRecordCount"], summary["errorRecordCount"]) == (6, 8)
    assert (job["successRecordCount"], job["errorRecordCount"]) == (6, 8)


def test_converse_jobs_write_converse_responses(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 3, converse=True)

    arn = create(bedrock, "converse-job", source, s3_uri(BUCKET, f"{prefix}/out/"), invocation="Converse")
    job, _ = wait(bedrock, arn)

    assert job["status"] == "Completed"
    assert job["modelInvocationType"] == "Converse"
    lines = read_lines(s3, f"{prefix}/out/{job_id(arn)}/in.jsonl.out")
    line = next(line for line in lines if line["recordId"] == "R0000000001")
    reply = line["modelOutput"]
    assert reply["output"]["message"]["role"] == "assistant"
    assert "text number 1" in reply["output"]["message"]["content"][0]["text"]
    assert reply["stopReason"] == "end_turn"
    assert reply["usage"] == {"inputTokens": 6, "outputTokens": 7, "totalTokens": 13}
    assert isinstance(reply["metrics"]["latencyMs"], int)
    assert parse_output_line(json.dumps(line)).output_tokens == 7


class ProcessModel(EchoModel):
    """The echo model, answering in the local Bedrock's answer processes (it says which one answered)."""

    answers_in_processes = True

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        if "throttle" in messages[-1]["content"]:
            raise ModelThrottled("slow down")
        echoed = super().complete(system, messages, max_tokens)
        return Completion(f"{echoed.text} pid {os.getpid()}", echoed.input_tokens, echoed.output_tokens)


def test_a_model_that_allows_it_answers_in_processes_of_its_own(s3: Any, prefix: str) -> None:
    texts = [f"text {i}" for i in range(200)]
    texts[7], texts[150] = "boom", "throttle"
    lines = [json.dumps({"recordId": f"R{i:010d}", "modelInput": anthropic_input(t)}) for i, t in enumerate(texts)]
    source = put_lines(s3, f"{prefix}/in.jsonl", [*lines, "not json"])
    with LocalBedrock(s3, ProcessModel(), time_scale=FAST) as service:
        bedrock, _ = clients(service)
        arn = create(bedrock, "in-processes", source, s3_uri(BUCKET, f"{prefix}/out/"))
        job, _ = wait(bedrock, arn)
        assert service.stats.records_answered == 198  # counted in the service's process

    assert (job["status"], job["successRecordCount"], job["errorRecordCount"]) == ("Completed", 198, 3)
    by_id = {line["recordId"]: line for line in read_lines(s3, f"{prefix}/out/{job_id(arn)}/in.jsonl.out")}
    errors = {rid: line["error"]["errorCode"] for rid, line in by_id.items() if "error" in line}
    assert errors == {"R0000000007": 500, "R0000000150": 429, "00000000201": 400}
    answered = [line for line in by_id.values() if "modelOutput" in line]
    pids = {line["modelOutput"]["content"][0]["text"].rsplit(" ", 1)[1] for line in answered}
    assert len(answered) == 198 and str(os.getpid()) not in pids
    assert all(f"<explanation>{texts[int(line['recordId'][1:])]}</explanation>" in str(line) for line in answered)


def test_invoke_model_bodies_in_a_converse_job_are_record_errors(
    service: LocalBedrock, bedrock: Any, s3: Any, prefix: str
) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 2)  # Anthropic bodies: the system prompt is a string

    arn = create(bedrock, "wrong-shape", source, s3_uri(BUCKET, f"{prefix}/out/"), invocation="Converse")
    job, _ = wait(bedrock, arn)

    assert (job["status"], job["successRecordCount"], job["errorRecordCount"]) == ("Completed", 0, 2)
    lines = read_lines(s3, f"{prefix}/out/{job_id(arn)}/in.jsonl.out")
    assert {line["error"]["errorCode"] for line in lines} == {400}


def test_stop_ends_a_job_stopped(s3: Any, prefix: str) -> None:
    with LocalBedrock(s3, EchoModel(), time_scale=0.2) as service:
        bedrock, _ = clients(service)
        source = put_input(s3, f"{prefix}/in.jsonl", 10)
        output = s3_uri(BUCKET, f"{prefix}/out/")
        early = create(bedrock, "stop-early", source, output)
        running = create(bedrock, "stop-running", source, output)

        bedrock.stop_model_invocation_job(jobIdentifier=early)
        assert bedrock.get_model_invocation_job(jobIdentifier=early)["status"] == "Stopping"
        while bedrock.get_model_invocation_job(jobIdentifier=running)["status"] != "InProgress":
            time.sleep(0.005)
        bedrock.stop_model_invocation_job(jobIdentifier=job_id(running))  # the id works as well as the ARN
        stopped, seen = wait(bedrock, running)
        first, _ = wait(bedrock, early)

        with pytest.raises(bedrock.exceptions.ValidationException):
            bedrock.stop_model_invocation_job(jobIdentifier=early)

    assert seen[0] in ("InProgress", "Stopping")
    assert seen[-2:] == ["Stopping", "Stopped"]
    assert stopped["status"] == first["status"] == "Stopped"
    assert stopped["processedRecordCount"] < 10
    assert "totalRecordCount" not in first
    assert keys(s3, f"{prefix}/out/{job_id(early)}/") == set()


class ReadSizes:
    """An S3 body that records the size of every read of it."""

    def __init__(self, body: Any, sizes: list[int | None]) -> None:
        self._body = body
        self._sizes = sizes

    def read(self, amt: int | None = None) -> bytes:
        self._sizes.append(amt)
        data: bytes = self._body.read(amt)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class SpyS3:
    """An S3 client that records how input bodies are read and what output bodies are given; it can refuse to
    write ``.out`` objects."""

    def __init__(self, s3: Any, *, refuse_outputs: bool = False) -> None:
        self._s3 = s3
        self.refuse_outputs = refuse_outputs
        self.gets: list[str] = []
        self.reads: list[int | None] = []
        self.puts: dict[str, Any] = {}

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append(kwargs["Key"])
        response = self._s3.get_object(**kwargs)
        response["Body"] = ReadSizes(response["Body"], self.reads)
        return response

    def put_object(self, **kwargs: Any) -> Any:
        self.puts[kwargs["Key"]] = kwargs["Body"]
        if self.refuse_outputs and kwargs["Key"].endswith(".jsonl.out"):
            raise RuntimeError("no room left")
        return self._s3.put_object(**kwargs)

    def upload_fileobj(self, body: Any, bucket: str, key: str, **kwargs: Any) -> Any:
        self.puts[key] = body
        if self.refuse_outputs and key.endswith(".jsonl.out"):
            raise RuntimeError("no room left")
        return self._s3.upload_fileobj(body, bucket, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


class SnapshotModel(EchoModel):
    """Echoes, and takes a tracemalloc snapshot while it answers the ``at``-th record."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0
        self.snapshot: tracemalloc.Snapshot | None = None

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        self.calls += 1
        if self.calls == self.at:
            self.snapshot = tracemalloc.take_snapshot()
        return super().complete(system, messages, max_tokens)


def test_a_job_streams_its_input_and_output_and_holds_little_of_it(s3: Any, prefix: str) -> None:
    count = 1000  # about 9 MB of input: the travel task's prompt is 8 KB
    encoder = BatchLineEncoder(load_task("travel"))
    body = b"".join(encoder.encode(record_id(i), f"Caller {i} asks about a refund.") for i in range(count))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/big.jsonl", Body=body)
    spy = SpyS3(s3)
    model = SnapshotModel(at=count)
    tracemalloc.start(10)
    try:
        with LocalBedrock(spy, model, time_scale=FAST) as service:
            bedrock, _ = clients(service)
            arn = create(bedrock, "big-job", s3_uri(BUCKET, f"{prefix}/in/big.jsonl"), s3_uri(BUCKET, f"{prefix}/out/"))
            job, _ = wait(bedrock, arn, timeout=120)
    finally:
        tracemalloc.stop()

    assert job["status"] == "Completed"
    assert job["successRecordCount"] == count
    # The input is read from S3 once, a chunk at a time: never whole.
    assert spy.gets == [f"{prefix}/in/big.jsonl"]
    assert spy.reads and all(size is not None and 0 < size <= 1024 * 1024 for size in spy.reads)
    # While it answers its last record, the service holds a small part of the input, not its records.
    assert model.snapshot is not None
    mine = model.snapshot.filter_traces(
        [tracemalloc.Filter(True, module.__file__, all_frames=True) for module in (bedrock_jobs, bedrock_job_files)]
    )
    held = sum(stat.size for stat in mine.statistics("filename"))
    assert held < len(body) / 4, f"the service holds {held} bytes of a {len(body)}-byte input"
    # The output is uploaded from a file object, not built in memory, and holds every record, shuffled.
    out = f"{prefix}/out/{job_id(arn)}/big.jsonl.out"
    assert not isinstance(spy.puts[out], bytes | bytearray)
    lines = read_lines(s3, out)
    ids = [line["recordId"] for line in lines]
    assert sorted(ids) == [record_id(i) for i in range(count)]
    assert ids != sorted(ids)
    assert all(line["modelInput"]["system"] == lines[0]["modelInput"]["system"] for line in lines)


def test_local_files_are_deleted_however_a_job_ends(s3: Any, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    original = bedrock_job_files.local_file

    def local_file() -> Any:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(bedrock_job_files, "local_file", local_file)
    source = put_input(s3, f"{prefix}/in.jsonl", 10)
    output = s3_uri(BUCKET, f"{prefix}/out/")
    empty = put_lines(s3, f"{prefix}/empty.jsonl", ["", "  "])

    spy = SpyS3(s3, refuse_outputs=True)
    with LocalBedrock(spy, EchoModel(), time_scale=FAST) as service:
        bedrock, _ = clients(service)
        unwritable, _ = wait(bedrock, create(bedrock, "unwritable", source, output))
        blank, _ = wait(bedrock, create(bedrock, "blank", empty, output))
        spy.refuse_outputs = False
        done, _ = wait(bedrock, create(bedrock, "done", source, output))
    assert (unwritable["status"], blank["status"], done["status"]) == ("Failed", "Failed", "Completed")
    assert "Could not write the output" in unwritable["message"]
    assert len(made) == 5  # an input copy each, and an output spool for the two answered jobs
    # Jobs InProgress for 3.6 s: one is stopped, the other is still running when the service closes.
    with LocalBedrock(s3, EchoModel(), time_scale=0.001, job_duration_seconds=3600) as service:
        bedrock, _ = clients(service)
        stopped = create(bedrock, "stopped", source, output)
        closed = create(bedrock, "closed", source, output)
        while service.job_status(stopped) != "InProgress" or service.job_status(closed) != "InProgress":
            time.sleep(0.005)
        bedrock.stop_model_invocation_job(jobIdentifier=stopped)
        assert service.wait_until_ended(stopped) == "Stopped"
    assert service.job_status(closed) == "InProgress"  # the service closed under it

    assert len(made) >= 7  # and an input copy each (a spool too once a record is answered)
    assert all(file.closed for file in made)


@pytest.mark.parametrize("seed", range(5))
def test_input_lines_split_as_a_whole_body_would_in_any_chunks(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        data = bytes(rng.choice(b'{"a\r\n ') for _ in range(rng.randrange(40)))
        size = rng.randrange(1, 9)
        assert list(bedrock_job_files.lines(io.BytesIO(data), size)) == data.splitlines(), (data, size)


def follow(bedrock: Any, arn: str, timeout: float = 30.0) -> tuple[dict[str, Any], dict[str, float]]:
    """Poll until the job ends; returns the last response and the real seconds spent in each status."""
    spent: dict[str, float] = {}
    status, since = "", time.monotonic()
    deadline = since + timeout
    while True:
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        now = time.monotonic()
        if job["status"] != status:
            if status:
                spent[status] = spent.get(status, 0.0) + now - since
            status, since = job["status"], now
        if status in TERMINAL_STATUSES:
            return job, spent
        assert now < deadline, f"job still {status}"
        time.sleep(0.01)


def test_a_48_hour_job_runs_in_a_few_seconds_at_a_small_time_scale(s3: Any, prefix: str) -> None:
    # 48 h at 1e-5 are 1.7 s InProgress; the other phases take 5 s times 1e-5.
    with LocalBedrock(s3, EchoModel(), time_scale=1e-5, job_duration_seconds=48 * 3600) as service:
        bedrock, _ = clients(service)
        source = put_input(s3, f"{prefix}/in/shard.jsonl", 20)
        arn = create(bedrock, "two-days", source, s3_uri(BUCKET, f"{prefix}/out/"), timeout_hours=72)

        job, spent = follow(bedrock, arn)

    assert job["status"] == "Completed"
    assert 1.5 < spent["InProgress"] < 6.0
    assert sum(seconds for status, seconds in spent.items() if status != "InProgress") < 1.0
    assert job["processedRecordCount"] == job["successRecordCount"] == 20
    assert len(read_lines(s3, f"{prefix}/out/{job_id(arn)}/shard.jsonl.out")) == 20


def test_a_job_longer_than_its_timeout_ends_expired_at_the_timeout(s3: Any, prefix: str) -> None:
    with LocalBedrock(s3, EchoModel(), time_scale=1e-5, job_duration_seconds=48 * 3600) as service:
        bedrock, _ = clients(service)
        source = put_input(s3, f"{prefix}/in/shard.jsonl", 20)
        arn = create(bedrock, "too-long", source, s3_uri(BUCKET, f"{prefix}/out/"), timeout_hours=24)

        job, spent = follow(bedrock, arn)

    assert job["status"] == "Expired"
    assert job["message"] == "The job reached its timeout before all records were processed."
    assert 0.7 < spent["InProgress"] < 1.5  # 24 h, not 48 h
    # The records are answered evenly over the 48 h: the first 9 of 20 fit in the 24 h less the 5 s before.
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (20, 9)
    out = f"{prefix}/out/{job_id(arn)}/"
    assert len(read_lines(s3, out + "shard.jsonl.out")) == 9
    assert manifest(s3, out + "manifest.json.out")["processedRecordCount"] == 9


def test_a_job_duration_cannot_be_negative(s3: Any) -> None:
    with pytest.raises(ValueError, match="job_duration_seconds"):
        LocalBedrock(s3, EchoModel(), job_duration_seconds=-1)


def test_list_filters_sorts_and_pages(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 1)
    output = s3_uri(BUCKET, f"{prefix}/out/")
    arns = [create(bedrock, name, source, output) for name in ("list-alpha-1", "list-alpha-2", "list-beta-1")]
    for arn in arns:
        wait(bedrock, arn)

    alpha = bedrock.list_model_invocation_jobs(nameContains="list-alpha")["invocationJobSummaries"]
    ascending = bedrock.list_model_invocation_jobs(nameContains="list-", sortOrder="Ascending")
    completed = bedrock.list_model_invocation_jobs(statusEquals="Completed", nameContains="beta")
    failed = bedrock.list_model_invocation_jobs(statusEquals="Failed")
    pages = list(
        bedrock.get_paginator("list_model_invocation_jobs").paginate(
            nameContains="list-", sortBy="CreationTime", sortOrder="Descending", PaginationConfig={"PageSize": 1}
        )
    )

    assert [job["jobName"] for job in alpha] == ["list-alpha-2", "list-alpha-1"]  # newest first by default
    assert alpha[0]["status"] == "Completed"
    assert alpha[0]["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] == source
    assert [job["jobArn"] for job in ascending["invocationJobSummaries"]] == arns
    assert [job["jobName"] for job in completed["invocationJobSummaries"]] == ["list-beta-1"]
    assert failed["invocationJobSummaries"] == []
    assert len(pages) == 3
    assert [page["invocationJobSummaries"][0]["jobArn"] for page in pages] == arns[::-1]
    assert service.stats.list_calls == 7


def test_unknown_jobs_and_bad_requests_are_named_errors(
    service: LocalBedrock, bedrock: Any, s3: Any, prefix: str
) -> None:
    source = put_input(s3, f"{prefix}/in.jsonl", 1)
    output = s3_uri(BUCKET, f"{prefix}/out/")

    with pytest.raises(bedrock.exceptions.ResourceNotFoundException) as missing:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.stop_model_invocation_job(
            jobIdentifier="arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefabcdef"
        )
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.get_model_invocation_job(jobIdentifier="Not An Id")
    bad_requests: list[dict[str, Any]] = [
        {"roleArn": "not-a-role"},
        {"timeoutDurationInHours": 500},
        {"modelInvocationType": "Chat"},
        {"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "https://example.com/in.jsonl"}}},
        {"jobName": "-starts-with-a-dash"},
    ]
    for change in bad_requests:
        request = {
            "jobName": "bad-request",
            "roleArn": ROLE,
            "modelId": MODEL_ID,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": source}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output}},
            **change,
        }
        with pytest.raises(bedrock.exceptions.ValidationException) as raised:
            bedrock.create_model_invocation_job(**request)
        assert raised.value.response["Error"]["Code"] == "ValidationException"
        assert raised.value.response["Error"]["Message"]
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.list_model_invocation_jobs(nextToken="garbage")
    assert service.stats.jobs_created == 0


def test_malformed_http_requests_never_crash_the_service(service: LocalBedrock, bedrock: Any) -> None:
    status, headers, body = http(f"{service.url}/model-invocation-job", "POST", b"{not json")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert body["message"]
    status, headers, _ = http(f"{service.url}/model/some-model/invoke", "POST", b"\xff\xfe")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    status, headers, _ = http(f"{service.url}/no/such/route")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException")

    assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []


# --- on-demand ------------------------------------------------------------------------------------------


def test_invoke_model_and_converse_answer_with_the_model(service: LocalBedrock, runtime: Any) -> None:
    reply = runtime.invoke_model(
        modelId=MODEL_ID,
        body=json.dumps(anthropic_input("hello there")),
        contentType="application/json",
        accept="application/json",
    )
    body = json.loads(reply["body"].read())
    conversed = runtime.converse(modelId=MODEL_ID, **converse_input("hello again"))

    assert reply["contentType"] == "application/json"
    assert body["type"] == "message"
    assert body["model"] == MODEL_ID
    assert "hello there" in body["content"][0]["text"]
    assert body["usage"] == {"input_tokens": 5, "output_tokens": 7}
    assert "hello again" in conversed["output"]["message"]["content"][0]["text"]
    assert conversed["stopReason"] == "end_turn"
    assert conversed["usage"]["totalTokens"] == 12
    assert service.stats.runtime_calls == 2


def test_on_demand_throttling_and_errors_are_named(service: LocalBedrock, runtime: Any) -> None:
    service.faults = FaultPlan(throttle_on_demand=2)

    with pytest.raises(runtime.exceptions.ThrottlingException) as throttled:
        runtime.converse(modelId=MODEL_ID, **converse_input("one"))
    with pytest.raises(runtime.exceptions.ThrottlingException):
        runtime.invoke_model(modelId=MODEL_ID, body=json.dumps(anthropic_input("two")))
    runtime.converse(modelId=MODEL_ID, **converse_input("three"))
    with pytest.raises(runtime.exceptions.ValidationException) as invalid:
        runtime.invoke_model(modelId=MODEL_ID, body=json.dumps({"messages": "none"}))
    with pytest.raises(runtime.exceptions.InternalServerException):
        runtime.converse(modelId=MODEL_ID, **converse_input("boom"))

    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert "anthropic_version" in invalid.value.response["Error"]["Message"]
    assert (service.stats.runtime_calls, service.stats.throttled_calls) == (5, 2)


def test_the_endpoint_environment_variables_reach_the_service(
    service: LocalBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", service.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", service.url)

    bedrock = boto3.client("bedrock", **CREDENTIALS)
    runtime = boto3.client("bedrock-runtime", **CREDENTIALS)

    assert bedrock.meta.endpoint_url == runtime.meta.endpoint_url == service.url
    assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []
    assert runtime.converse(modelId=MODEL_ID, **converse_input("via the environment"))["stopReason"] == "end_turn"


# --- the local control endpoints ------------------------------------------------------------------------


def test_faults_and_stats_over_http(service: LocalBedrock, bedrock: Any, s3: Any, prefix: str) -> None:
    plan = {"quota_refusals": 1, "job_statuses": {"http-doomed": "Failed"}, "record_errors": {"429": 1}}

    status, _, body = http(f"{service.url}/_local/faults", "POST", plan)
    assert status == 200
    assert body == {**FaultPlan().to_dict(), **plan}
    assert service.faults.quota_refusals == 1
    assert http(f"{service.url}/_local/faults")[2]["job_statuses"] == {"http-doomed": "Failed"}

    source = put_input(s3, f"{prefix}/in.jsonl", 1)
    with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException):
        create(bedrock, "http-doomed", source, s3_uri(BUCKET, f"{prefix}/out/"))
    arn = create(bedrock, "http-doomed", source, s3_uri(BUCKET, f"{prefix}/out/"))
    assert wait(bedrock, arn)[0]["status"] == "Failed"

    status, _, stats = http(f"{service.url}/_local/stats")
    assert status == 200
    assert (stats["create_calls"], stats["jobs_created"], stats["runtime_calls"]) == (2, 1, 0)
    assert stats == service.stats.to_dict()

    for bad in ({"job_statuses": {"x": "Done"}}, {"quota_refusals": -1}, {"surprise": 1}, [1, 2]):
        status, headers, body = http(f"{service.url}/_local/faults", "POST", bad)
        assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
        assert "fault plan" in body["message"]
    assert http(f"{service.url}/_local/faults", "DELETE")[2] == FaultPlan().to_dict()
    assert service.faults == FaultPlan()


# --- our own code against the service -------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(moto_url: str) -> StatusStore:
    dynamodb = boto3.resource("dynamodb", endpoint_url=moto_url, **CREDENTIALS)
    table = create_status_table(dynamodb, TABLE)
    return StatusStore(table)


SETTINGS = Settings(
    runs_table=TABLE, customer_bucket=BUCKET, internal_bucket=BUCKET, bedrock_role_arn=ROLE, stage="test"
)


def shard_input(s3: Any, run_id: str, shard: str, count: int) -> None:
    task = load_task("travel")
    encoder = BatchLineEncoder(task)
    body = b"".join(encoder.encode(record_id(i), f"Caller {i} asks about a refund.") for i in range(count))
    s3.put_object(Bucket=BUCKET, Key=RunFiles(run_id).job_input(shard), Body=body)


def test_submit_shard_twice_creates_one_job(service: LocalBedrock, bedrock: Any, s3: Any, store: StatusStore) -> None:
    task = load_task("travel")
    run = RunRef(run_id="a1b2c3d4e5f6a7b8c9d0", task="travel", bucket=BUCKET, key="input_data/calls.csv")
    shard = ShardRef(name="shard-00001", kind=ShardKind.BATCH, records=12)
    shard_input(s3, run.run_id, shard.name, 12)

    first = submit_shard(bedrock, store, SETTINGS, run, shard, task.model_id, task.invocation_type.value)
    again = submit_shard(bedrock, store, SETTINGS, run, shard, task.model_id, task.invocation_type.value)

    assert first.outcome is Submission.SUBMITTED
    assert again.outcome is Submission.EXISTING
    assert again.job_arn == first.job_arn
    assert (service.stats.create_calls, service.stats.jobs_created) == (1, 1)
    assert first.job_arn is not None
    job, _ = wait(bedrock, first.job_arn)
    assert job["jobName"] == job_name(run.run_id, shard.name, "test")
    assert job["clientRequestToken"] == client_token(run.run_id, shard.name)
    assert job["status"] == "Completed"
    out = f"{RunFiles(run.run_id).batch_output_prefix(shard.name)}{job_id(first.job_arn)}/"
    assert keys(s3, out) == {out + "shard-00001.jsonl.out", out + "manifest.json.out"}
    results = [parse_output_line(json.dumps(line).encode()) for line in read_lines(s3, out + "shard-00001.jsonl.out")]
    assert sorted(result.record_id for result in results) == [record_id(i) for i in range(12)]
    assert all(result.text and "refund" in result.text for result in results)
    assert results[0].input_tokens > 0
    assert (
        parse_manifest(s3.get_object(Bucket=BUCKET, Key=out + "manifest.json.out")["Body"].read()).success_records == 12
    )


def test_submit_shard_survives_a_lost_job_arn_a_name_conflict_and_a_quota_refusal(
    service: LocalBedrock, bedrock: Any, s3: Any, store: StatusStore
) -> None:
    task = load_task("travel")
    run = RunRef(run_id="f0e1d2c3b4a596877869", task="travel", bucket=BUCKET, key="input_data/calls.csv")
    shards = [ShardRef(name=f"shard-0000{i}", kind=ShardKind.BATCH, records=3) for i in (1, 2, 3)]
    for shard in shards:
        shard_input(s3, run.run_id, shard.name, 3)

    def submit(shard: ShardRef) -> Any:
        return submit_shard(bedrock, store, SETTINGS, run, shard, task.model_id, task.invocation_type.value)

    # A create whose answer was lost: the retry sends the same token and gets the same job.
    lost = bedrock.create_model_invocation_job(
        jobName=job_name(run.run_id, shards[0].name, "test"),
        roleArn=ROLE,
        clientRequestToken=client_token(run.run_id, shards[0].name),
        modelId=task.model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": s3_uri(BUCKET, RunFiles(run.run_id).job_input("shard-00001"))}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": s3_uri(BUCKET, "elsewhere/")}},
    )["jobArn"]
    assert submit(shards[0]).job_arn == lost
    # A job of that name made with another token: the conflict resolves to it.
    taken = create(
        bedrock,
        job_name(run.run_id, shards[1].name, "test"),
        s3_uri(BUCKET, RunFiles(run.run_id).job_input(shards[1].name)),
        s3_uri(BUCKET, "elsewhere/"),
        token="someone-else",
    )
    conflict = submit(shards[1])
    assert (conflict.outcome, conflict.job_arn) == (Submission.EXISTING, taken)
    # A quota refusal leaves the shard queued; the next attempt submits it.
    service.faults = FaultPlan(quota_refusals=1)
    assert submit(shards[2]).outcome is Submission.QUEUED
    assert submit(shards[2]).outcome is Submission.SUBMITTED

    assert service.stats.jobs_created == 3
    saved = store.get_shard(run.run_id, shards[1].name)
    assert saved is not None and saved["job_arn"] == taken


def test_invoke_on_demand_retries_throttled_calls(service: LocalBedrock, runtime: Any) -> None:
    task = load_task("travel")
    lines = [
        json.dumps({"recordId": record_id(i), "modelInput": model_input(task, f"Caller {i} lost a bag.")}).encode()
        for i in range(4)
    ]
    service.faults = FaultPlan(throttle_on_demand=3)
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    results = list(invoke_on_demand(runtime, task.model_id, "InvokeModel", lines, concurrency=2, sleep=sleep))

    assert sorted(result.record_id for result in results) == [record_id(i) for i in range(4)]
    assert not any(result.failed for result in results)
    assert all(result.text and "lost a bag" in result.text for result in results)
    assert len(slept) == 3
    assert (service.stats.runtime_calls, service.stats.throttled_calls) == (7, 3)

    service.faults = FaultPlan(throttle_on_demand=100)
    gave_up = list(invoke_on_demand(runtime, task.model_id, "InvokeModel", lines[:2], max_attempts=2, sleep=sleep))

    assert [result.error_code for result in gave_up] == ["ThrottlingException", "ThrottlingException"]
    assert all(result.retryable for result in gave_up)
