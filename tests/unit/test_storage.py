"""UploadFile (streaming multipart upload to S3) and the seekable object reader, on moto-backed S3."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.exceptions import ResponseStreamingError
from moto import mock_aws

from batch_classifier.storage import MIN_PART_SIZE, UploadFile, open_seekable

BUCKET = "uploads"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


class Recorder:
    """An S3 client that records the operations it is asked for and forwards them to moto."""

    def __init__(self, s3):
        self._s3 = s3
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self._s3, name)

        def call(**kwargs):
            self.calls.append(name)
            return method(**kwargs)

        return call


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def pending_uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def test_a_small_object_is_one_put_with_its_content_type(s3):
    recorder = Recorder(s3)
    upload = UploadFile(recorder, BUCKET, "a.csv", "text/csv")
    with io.TextIOWrapper(io.BufferedWriter(upload), encoding="utf-8") as out:
        out.write("id,text\n1,héllo\n")
    assert recorder.calls == ["put_object"]
    assert body(s3, "a.csv") == "id,text\n1,héllo\n".encode()
    assert s3.head_object(Bucket=BUCKET, Key="a.csv")["ContentType"] == "text/csv"


def test_an_empty_file_is_an_empty_object(s3):
    UploadFile(s3, BUCKET, "empty").close()
    assert body(s3, "empty") == b""


def test_a_large_object_is_uploaded_part_by_part_as_it_is_written(s3):
    recorder = Recorder(s3)
    upload = UploadFile(recorder, BUCKET, "big.bin", "application/octet-stream", part_size=MIN_PART_SIZE)
    block = bytes(range(256)) * 4096  # 1 MiB
    for i in range(11):
        upload.write(block[i:] + block[:i])
        assert len(upload._buffer) < MIN_PART_SIZE  # never more than one part held in memory
    assert recorder.calls == ["create_multipart_upload", "upload_part", "upload_part"]
    upload.close()
    assert recorder.calls[-2:] == ["upload_part", "complete_multipart_upload"]
    assert body(s3, "big.bin") == b"".join(block[i:] + block[:i] for i in range(11))
    assert upload.size == 11 * len(block)
    assert s3.head_object(Bucket=BUCKET, Key="big.bin")["ContentType"] == "application/octet-stream"
    assert not pending_uploads(s3)


def test_a_part_size_below_the_s3_minimum_is_refused(s3):
    with pytest.raises(ValueError, match="at least"):
        UploadFile(s3, BUCKET, "x", part_size=1024)


def test_abort_leaves_no_object_and_no_parts(s3):
    upload = UploadFile(s3, BUCKET, "half.bin", part_size=MIN_PART_SIZE)
    upload.write(b"x" * (MIN_PART_SIZE + 10))
    assert len(pending_uploads(s3)) == 1
    upload.abort()
    assert upload.closed and not pending_uploads(s3)
    upload.close()  # closing after an abort publishes nothing
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_an_error_inside_with_aborts_and_a_wrapper_closed_after_does_not_publish(s3):
    raw = UploadFile(s3, BUCKET, "failed.txt", part_size=MIN_PART_SIZE)
    text = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    with pytest.raises(RuntimeError, match="reader failed"), raw:
        text.write("y" * (MIN_PART_SIZE + 1))
        raise RuntimeError("reader failed")
    text.close()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert not pending_uploads(s3)


def test_a_failed_completion_aborts_the_upload(s3):
    class Failing(Recorder):
        def complete_multipart_upload(self, **kwargs):
            raise RuntimeError("network down")

    upload = UploadFile(Failing(s3), BUCKET, "broken.bin", part_size=MIN_PART_SIZE)
    upload.write(b"z" * (MIN_PART_SIZE + 1))
    with pytest.raises(RuntimeError, match="network down"):
        upload.close()
    assert upload.closed and not pending_uploads(s3)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_open_seekable_reads_ranges_of_an_object(s3):
    s3.put_object(Bucket=BUCKET, Key="data", Body=bytes(range(200)))
    with open_seekable(s3, BUCKET, "data") as stream:
        assert stream.seekable()
        stream.seek(-8, io.SEEK_END)
        assert stream.read() == bytes(range(192, 200))
        stream.seek(10)
        assert stream.read(5) == bytes(range(10, 15))
        assert stream.tell() == 15


def test_a_seekable_read_resumes_when_its_connection_breaks(s3):
    data = bytes(range(256)) * 2000  # 512,000 bytes: several growing ranges
    s3.put_object(Bucket=BUCKET, Key="data", Body=data)

    class Breaking(Recorder):
        def get_object(self, **kwargs):
            response = s3.get_object(**kwargs)
            self.calls.append(f"get_object {kwargs['Range']}")
            if len(self.calls) == 3:  # the second range breaks after its first read

                class Body:
                    def __init__(self, body):
                        self.body, self.reads = body, 0

                    def read(self, amount):
                        self.reads += 1
                        if self.reads == 2:
                            raise ResponseStreamingError(error="connection reset")
                        return self.body.read(amount)

                    def close(self):
                        self.body.close()

                response["Body"] = Body(response["Body"])
            return response

    client = Breaking(s3)
    with open_seekable(client, BUCKET, "data", buffer_size=16 * 1024) as stream:
        assert stream.read() == data
    ranges = [call.split()[1] for call in client.calls if call.startswith("get_object")]
    assert ranges[:2] == ["bytes=0-65535", "bytes=65536-196607"]
    resumed_at = int(ranges[2].removeprefix("bytes=").split("-")[0])
    assert 65536 < resumed_at < 196608  # the third GET resumes inside the broken range, where it broke
