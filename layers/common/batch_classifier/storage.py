"""Where a run keeps its files, and streaming S3 reads and writes.

:class:`RunFiles` names every key of a run (see docs/workflow.md, "Storage"). :func:`open_object` streams an
object as a binary file; :class:`UploadFile` is a binary file whose content is uploaded when it is
closed (spooled to local disk past a few megabytes, so memory does not grow with the file).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

RUNS_PREFIX = "runs"
ANALYTICS_PREFIX = "analytics/results"
OUTPUT_PREFIX = "output_data"
INPUT_PREFIX = "input_data"
TASKS_PREFIX = "config/tasks"

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_READ_BLOCK = 1024 * 1024


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

    def retries(self, shard: str) -> str:
        return self.key(f"retries/{shard}.jsonl")


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


def open_object(s3: Any, bucket: str, key: str) -> IO[bytes]:
    """Stream an object (not seekable; readers copy to a temporary file when they need to seek)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
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


class UploadFile(io.RawIOBase):
    """A writable binary file spooled locally and uploaded to ``bucket/key`` by ``close()``."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        super().__init__()
        self._s3, self._bucket, self._key = s3, bucket, key
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed in close()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._spool.write(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._spool.seek(0)
            self._s3.upload_fileobj(self._spool, self._bucket, self._key)
        finally:
            self._spool.close()
            super().close()
