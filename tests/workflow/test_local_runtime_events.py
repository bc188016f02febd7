"""S3 → EventBridge in the local runtime delivers what AWS delivers: one "Object Created" event per object, with
AWS's ``reason`` and ``etag``; so one upload starts one execution, whatever its size, and ``upload()`` returns it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.s3.models import FakeKey

from batch_classifier_local.runtime import LocalRuntime

MULTIPART_THRESHOLD = 8 * 1024 * 1024  # boto3's upload_file switches to a multipart upload above this


def write_big_csv(path: Path, size: int) -> None:
    row = "C{:07d},User: my booking {:07d} was never confirmed and I need it fixed today.,Booking Inquiry\n"
    with path.open("w", encoding="utf-8") as stream:
        stream.write("conversation_id,conversation,class\n")
        written, index = 0, 0
        while written < size:
            index += 1
            written += stream.write(row.format(index, index))


def executions_of(runtime: LocalRuntime, key: str) -> list[str]:
    sfn = runtime.client("stepfunctions")
    assert runtime.stack is not None
    arns = [
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=runtime.stack.state_machine_arn)["executions"]
    ]
    return [arn for arn in arns if json.loads(sfn.describe_execution(executionArn=arn)["input"])["key"] == key]


@pytest.fixture
def s3_events(runtime: LocalRuntime) -> Iterator[Any]:
    """The customer bucket's events as an SQS queue on a rule of the default bus receives them."""
    assert runtime.stack is not None
    sqs, events = runtime.client("sqs"), runtime.client("events")
    queue = sqs.create_queue(QueueName="s3-events-seen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.s3"], "detail": {"bucket": {"name": [runtime.stack.customer_bucket]}}}
    events.put_rule(Name="s3-events-seen", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="s3-events-seen", Targets=[{"Id": "queue", "Arn": arn}])

    def received(key: str) -> list[dict[str, Any]]:
        found = []
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(m["Body"]) for m in messages]
        return [e for e in found if e["detail"]["object"]["key"] == key]

    yield received
    events.remove_targets(Rule="s3-events-seen", Ids=["queue"])
    events.delete_rule(Name="s3-events-seen")
    sqs.delete_queue(QueueUrl=queue)


def test_a_multipart_upload_starts_exactly_one_execution(runtime: LocalRuntime, s3_events: Any, tmp_path: Path) -> None:
    source = tmp_path / "big_calls.csv"
    write_big_csv(source, 9 * 1024 * 1024)
    assert source.stat().st_size > MULTIPART_THRESHOLD
    key = "input_data/big_calls.csv"
    # The run stops at its first state: this test is about what starts it, not about classifying 9 MB.
    runtime.fail_next("RegisterRunFunction", when=lambda event: event["input"]["key"] == key, times=5)

    arn = runtime.upload(source, key)
    time.sleep(0.5)  # any second event would have started its execution by now

    assert executions_of(runtime, key) == [arn]
    etag = runtime.client("s3").head_object(Bucket=runtime.stack.customer_bucket, Key=key)["ETag"].strip('"')
    assert etag.endswith("-2")  # it really was a multipart upload (8 MB parts)
    created = [e for e in s3_events(key) if e["detail-type"] == "Object Created"]
    assert len(created) == 1
    assert created[0]["detail"]["reason"] == "CompleteMultipartUpload"
    assert created[0]["detail"]["object"]["etag"] == etag
    assert "eTag" not in created[0]["detail"]["object"]
    assert json.loads(runtime.client("stepfunctions").describe_execution(executionArn=arn)["input"])["etag"] == etag
    described = runtime.wait(arn)
    assert (described["status"], described["error"]) == ("FAILED", "InjectedFailure")


