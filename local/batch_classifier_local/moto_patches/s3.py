"""S3: the events AWS raises (one per object created, with AWS's fields), and large objects kept on disk."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from .common import replace, require

_OBJECT_GET = threading.local()  # set while moto answers a GET of an object: "whole" or "range"
_CHUNK = 1024 * 1024


class _KeyContent:
    """An S3 object's content as moto's GET uses it, read from the object's spooled buffer (a file on disk above a
    few MB) as it is sent: its length, a slice (a ranged GET), or its chunks (a whole GET, streamed by the server).
    moto itself reads the whole object into memory for every GET, ranged or not, and copies it."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def _read(self, start: int, size: int) -> bytes:
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            data: bytes = buffer.read(size)
            return data

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(len(self))
        return self._read(start, max(0, stop - start))

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self), _CHUNK):
            yield self._read(start, _CHUNK)


class _JoinedParts:
    """A completed multipart upload's content: its parts' buffers (files on disk above a few MB), taken from the
    parts, in order, copied into the new object's buffer a chunk at a time and then closed. moto joins the parts in
    memory and copies the result twice: about four times the object's size."""

    def __init__(self, parts: list[Any]) -> None:
        self.size = sum(int(part.contentsize) for part in parts)
        taken: dict[int, Any] = {}
        for part in parts:
            with part.lock:
                if id(part) not in taken:
                    # moto disposes of the upload's parts (closing their buffers) before it stores the object
                    taken[id(part)], part._value_buffer = part._value_buffer, io.BytesIO()
        self._buffers = [taken[id(part)] for part in parts]

    def copy_to(self, target: Any) -> None:
        try:
            for buffer in self._buffers:
                buffer.seek(0)
                while chunk := buffer.read(_CHUNK):
                    target.write(chunk)
        finally:
            for buffer in self._buffers:
                buffer.close()


class _FullObjectCrc:
    """A FULL_OBJECT checksum of a multipart upload, computed a chunk at a time over its parts, with the algorithms
    moto's ``compute_checksum`` uses (CRC64NVME needs awscrt; without it, moto and this use CRC32)."""

    def __init__(self, update: Callable[[bytes, int], int], size: int) -> None:
        self._update, self._size, self._value = update, size, 0

    @classmethod
    def of(cls, algorithm: str) -> _FullObjectCrc | None:
        from moto.core.compat import HAS_CRT  # noqa: PLC0415

        if algorithm == "CRC64NVME" and HAS_CRT:
            from awscrt import checksums  # type: ignore[import-not-found]  # noqa: PLC0415

            return cls(checksums.crc64nvme, 8)
        if algorithm in {"CRC32", "CRC64NVME"}:
            return cls(binascii.crc32, 4)
        return None  # CRC32C (moto prefers a library it may not find), SHA: moto's own, a part at a time

    def add(self, part: Any) -> None:
        with part.lock:
            part._value_buffer.seek(0)
            while chunk := part._value_buffer.read(_CHUNK):
                self._value = self._update(chunk, self._value)

    def digest(self) -> str:
        return base64.b64encode(self._value.to_bytes(self._size, "big")).decode()


