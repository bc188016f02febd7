"""Where a run keeps its files, and streaming S3 reads and writes.

:class:`RunFiles` names every key of a run (see docs/workflow.md, "Storage"). :func:`open_object` streams an
object as a binary file (:func:`open_seekable` when the reader must seek); :class:`UploadFile` is a binary file
uploaded as it is written (a multipart upload, one part in memory at a time) and published when it is closed,
so neither memory nor local disk grows with the file, and an aborted one leaves nothing behind.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

RUNS_PREFIX = "runs"
ANALYTICS_PREFIX = "analytics/results"
OUTPUT_PREFIX = "output_data"
INPUT_PREFIX = "input_data"
TASKS_PREFIX = "config/tasks"

_READ_BLOCK = 1024 * 1024
#: S3's multipart limits: every part but the last holds at least 5 MiB, and an upload has at most 10,000 parts.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
PART_SIZE = 8 * 1024 * 1024
#: Parts grow by one ``part_size`` every this many parts, so 10,000 parts hold 55,000 x ``part_size`` (440 GiB
#: with 8 MiB parts) while the first 8 GiB of a file keeps a single 8 MiB part in memory.
PARTS_PER_SIZE = 1_000

# Ranged reads (open_seekable): the first range, the largest, and how often a broken connection is resumed.
_FIRST_RANGE = 64 * 1024
_LAST_RANGE = 16 * 1024 * 1024
_RESUMES = 3

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    """The keys of one run's files in the internal bucket."""

    run_id: str

    @property
    def prefix(self) -> str:
        return f"{RUNS_PREFIX}/{self.run_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    @property
    def records(self) -> str:
        return self.key("records.jsonl")

    @property
    def texts(self) -> str:
        return self.key("texts.jsonl")

    @property
    def rejects(self) -> str:
        return self.key("rejects.jsonl")

    @property
    def controls(self) -> str:
        return self.key("controls.jsonl")

    @property
    def shared(self) -> str:
        return self.key("shared.json")

    @property
    def task(self) -> str:
        return self.key("task.yaml")

    @property
    def plan(self) -> str:
        return self.key("plan.json")

    def job_input(self, shard: str) -> str:
        return self.key(f"jobs/{shard}.jsonl")

    def on_demand_input(self, shard: str) -> str:
        return self.key(f"on-demand/{shard}.jsonl")

    def batch_output_prefix(self, shard: str) -> str:
        """Where Bedrock writes a shard's job output (``<prefix><job id>/<shard>.jsonl.out``)."""
        return self.key(f"batch-output/{shard}/")

    def results(self, shard: str) -> str:
        return self.key(f"results/{shard}.jsonl")

    @property
    def results_prefix(self) -> str:
        return self.key("results/")

    def round_plan(self, round_: int) -> str:
        """The JSON array of a round's shards, read by the ProcessShards Distributed Map."""
        return self.key(f"rounds/round-{round_:02d}/shards.json")

    def round_texts(self, round_: int) -> str:
        """A retry round's texts, one ``<record id>\\t<JSON string>`` line each."""
        return self.key(f"rounds/round-{round_:02d}/texts.jsonl")


def output_prefix(source_key: str, run_id: str, day: str) -> str:
    """``output_data/<day>/<file stem>-<run id>/`` in the customer bucket."""
    return f"{OUTPUT_PREFIX}/{day}/{PurePosixPath(source_key).stem}-{run_id}/"


