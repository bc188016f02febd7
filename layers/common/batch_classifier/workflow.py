"""The payloads that pass between the workflow's states (see docs/workflow.md).

Every handler parses its event into one of these models and returns one; field names are the JSON keys the
state machine reads and writes. Payloads carry S3 keys and counts, never records.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

from pydantic import BaseModel, ConfigDict, Field

from .sharding import ShardKind


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ObjectCreated(_Payload):
    """The execution input: an S3 "Object Created" event as the EventBridge rule's input transformer shapes it."""

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    size: int = 0
    etag: str = ""
    version_id: str | None = None
    event_time: str | None = None
    event_id: str | None = None

    @property
    def object_version(self) -> str | None:
        """The uploaded version (S3 says ``null`` for an object of an unversioned bucket)."""
        return self.version_id if self.version_id and self.version_id != "null" else None

    @property
    def object_key(self) -> str:
        """The key as the event gives it. AWS documents S3's notification keys (SQS, SNS, Lambda) as URL-encoded
        but says nothing of EventBridge's (its examples show plain keys): ConvertInput reads the key as given,
        then its decoded forms (:func:`key_candidates`), always checking the upload's ETag."""
        return self.key


def key_candidates(key: str) -> list[str]:
    """Where an event's key may be stored: as given, then URL-decoded (``%20`` for a space), then decoded as S3's
    notifications encode keys (``+`` for a space). A key without ``%`` or ``+`` has one reading."""
    found = [key]
    for decoded in (unquote(key), unquote_plus(key)):
        if decoded not in found:
            found.append(decoded)
    return found


def run_id_for(bucket: str, key: str, etag: str) -> str:
    """The run id of an upload: the same object (bucket, key, ETag) always gives the same run."""
    tag = etag.strip('"')
    digest = hashlib.sha256(f"{bucket}\n{key}\n{tag}".encode()).hexdigest()
    return digest[:20]


class RunRef(_Payload):
    """What every state after RegisterRun knows about the run."""

    run_id: str
    task: str
    bucket: str
    key: str
    etag: str = ""
    version_id: str | None = None
    size: int = 0
    duplicate: bool = False
    ignored: str | None = None  # why there is no run (a folder key), else None
    started_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class ShardRef(_Payload):
    """One shard: an item of a round's plan in S3, and the input of its child workflow in ProcessShards.

    Its texts are the bytes ``[start, end)`` of ``texts_key`` in the internal bucket: round 0 reads the run's
    ``texts.jsonl`` (record ids follow from ``first_record_id``), retry rounds a keyed texts file of their own
    (``keyed``: each line starts with its record id and a tab).
    """

    name: str
    kind: ShardKind
    records: int
    round: int = 0
    texts_key: str = ""
    start: int = 0
    end: int = 0
    keyed: bool = False
    first_record_id: str | None = None
    last_record_id: str | None = None


class RoundPlan(_Payload):
    """A round of shards (round 0: the run's own; later rounds: retries). The shards are listed in S3, as the
    JSON array at ``bucket``/``key`` that the ProcessShards Distributed Map reads; nothing here grows with them."""

    round: int = 0
    bucket: str
    key: str
    shards: int = 0
    batch_jobs: int = 0
    max_concurrency: int = Field(default=10, ge=1)
    retry: bool = False


class JobCheck(_Payload):
    """Where one shard's wait/poll loop stands: its job status, whether it ended, and the next wait."""

    status: str
    done: bool = False
    wait_seconds: int = 60


class RunInput(_Payload):
    run: RunRef


class ShardInput(_Payload):
    run: RunRef
    shard: ShardRef


class JobInput(_Payload):
    run: RunRef
    shard: ShardRef
    job: JobCheck


class RoundInput(_Payload):
    run: RunRef
    plan: RoundPlan


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump(model: BaseModel) -> dict[str, Any]:
    """A payload as the state machine receives it."""
    return model.model_dump(mode="json")


class RegisterInput(_Payload):
    """RegisterRun's input: the execution input and the execution's id."""

    input: ObjectCreated
    execution: str | None = None