def patch_large_objects() -> None:
    """Keep large objects out of the memory of the process that serves S3: a GET (ranged or whole) is read from
    the object's buffer as it is sent, and a multipart upload is joined part by part into the new object's buffer.
    Readers that page through a large object in ranges (FinalizeRun), Bedrock reading a job's input, and uploads
    of job files and outputs would otherwise cost several times the object's size each, at once."""
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML  # noqa: PLC0415
    from moto.s3.models import FakeKey, FakeMultipart, MultipartChecksumBuilder  # noqa: PLC0415
    from moto.s3.responses import S3Response  # noqa: PLC0415
    from moto.settings import S3_UPLOAD_PART_MIN_SIZE  # noqa: PLC0415

    key_response = require(S3Response, "key_response", ("self", "request", "full_url", "headers"))
    require(S3Response, "_handle_range_header", ("self", "request", "response_headers", "response_content"))
    require(FakeMultipart, "complete", ("self", "body"))
    require(MultipartChecksumBuilder, "addPart", ("self", "part"))
    value = FakeKey.__dict__.get("value")
    if not (
        isinstance(value, property)
        and value.fget
        and value.fset
        and "_value_buffer" in value.fget.__code__.co_names
        and {"_value_buffer", "contentsize"} <= set(value.fset.__code__.co_names)
    ):
        raise RuntimeError(
            "the local runtime patches moto's FakeKey.value (kept in _value_buffer), which this moto does not have "
            "(use moto 5.2.5)."
        )
    read_all, write_all = value.fget, value.fset

    def streamed_key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        wanted = request.headers.get("range") or ""
        # Only for the runtime's HTTP server (werkzeug's serving puts the socket in the environ): the in-process
        # mock of moto wants bytes.
        served = "werkzeug.socket" in getattr(request, "environ", {})
        _OBJECT_GET.active = served and request.method == "GET" and "," not in wanted and "partNumber" not in full_url
        try:
            return key_response(self, request, full_url, headers)
        finally:
            _OBJECT_GET.active = False

    def content(key: Any) -> Any:
        return _KeyContent(key) if getattr(_OBJECT_GET, "active", False) else read_all(key)

    def store(key: Any, new_value: Any) -> None:
        if not isinstance(new_value, _JoinedParts):
            write_all(key, new_value)
            return
        key._value_buffer.seek(0)
        key._value_buffer.truncate()
        new_value.copy_to(key._value_buffer)
        key.contentsize = new_value.size

    def complete_on_disk(self: Any, body: Any) -> tuple[_JoinedParts, str, tuple[str, str, int] | None]:
        # What moto's FakeMultipart.complete checks and computes (part numbers and ETags, the 5 MB minimum, the
        # ETag of the parts' MD5s, the upload's checksum), without joining the parts in memory.
        builder = MultipartChecksumBuilder(
            self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
        )
        crc = None if builder.checksum_type == "COMPOSITE" else _FullObjectCrc.of(builder.checksum_algorithm)
        chosen: list[Any] = []
        md5s = bytearray()
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.strip('"') != etag.strip('"'):
                raise InvalidPart()
            if chosen and chosen[-1].contentsize < S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s += bytes.fromhex(part.etag.strip('"'))
            if crc is None:
                builder.addPart(read_all(part))  # one part in memory at a time
            else:
                crc.add(part)
            chosen.append(part)
        if not chosen:
            raise MalformedXML()
        checksum = builder.build() if crc is None else (builder.checksum_type, crc.digest(), len(chosen))
        etag = hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()
        return _JoinedParts(chosen), f"{etag}-{len(chosen)}", checksum

    replace(S3Response, "key_response", streamed_key_response)
    replace(FakeKey, "value", property(content, store))
    replace(FakeMultipart, "complete", complete_on_disk)


# What S3 did, as moto names it → the ``reason`` of AWS's "Object Created" event.
_CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}
_S3_EVENT = threading.local()  # the S3 event being delivered, and whether a multipart upload is completing


def patch_notifications() -> None:
    """One S3 event per object created, as AWS raises them. moto's ``complete_multipart_upload`` stores the object
    with ``put_object`` (an ObjectCreated:Put event) and ``put_object_tagging`` (ObjectTagging:Put), then raises
    ObjectCreated:CompleteMultipartUpload: only the last is what AWS raises. The event name is kept for
    :func:`normalise_event`, which gives the event AWS's ``reason``."""
    from moto.s3 import notifications  # noqa: PLC0415
    from moto.s3.models import S3Backend  # noqa: PLC0415

    send_event = require(notifications, "send_event", ("account_id", "event_name", "bucket", "key"))
    send_to_bridge = require(notifications, "_send_event_bridge_message", ("account_id", "bucket", "event_name", "key"))
    complete = require(S3Backend, "complete_multipart_upload", ("self", "bucket_name", "multipart_id", "body"))
    completed = str(notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT.value)

    def send_one_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        if getattr(_S3_EVENT, "completing", False) and str(getattr(event_name, "value", event_name)) != completed:
            return  # raised on the way to CompleteMultipartUpload: not an event of AWS's
        send_event(account_id, event_name, bucket, key)

    def send_to_event_bridge(account_id: str, bucket: Any, event_name: Any, key: Any) -> None:
        _S3_EVENT.name = str(getattr(event_name, "value", event_name))
        try:
            send_to_bridge(account_id, bucket, event_name, key)
        finally:
            _S3_EVENT.name = None

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        _S3_EVENT.completing = True
        try:
            return complete(self, bucket_name, multipart_id, body)
        finally:
            _S3_EVENT.completing = False

    replace(notifications, "send_event", send_one_event)
    replace(notifications, "_send_event_bridge_message", send_to_event_bridge)
    replace(S3Backend, "complete_multipart_upload", complete_multipart_upload)


def normalise_event(event: Any, iso_time: bool = True) -> Any:
    """moto's S3 events differ from AWS's: ``eTag`` (AWS: ``etag``), an epoch ``time`` (AWS: ISO 8601; kept
    when not ``iso_time``) and the ``reason`` of "Object Created" (moto: ``ObjectCreated``; AWS: the API, e.g.
    ``PutObject`` or ``CompleteMultipartUpload``). The key stays as moto gives it, unencoded."""
    event = json.loads(json.dumps(event, default=str))
    obj = event.get("detail", {}).get("object")
    if isinstance(obj, dict) and "eTag" in obj and "etag" not in obj:
        obj["etag"] = obj.pop("eTag")
    reason = _CREATED_REASONS.get(getattr(_S3_EVENT, "name", None) or "")
    if reason is not None and event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        event["detail"]["reason"] = reason
    if iso_time and isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(event["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event