def analytics_key(day: str, run_id: str) -> str:
    return f"{ANALYTICS_PREFIX}/dt={day}/{run_id}.parquet"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class _Body(io.RawIOBase):
    """An S3 StreamingBody as a raw binary stream, so it can be buffered and read line by line."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def open_object(
    s3: Any, bucket: str, key: str, *, version_id: str | None = None, if_match: str | None = None
) -> IO[bytes]:
    """Stream an object (not seekable; readers copy to a temporary file when they need to seek): one version of
    it when ``version_id`` is given, and only while its ETag is ``if_match`` when that is given."""
    extra = {"VersionId": version_id} if version_id else {}
    if if_match:
        extra["IfMatch"] = if_match if if_match.startswith('"') else f'"{if_match}"'
    body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
    return io.BufferedReader(_Body(body), buffer_size=_READ_BLOCK)


def open_range(s3: Any, bucket: str, key: str, start: int, end: int) -> IO[bytes]:
    """Stream the bytes ``[start, end)`` of an object (``end > start``)."""
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
    return io.BufferedReader(_Body(body), buffer_size=_READ_BLOCK)


def read_bytes(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def put_bytes(s3: Any, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every key under ``prefix``, in S3's (lexicographic) order."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


class _Ranged(io.RawIOBase):
    """One version of an S3 object as a seekable raw stream read through ranged GETs pinned to its ETag.

    Sequential reads ask for ranges that double from ``_FIRST_RANGE`` up to ``_LAST_RANGE``, so a stream that
    is only primed and then left waiting (one of many merged streams) has read its small first range in full
    and holds no connection, while a stream read through gets large ranges. A connection that breaks mid-range
    (S3 drops a response that is not read for a long time) is resumed from the current position.
    """

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        super().__init__()
        self._body: Any = None  # before anything that can fail: close() reads it
        head = s3.head_object(Bucket=bucket, Key=key)
        self._s3, self._bucket, self._key = s3, bucket, key
        self._size: int = head["ContentLength"]
        self._etag: str = head["ETag"]
        self._position = 0
        self._body_end = 0
        self._range = _FIRST_RANGE

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = max(0, start + offset)
        if position != self._position:
            self._drop_body()
            self._range = _FIRST_RANGE
        self._position = position
        return position

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _open_body(self, wanted: int) -> None:
        self._body_end = min(self._position + max(wanted, self._range), self._size)
        self._range = min(self._range * 2, _LAST_RANGE)
        self._body = self._s3.get_object(
            Bucket=self._bucket,
            Key=self._key,
            Range=f"bytes={self._position}-{self._body_end - 1}",
            IfMatch=self._etag,
        )["Body"]

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        for attempt in range(_RESUMES + 1):
            if wanted <= 0:
                return 0
            if self._body is None:
                self._open_body(wanted)
            try:
                data = self._body.read(min(wanted, self._body_end - self._position))
            except (HTTPClientError, IncompleteReadError):
                self._body = None
                if attempt == _RESUMES:
                    raise
                continue
            if not data:  # the range ended early: ask again from here
                self._drop_body()
                continue
            buffer[: len(data)] = data
            self._position += len(data)
            if self._position >= self._body_end:
                self._drop_body()
            return len(data)
        raise EOFError(f"s3://{self._bucket}/{self._key} ended at byte {self._position} of {self._size}")

    def close(self) -> None:
        self._drop_body()
        super().close()


def open_seekable(s3: Any, bucket: str, key: str, buffer_size: int = _READ_BLOCK) -> IO[bytes]:
    """A seekable read of an object as it is now, resumed if its connection breaks (see :class:`_Ranged`).

    Also the way to hold many streams open at once (merging them): each holds ``buffer_size`` bytes and no
    connection while it waits.
    """
    return io.BufferedReader(_Ranged(s3, bucket, key), buffer_size=buffer_size)


class Upload(io.RawIOBase):
    """A writable binary file that ``close()`` publishes and ``abort()`` drops, leaving nothing behind.

    Used as a context manager it publishes on a normal exit and aborts when the block raises. Once aborted it
    is closed, so closing a buffered or text wrapper around it afterwards is a no-op.
    """

    def writable(self) -> bool:
        return True

    def abort(self) -> None:
        raise NotImplementedError

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is not None:
            self.abort()
        else:
            self.close()


class UploadFile(Upload):
    """A writable binary file streamed to ``bucket/key`` as a multipart upload and published by ``close()``.

    At most one part is held in memory; the upload is created with the first full part, so a file smaller than
    a part is one ``put_object`` at close. ``abort()`` (or an exception inside ``with``) aborts the multipart
    upload, so a failed writer leaves no object and no parts.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        content_type: str | None = None,
        *,
        part_size: int = PART_SIZE,
    ) -> None:
        super().__init__()
        if part_size < MIN_PART_SIZE:
            super().close()  # nothing to publish: the finaliser must not upload an empty object
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's smallest part), not {part_size}")
        self._s3, self._bucket, self._key = s3, bucket, key
        self._extra = {"ContentType": content_type} if content_type else {}
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.size = 0

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed UploadFile")
        view = memoryview(data)
        self._buffer += view
        self.size += view.nbytes
        while len(self._buffer) >= self._next_part_size():
            self._upload_part(self._next_part_size())
        return view.nbytes

    def _next_part_size(self) -> int:
        return self._part_size * (1 + len(self._parts) // PARTS_PER_SIZE)

    def _upload_part(self, size: int) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ChecksumAlgorithm="CRC32", **self._extra
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"s3://{self._bucket}/{self._key} needs more than {MAX_PARTS} parts")
        body = bytes(self._buffer[:size])
        del self._buffer[:size]
        done = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
        )
        part = {"PartNumber": number, "ETag": done["ETag"]}
        if "ChecksumCRC32" in done:
            part["ChecksumCRC32"] = done["ChecksumCRC32"]
        self._parts.append(part)

    def close(self) -> None:
        """Publish the object: one ``put_object`` when it never filled a part, else the last part and completion."""
        if self.closed:
            return
        try:
            if self._upload_id is None:
                self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), **self._extra)
            else:
                if self._buffer:
                    self._upload_part(len(self._buffer))
                self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            self.abort()
            raise
        self._buffer = bytearray()
        super().close()

    def abort(self) -> None:
        """Drop what was written: abort the multipart upload (if one was started) and close without publishing.

        Best effort, as it usually runs while another error is on its way: a failed abort is logged, and the
        bucket's lifecycle rule removes the parts of an incomplete upload later.
        """
        if self.closed:
            return
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        super().close()
        if upload_id is not None:
            try:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
            except (BotoCoreError, ClientError) as error:
                _log.warning("could not abort the multipart upload of s3://%s/%s: %s", self._bucket, self._key, error)