def test_a_put_object_raises_one_created_event_as_aws_does(runtime: LocalRuntime, s3_events: Any) -> None:
    key = "input_data/small_calls.csv"
    runtime.fail_next("RegisterRunFunction", when=lambda event: event["input"]["key"] == key, times=5)
    runtime.client("s3").put_object(
        Bucket=runtime.stack.customer_bucket, Key=key, Body=b"conversation_id,conversation\nC1,Hello\n"
    )
    time.sleep(0.5)

    created = [e for e in s3_events(key) if e["detail-type"] == "Object Created"]
    assert [e["detail"]["reason"] for e in created] == ["PutObject"]
    assert created[0]["time"].endswith("Z") and "T" in created[0]["time"]
    assert created[0]["detail"]["object"]["key"] == key
    (arn,) = executions_of(runtime, key)
    assert runtime.wait(arn)["status"] == "FAILED"


def test_a_get_reads_the_object_from_disk_as_it_is_sent(runtime: LocalRuntime) -> None:
    """moto would read the whole object into memory for every GET; the runtime reads a range, or the whole object
    a chunk at a time as it is sent: the same bytes."""
    s3 = runtime.client("s3")
    assert runtime.stack is not None
    body = bytes(range(256)) * (24 * 1024)  # 6 MiB: spooled to disk by moto
    s3.put_object(Bucket=runtime.stack.internal_bucket, Key="ranged/object.bin", Body=body)
    whole_reads = []
    read_all = FakeKey.value.fget

    def counting(key: Any) -> Any:
        found = read_all(key)
        if isinstance(found, bytes):
            whole_reads.append(key.name)
        return found

    FakeKey.value = property(counting, FakeKey.value.fset)
    try:
        for start, end in [(0, 9), (1_000_000, 1_065_535), (len(body) - 5, len(body) + 100)]:
            got = s3.get_object(
                Bucket=runtime.stack.internal_bucket, Key="ranged/object.bin", Range=f"bytes={start}-{end}"
            )
            assert got["Body"].read() == body[start : end + 1]
            assert got["ContentRange"] == f"bytes {start}-{min(end, len(body) - 1)}/{len(body)}"
        whole = s3.get_object(Bucket=runtime.stack.internal_bucket, Key="ranged/object.bin", ChecksumMode="ENABLED")
        assert whole["ContentLength"] == len(body)
        assert whole["Body"].read() == body
        assert whole_reads == []
    finally:
        FakeKey.value = property(read_all, FakeKey.value.fset)


@pytest.mark.parametrize(
    ("algorithm", "kind"), [(None, None), ("CRC32", "FULL_OBJECT"), ("CRC32", "COMPOSITE"), ("SHA256", "COMPOSITE")]
)
def test_a_multipart_upload_is_joined_on_disk_with_s3s_etag_and_checksum(
    runtime: LocalRuntime, algorithm: str | None, kind: str | None
) -> None:
    """moto joins the parts in memory (about four times the object); the runtime copies them into the object's
    buffer a chunk at a time, with the same ETag (MD5 of the parts' MD5s, "-<parts>") and checksum."""
    s3 = runtime.client("s3")
    assert runtime.stack is not None
    bucket, key = runtime.stack.internal_bucket, f"joined/{algorithm}-{kind}.bin"
    parts = [bytes([n]) * (5 * 1024 * 1024) for n in (1, 2)] + [b"tail"]
    extra = {} if algorithm is None else {"ChecksumAlgorithm": algorithm, "ChecksumType": kind}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    done = []
    for number, part in enumerate(parts, start=1):
        sent = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=part,
            **({"ChecksumAlgorithm": algorithm} if algorithm else {}),
        )
        done.append(
            {"PartNumber": number, "ETag": sent["ETag"], **{k: v for k, v in sent.items() if k.startswith("Checksum")}}
        )
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done})

    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    md5s = b"".join(hashlib.md5(part, usedforsecurity=False).digest() for part in parts)
    assert got["ETag"] == f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-3"'
    if (algorithm, kind) == ("CRC32", "FULL_OBJECT"):
        expected = base64.b64encode(binascii.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
        assert got["ChecksumCRC32"] == expected
    if kind == "COMPOSITE":
        assert got[f"Checksum{algorithm}"].endswith("-3")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
