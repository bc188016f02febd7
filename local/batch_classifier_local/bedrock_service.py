"""Amazon Bedrock batch inference and on-demand calls over HTTP, answered by a local model, with injectable faults.

:class:`LocalBedrock` serves, on one local port, the REST JSON APIs that boto3's ``bedrock`` and
``bedrock-runtime`` clients speak, so real clients work unchanged when pointed at it (``endpoint_url=service.url``
or the environment variables ``AWS_ENDPOINT_URL_BEDROCK`` and ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``):

- ``POST /model-invocation-job`` CreateModelInvocationJob, ``GET /model-invocation-job/{jobIdentifier}``
  GetModelInvocationJob, ``POST /model-invocation-job/{jobIdentifier}/stop`` StopModelInvocationJob,
  ``GET /model-invocation-jobs`` ListModelInvocationJobs (the ``bedrock`` client);
- ``POST /model/{modelId}/invoke`` InvokeModel (Anthropic Messages bodies) and ``POST /model/{modelId}/converse``
  Converse (the ``bedrock-runtime`` client);
- ``GET /_local/stats`` the call counters, ``GET``/``POST``/``DELETE /_local/faults`` the fault plan (for tests
  and tools in other processes).

Errors follow restJson1 as botocore reads it: the HTTP status of the error shape, the error name in the
``x-amzn-ErrorType`` header (and ``__type`` in the body) and ``{"message": ...}`` as the body.

Jobs live in memory and go through the real lifecycle on a thread of their own, each phase a few seconds times
``time_scale``: Submitted → Validating → Scheduled → InProgress → Completed, or the terminal status the fault plan
gives them. ``job_duration_seconds`` makes InProgress last that long instead (times ``time_scale`` too); a job
whose ``timeoutDurationInHours`` runs out first then ends Expired at its timeout, as Bedrock's would. The input
(one ``.jsonl`` file, or every ``.jsonl`` file under a prefix) is checked during validation; every record is
answered by the :class:`~batch_classifier_local.models.Model`; the output is written when the job ends:
``<output uri>/<job id>/<input file name>.out`` (lines in a shuffled order) and
``<output uri>/<job id>/manifest.json.out``.

A job's memory does not grow with its records (beyond a few bytes each): validation copies each input file from
S3 to a local temporary file a chunk at a time and checks it line by line, keeping one byte per record (can it be
answered); the job reads the copies again, line by line, to answer them; the output lines wait in local
temporary files, with where each ends; and each output file is uploaded from there in its shuffled order as a
multipart upload whose parts are read from those files as boto3 sends them (moto, in the process of the local
runtime, holds a whole PUT's body in memory; the runtime's patches make it join parts and serve GETs from disk).

What a job leaves behind:

- Completed: every record, answered or with an ``error`` line. Record errors do not make a job
  PartiallyCompleted: Bedrock documents that status as "not all of your records could be processed in time".
- PartiallyCompleted, Expired, Stopped (injected): the first half of the records in input order, the rest absent;
  a job stopped through the API: the records answered before the stop was seen. Each with its manifest.
- Failed: nothing (no output files, no manifest).

The model is given a plain system prompt and messages as ``[{"role": "user" | "assistant", "content": "<text>"}]``
(the text blocks of a message joined), and is called from several threads at once (jobs and HTTP requests).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import logging
import random
import re
import secrets
import shutil
import string
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from boto3.s3.transfer import TransferConfig

from .bedrock_api import (
    MAX_BODY_BYTES,
    BadInput,
    ServiceError,
    anthropic_reply,
    anthropic_request,
    check_create,
    converse_reply,
    converse_request,
    decode_token,
    encode_token,
    error_response,
    json_response,
    query_int,
    query_time,
    request_body,
    split_uri,
    validation_error,
)
from .faults import OPEN_STATUSES, TERMINAL_STATUSES, FaultPlan
from .models import Completion, Model, ModelRequestInvalid, ModelThrottled

__all__ = ["LocalBedrock", "ServiceError", "Stats"]

_log = logging.getLogger(__name__)

# Seconds each phase lasts at time_scale 1.0 (InProgress: spread over the job's records).
PHASE_SECONDS = {"Submitted": 2.0, "Validating": 2.0, "Scheduled": 1.0, "InProgress": 3.0, "Stopping": 1.0}

MANIFEST_NAME = "manifest.json.out"
_MAX_RESULTS_DEFAULT = 100
# Outputs go up in 8 MiB parts, one at a time: the process that serves S3 is this one.
_UPLOAD = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, use_threads=False)
# Bytes read at a time from an input body and from the local copy of an input file.
_READ_BYTES = 256 * 1024

_JOB_IDENTIFIER = re.compile(
    r"(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?([a-z0-9]{12})"
)
_JOB_ID_ALPHABET = string.ascii_lowercase + string.digits


# Messages of record errors injected by the fault plan, by error code.
_RECORD_ERROR_MESSAGES = {
    "400": "Malformed input request, please reformat your input and try again.",
    "408": "Model has timed out in processing the request.",
    "424": "The model returned an error while processing the request.",
    "429": "Too many requests, please wait before trying again.",
    "500": "The service encountered an internal error. Try your request again.",
    "503": "The service is temporarily unavailable. Try your request again.",
}


class _JobFailure(Exception):
    """A reason for a job to end Failed."""


# --- the counters -------------------------------------------------------------------


@dataclass
class Stats:
    """What the service was asked to do (``GET /_local/stats`` returns the same as JSON)."""

    create_calls: int = 0
    jobs_created: int = 0
    get_calls: int = 0
    list_calls: int = 0
    stop_calls: int = 0
    runtime_calls: int = 0
    quota_refusals: int = 0
    throttled_calls: int = 0
    records_answered: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "create_calls": self.create_calls,
            "jobs_created": self.jobs_created,
            "get_calls": self.get_calls,
            "list_calls": self.list_calls,
            "stop_calls": self.stop_calls,
            "runtime_calls": self.runtime_calls,
            "quota_refusals": self.quota_refusals,
            "throttled_calls": self.throttled_calls,
            "records_answered": self.records_answered,
        }


# --- jobs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fate:
    status: str | None
    record_errors: tuple[tuple[str, int], ...]
    missing: int
    malformed: int = 0


@dataclass
class _Record:
    file: str  # the output file name of its input file, without ``.out``
    record_id: str
    model_input: Any  # None when the line was not JSON
    problem: str | None = None  # why the line cannot be answered (written as a 400 error)


@dataclass(frozen=True)
class _InputFile:
    name: str  # its output file name, without ``.out``
    copy: IO[bytes]  # the file as validation read it from S3 (the job answers this version)


@dataclass
class _Input:
    """What validation keeps of a job's input: local copies of its files, and enough to plan the job's faults."""

    files: list[_InputFile] = field(default_factory=list)
    answerable: bytearray = field(default_factory=bytearray)  # per record in input order: 1 unless a 400 error

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the copies."""
        for file in self.files:
            file.copy.close()


class _Spool:
    """A job's output lines until they are written: each output file's lines (JSON text and a newline) appended to
    a local temporary file, with where each line ends. Close it to delete the files."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[IO[bytes], array[int]]] = {}

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, name: str, line: bytes) -> None:
        entry = self._files.get(name)
        if entry is None:
            entry = self._files[name] = (_local_file(), array("Q"))
        file, ends = entry
        file.write(line)
        ends.append((ends[-1] if ends else 0) + len(line))

    def names(self) -> list[str]:
        """The output files that have lines, sorted."""
        return sorted(self._files)

    def count(self, name: str) -> int:
        return len(self._files[name][1])

    def reader(self, name: str, order: Sequence[int]) -> _LinesInOrder:
        """A file object of a file's lines in the given order (line numbers, in the order they were added)."""
        file, ends = self._files[name]
        file.flush()
        return _LinesInOrder(file, ends, order)

    def close(self) -> None:
        files, self._files = self._files, {}
        for file, _ in files.values():
            file.close()


class _LinesInOrder:
    """A read-only, seekable file object of a spool file's lines in another order, read from the spool file as it is
    read (boto3 reads an upload body more than once: for its checksums, then to send it)."""

    def __init__(self, file: IO[bytes], ends: array[int], order: Sequence[int]) -> None:
        self._file = file
        self._ends = ends
        self._order = order
        self._stops = array("Q")  # where each line ends in this file
        size = 0
        for number in order:
            size += ends[number] - (ends[number - 1] if number else 0)
            self._stops.append(size)
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the spool owns the file (s3transfer closes what it uploaded)."""

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = max(self._size - self._position, 0)
        wanted = left if size is None or size < 0 else min(size, left)
        pieces: list[bytes] = []
        while wanted > 0:
            at = bisect.bisect_right(self._stops, self._position)  # the line the position is in
            number = self._order[at]
            start = self._ends[number - 1] if number else 0
            inside = self._position - (self._stops[at] - (self._ends[number] - start))
            count = min(wanted, self._ends[number] - start - inside)
            self._file.seek(start + inside)
            piece = self._file.read(count)
            if len(piece) != count:
                raise OSError("a spool file is shorter than its lines.")
            pieces.append(piece)
            self._position += count
            wanted -= count
        return b"".join(pieces)


def _local_file() -> IO[bytes]:
    """A local temporary file for a job's input copy or output lines (deleted when closed)."""
    return tempfile.TemporaryFile(prefix="local-bedrock-")


@dataclass
class _Job:
    job_id: str
    arn: str
    name: str
    token: str
    model_id: str
    role_arn: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    input_uri: str
    output_uri: str
    timeout_hours: int
    invocation_type: str
    vpc_config: dict[str, Any] | None
    fate: _Fate
    submit_time: datetime
    sequence: int
    status: str = "Submitted"
    message: str | None = None
    last_modified: datetime | None = None
    end_time: datetime | None = None
    total: int | None = None
    processed: int = 0
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    stop_requested: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def describe(self) -> dict[str, Any]:
        """The GetModelInvocationJob response (also a ListModelInvocationJobs summary)."""
        doc: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model_id,
            "clientRequestToken": self.token,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": _iso(self.submit_time),
            "lastModifiedTime": _iso(self.last_modified or self.submit_time),
            "inputDataConfig": self.input_config,
            "outputDataConfig": self.output_config,
            "timeoutDurationInHours": self.timeout_hours,
            "jobExpirationTime": _iso(self.submit_time + timedelta(hours=self.timeout_hours)),
            "modelInvocationType": self.invocation_type,
        }
        if self.message:
            doc["message"] = self.message
        if self.end_time is not None:
            doc["endTime"] = _iso(self.end_time)
        if self.vpc_config is not None:
            doc["vpcConfig"] = self.vpc_config
        if self.total is not None:
            doc.update(
                totalRecordCount=self.total,
                processedRecordCount=self.processed,
                successRecordCount=self.success,
                errorRecordCount=self.errors,
            )
        return doc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(UTC)


# --- the service ---------------------------------------------------------------------------------------


class LocalBedrock:
    """Bedrock batch jobs and InvokeModel/Converse over HTTP on ``host:port`` (0: any free port).

    ``s3``: a boto3 S3 client, used to read job inputs and write outputs. ``model``: answers every request.
    ``time_scale``: multiplies every phase duration (0.01: a job spends about 0.1 s in its phases, plus the
    model's own time). ``job_duration_seconds``: the simulated time every job spends InProgress (None: a few
    seconds); a job whose ``timeoutDurationInHours`` comes first ends Expired at its timeout with the records
    answered by then. Without a job duration the timeout is reported but not enforced (only the fault plan
    expires jobs).
    ``max_open_jobs``: more jobs than this in Submitted, Validating, Scheduled, InProgress or Stopping are
    refused with ServiceQuotaExceededException.
    """

    def __init__(
        self,
        s3: Any,
        model: Model,
        *,
        time_scale: float = 1.0,
        job_duration_seconds: float | None = None,
        max_open_jobs: int = 10,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must be 0 or more.")
        if job_duration_seconds is not None and job_duration_seconds < 0:
            raise ValueError("job_duration_seconds must be 0 or more.")
        if max_open_jobs < 1:
            raise ValueError("max_open_jobs must be at least 1.")
        self.s3 = s3
        self.model = model
        self.time_scale = float(time_scale)
        self.job_duration_seconds = None if job_duration_seconds is None else float(job_duration_seconds)
        self.max_open_jobs = max_open_jobs
        self.host = host
        self.port = port
        self.region = region
        self.account_id = account_id
        self.stats = Stats()
        self._faults = FaultPlan()
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._sequence = 0
        self._closed = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle of the service --

    def start(self) -> str:
        """Serve on a daemon thread; returns the endpoint URL (``http://127.0.0.1:<port>``)."""
        if self._closed:
            raise RuntimeError("this LocalBedrock was stopped; make a new one.")
        if self._server is not None:
            return self.url
        server = _Server((self.host, self.port), _Handler)
        server.service = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-bedrock-http", daemon=True
        )
        self._thread.start()
        _log.info("local Bedrock serving at %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving and end the job threads (jobs not ended stay as they are; nothing more is written)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout=10)

    def __enter__(self) -> LocalBedrock:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the service is not started.")
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise TypeError("faults must be a FaultPlan.")
        with self._lock:
            self._faults = plan

    def job_status(self, job: str) -> str:
        """The status of a job (ARN or id) now."""
        with self._lock:
            return self._job(job).status

    def wait_until_ended(self, job: str, timeout: float = 60.0) -> str:
        """Wait (real seconds) until a job (ARN or id) reaches a terminal status; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.job_status(job)
            if status in TERMINAL_STATUSES:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job} is still {status} after {timeout} s.")
            time.sleep(0.01)

    # -- requests --

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request: (status, headers, body). Never raises."""
        try:
            return self._route(method, target, body)
        except ServiceError as exc:
            return error_response(exc)
        except Exception as exc:
            _log.exception("local Bedrock failed on %s %s", method, target)
            return error_response(ServiceError("InternalServerException", f"Internal error: {exc}"))

    def _route(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        # Split before decoding: a job ARN in the path arrives as one segment with %2F for its slash.
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = (method, *segments)
        match route:
            case ("POST", "model-invocation-job"):
                return json_response(self._create(request_body(body)))
            case ("GET", "model-invocation-job", identifier):
                return json_response(self._get(identifier))
            case ("POST", "model-invocation-job", identifier, "stop"):
                return json_response(self._stop(identifier))
            case ("GET", "model-invocation-jobs"):
                return json_response(self._list(query))
            case ("POST", "model", model_id, "invoke"):
                reply = self._invoke(model_id, body)
                return 200, {"Content-Type": "application/json"}, reply
            case ("POST", "model", model_id, "converse"):
                return json_response(self._converse(model_id, request_body(body)))
            case ("GET", "_local", "stats"):
                with self._lock:
                    return json_response(self.stats.to_dict())
            case ("GET", "_local", "faults"):
                with self._lock:
                    return json_response(self._faults.to_dict())
            case ("POST", "_local", "faults"):
                try:
                    plan = FaultPlan.from_dict(request_body(body))
                except (ValueError, TypeError, ServiceError) as exc:
                    raise validation_error(f"Invalid fault plan: {exc}") from None
                self.faults = plan
                return json_response(plan.to_dict())
            case ("DELETE", "_local", "faults"):
                self.faults = FaultPlan()
                return json_response(self._faults.to_dict())
        raise ServiceError("UnknownOperationException", f"No operation matches {method} {parts.path}.")

    # -- control plane --

    def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.stats.create_calls += 1
        checked = check_create(request)
        with self._lock:
            plan = self._faults
            if plan.quota_refusals > 0:
                plan.quota_refusals -= 1
                self.stats.quota_refusals += 1
                raise ServiceError(
                    "ServiceQuotaExceededException",
                    "The number of batch inference jobs submitted or in progress has reached the quota "
                    "for this account and model (injected fault). Try again later.",
                )
            token = checked["token"]
            for job in self._jobs.values():
                if job.token == token:
                    return {"jobArn": job.arn}  # the same request again: the job it created
            for job in self._jobs.values():
                if job.name == checked["name"]:
                    raise ServiceError(
                        "ConflictException",
                        f"A batch inference job named {checked['name']} already exists ({job.arn}).",
                    )
            open_jobs = sum(1 for job in self._jobs.values() if job.status in OPEN_STATUSES)
            if open_jobs >= self.max_open_jobs:
                self.stats.quota_refusals += 1
                raise ServiceError(
                    "ServiceQuotaExceededException",
                    f"You have {open_jobs} batch inference jobs submitted or in progress, the most allowed "
                    f"({self.max_open_jobs}). Wait for some to end, then try again.",
                )
            job = self._new_job(checked, plan)
            self._jobs[job.job_id] = job
            self.stats.jobs_created += 1
            job.thread = threading.Thread(target=self._run_job, args=(job,), name=f"bedrock-job-{job.job_id}")
            job.thread.daemon = True
            job.thread.start()
            return {"jobArn": job.arn}

    def _new_job(self, checked: dict[str, Any], plan: FaultPlan) -> _Job:
        job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(12))
        while job_id in self._jobs:
            job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(12))
        self._sequence += 1
        fate = _Fate(
            status=plan.status_for(checked["name"], checked["input_uri"]),
            record_errors=tuple(plan.record_errors.items()),
            missing=plan.missing_records,
            malformed=plan.malformed_lines,
        )
        return _Job(
            job_id=job_id,
            arn=f"arn:aws:bedrock:{self.region}:{self.account_id}:model-invocation-job/{job_id}",
            name=checked["name"],
            token=checked["token"],
            model_id=checked["model_id"],
            role_arn=checked["role_arn"],
            input_config=checked["input_config"],
            output_config=checked["output_config"],
            input_uri=checked["input_uri"],
            output_uri=checked["output_uri"],
            timeout_hours=checked["timeout_hours"],
            invocation_type=checked["invocation_type"],
            vpc_config=checked["vpc_config"],
            fate=fate,
            submit_time=_now(),
            sequence=self._sequence,
        )

    def _job(self, identifier: str) -> _Job:
        found = _JOB_IDENTIFIER.fullmatch(identifier)
        if found is None:
            raise validation_error(
                f"1 validation error detected: Value '{identifier}' at 'jobIdentifier' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {_JOB_IDENTIFIER.pattern}"
            )
        job = self._jobs.get(found[1])
        if job is None or (identifier.startswith("arn:") and identifier != job.arn):
            raise ServiceError("ResourceNotFoundException", f"The batch inference job {identifier} does not exist.")
        return job

    def _get(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            self.stats.get_calls += 1
            return self._job(identifier).describe()

    def _stop(self, identifier: str) -> dict[str, Any]:
        with self._lock:
            self.stats.stop_calls += 1
            job = self._job(identifier)
            if job.status in TERMINAL_STATUSES:
                raise validation_error(f"The batch inference job {job.arn} is {job.status} and cannot be stopped.")
            if job.status != "Stopping":
                job.stop_requested = True
                self._set_status(job, "Stopping")
        job.wake.set()
        return {}

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.stats.list_calls += 1
            jobs = list(self._jobs.values())
        after = query_time(query, "submitTimeAfter")
        before = query_time(query, "submitTimeBefore")
        status = query.get("statusEquals")
        if status is not None and status not in OPEN_STATUSES | TERMINAL_STATUSES:
            raise validation_error(f"statusEquals {status!r} is not a batch inference job status.")
        name = query.get("nameContains")
        sort_by = query.get("sortBy", "CreationTime")
        if sort_by != "CreationTime":
            raise validation_error(f"sortBy {sort_by!r} is not supported; use CreationTime.")
        order = query.get("sortOrder", "Descending")
        if order not in ("Ascending", "Descending"):
            raise validation_error(f"sortOrder {order!r} is not Ascending or Descending.")
        limit = query_int(query, "maxResults", _MAX_RESULTS_DEFAULT, 1, 1000)
        offset = decode_token(query.get("nextToken"))
        with self._lock:
            chosen = [
                job
                for job in jobs
                if (after is None or job.submit_time > after)
                and (before is None or job.submit_time < before)
                and (status is None or job.status == status)
                and (name is None or name in job.name)
            ]
            chosen.sort(key=lambda job: job.sequence, reverse=order == "Descending")
            page = [job.describe() for job in chosen[offset : offset + limit]]
        result: dict[str, Any] = {"invocationJobSummaries": page}
        if offset + limit < len(chosen):
            result["nextToken"] = encode_token(offset + limit)
        return result

    # -- runtime --

    def _admit_runtime_call(self) -> None:
        with self._lock:
            self.stats.runtime_calls += 1
            slow = self._faults.slow_on_demand_seconds
            if self._faults.throttle_on_demand > 0:
                self._faults.throttle_on_demand -= 1
                self.stats.throttled_calls += 1
                raise ServiceError("ThrottlingException", "Too many requests, please wait before trying again.")
        if slow > 0:
            time.sleep(slow)  # a slow model: real seconds, not scaled (the caller's time budget is real too)

    def _invoke(self, model_id: str, body: bytes) -> bytes:
        self._admit_runtime_call()
        try:
            request = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise validation_error(f"Malformed input request: the body is not JSON ({exc}).") from None
        try:
            system, messages, max_tokens = anthropic_request(request)
        except BadInput as exc:
            raise validation_error(f"Malformed input request: {exc}") from None
        completion = self._complete_or_raise(system, messages, max_tokens)
        return json.dumps(anthropic_reply(model_id, completion), ensure_ascii=False).encode("utf-8")

    def _converse(self, model_id: str, request: dict[str, Any]) -> dict[str, Any]:
        self._admit_runtime_call()
        try:
            system, messages, max_tokens = converse_request(request)
        except BadInput as exc:
            raise validation_error(str(exc)) from None
        started = time.monotonic()
        completion = self._complete_or_raise(system, messages, max_tokens)
        return converse_reply(completion, int((time.monotonic() - started) * 1000))

    def _complete_or_raise(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        try:
            completion = self.model.complete(system, messages, max_tokens)
        except TimeoutError as exc:
            message = f"Model has timed out in processing the request: {exc}"
            raise ServiceError("ModelTimeoutException", message) from None
        except ModelThrottled as exc:
            raise ServiceError("ThrottlingException", f"Too many requests: {exc}") from None
        except ModelRequestInvalid as exc:
            raise ServiceError("ValidationException", str(exc)) from None
        except Exception as exc:
            _log.warning("the local model failed: %s", exc)
            raise ServiceError("InternalServerException", f"The model failed to answer: {exc}") from None
        with self._lock:
            self.stats.records_answered += 1
        return completion

    # -- running a job --

    def _set_status(self, job: _Job, status: str, message: str | None = None) -> None:
        with self._lock:
            if job.stop_requested and status in OPEN_STATUSES - {"Stopping"}:
                return  # a stop came in meanwhile: the job does not move on
            job.status = status
            if message is not None:
                job.message = message
            job.last_modified = _now()
            if status in TERMINAL_STATUSES:
                job.end_time = job.last_modified

    def _pause(self, job: _Job, phase: str) -> bool:
        """Wait out a phase; False when the service is closing (the job thread must return)."""
        seconds = self._in_progress_span(job)[0] if phase == "InProgress" else PHASE_SECONDS[phase] * self.time_scale
        if seconds > 0:
            job.wake.wait(seconds)
        return not self._closed

    def _in_progress_span(self, job: _Job) -> tuple[float, float]:
        """(real seconds the job stays InProgress, the share of its records it gets to): all of them in the
        simulated job duration, or as many as fit before the job's timeout when that comes first."""
        if self.job_duration_seconds is None:
            return PHASE_SECONDS["InProgress"] * self.time_scale, 1.0
        before = sum(PHASE_SECONDS[phase] for phase in ("Submitted", "Validating", "Scheduled"))
        budget = max(job.timeout_hours * 3600.0 - before, 0.0)
        duration = self.job_duration_seconds
        if duration <= budget:
            return duration * self.time_scale, 1.0
        return budget * self.time_scale, budget / duration

    def _run_job(self, job: _Job) -> None:
        try:
            self._drive(job)
        except Exception as exc:
            _log.exception("local Bedrock job %s failed", job.job_id)
            if not self._closed:
                self._set_status(job, "Failed", f"Internal error of the local Bedrock service: {exc}")

    def _drive(self, job: _Job) -> None:
        if not self._pause(job, "Submitted"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self._set_status(job, "Validating")
        try:
            source = self._read_input(job)
        except _JobFailure as exc:
            if self._pause(job, "Validating"):
                self._set_status(job, "Failed", str(exc))
            return
        with source, _Spool() as spool:  # local files, deleted however the job ends
            self._drive_validated(job, source, spool)

    def _drive_validated(self, job: _Job, source: _Input, spool: _Spool) -> None:
        with self._lock:
            job.total = len(source.answerable)
        if not self._pause(job, "Validating"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self._set_status(job, "Scheduled")
        if not self._pause(job, "Scheduled"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self._set_status(job, "InProgress")
        fate = job.fate.status
        if fate == "Failed":
            if not self._pause(job, "InProgress"):
                return
            if job.stop_requested:
                self._end_stopped(job, None)
            else:
                self._set_status(job, "Failed", "The batch inference job failed (injected fault).")
            return
        ended_by = self._answer_records(job, source, spool)
        source.close()  # answered: the input copies are not needed any more
        if self._closed:
            return
        with self._lock:
            if job.stop_requested:
                ended_by = "stop"
        try:
            if ended_by == "stop" or fate == "Stopped":
                self._end_stopped(job, spool)
            elif fate == "Expired" or ended_by == "timeout":
                self._write_output(job, spool)
                self._set_status(job, "Expired", "The job reached its timeout before all records were processed.")
            elif fate == "PartiallyCompleted":
                self._write_output(job, spool)
                self._set_status(job, "PartiallyCompleted", "Not all records could be processed in time.")
            else:
                self._write_output(job, spool)
                self._set_status(job, "Completed")
        except _JobFailure as exc:
            self._set_status(job, "Failed", str(exc))

    def _end_stopped(self, job: _Job, spool: _Spool | None) -> None:
        if job.status != "Stopping":
            self._set_status(job, "Stopping")
        job.wake.clear()  # the stop woke the job; Stopping still takes its time (stop() sets _closed first)
        if self._closed or not self._pause(job, "Stopping"):
            return
        if spool is not None and job.processed:
            self._write_output(job, spool)
        self._set_status(job, "Stopped", "The job was stopped by a user.")

    def _answer_records(self, job: _Job, source: _Input, spool: _Spool) -> str | None:
        """Answer the records the job gets to, their output lines into the spool (missing ones left out); returns
        why it stopped (None: it got to all it could)."""
        total = len(source.answerable)
        injected = _assign_errors(source.answerable, job.fate.record_errors)
        missing = _choose_missing(source.answerable, injected, job.fate.missing)
        limit = total if job.fate.status in (None, "Completed") else total // 2
        # The records are answered evenly over the job duration; a timeout that comes first cuts them short.
        span, share = self._in_progress_span(job)
        full_span = span / share if share > 0 else 0.0
        timed_out = share < 1.0
        if timed_out:
            limit = min(limit, int(total * share))
        started = time.monotonic()
        written = 0
        with contextlib.closing(self._stream_records(source, limit)) as records:
            for index, record in records:
                if self._closed:
                    return "closed"
                if job.stop_requested:
                    return "stop"
                line, tokens = self._answer(job, record, injected.get(index))
                with self._lock:
                    job.processed += 1
                    if "error" in line:
                        job.errors += 1
                    else:
                        job.success += 1
                        job.input_tokens += tokens[0]
                        job.output_tokens += tokens[1]
                    job.last_modified = _now()
                if index not in missing:
                    text = json.dumps(line, ensure_ascii=False)
                    if written < job.fate.malformed:
                        text = text[: len(text) // 2]  # cut short: not JSON
                    written += 1
                    spool.add(record.file, (text + "\n").encode("utf-8"))
                pause = started + full_span * (index + 1) / total - time.monotonic()
                if pause > 0.001:
                    job.wake.wait(pause)
        if self.job_duration_seconds is not None or not total:
            # The job stays InProgress for its whole duration (or until its timeout), however many records.
            rest = started + span - time.monotonic()
            if rest > 0 and not job.stop_requested and not self._closed:
                job.wake.wait(rest)
        if timed_out and not job.stop_requested:
            return "timeout"
        return None

    def _answer(self, job: _Job, record: _Record, injected: str | None) -> tuple[dict[str, Any], tuple[int, int]]:
        line: dict[str, Any] = {"recordId": record.record_id}
        if record.model_input is not None:
            line["modelInput"] = record.model_input
        if record.problem is not None:
            line["error"] = {"errorCode": 400, "errorMessage": record.problem}
            return line, (0, 0)
        if injected is not None:
            line["error"] = {
                "errorCode": int(injected) if injected.isdigit() else injected,
                "errorMessage": _RECORD_ERROR_MESSAGES.get(injected, f"Injected error {injected}."),
            }
            return line, (0, 0)
        try:
            if job.invocation_type == "Converse":
                system, messages, max_tokens = converse_request(record.model_input)
            else:
                system, messages, max_tokens = anthropic_request(record.model_input)
        except BadInput as exc:
            line["error"] = {"errorCode": 400, "errorMessage": f"Malformed input request: {exc}"}
            return line, (0, 0)
        started = time.monotonic()
        try:
            completion = self.model.complete(system, messages, max_tokens)
        except TimeoutError as exc:
            line["error"] = {"errorCode": 408, "errorMessage": f"Model has timed out: {exc}"}
            return line, (0, 0)
        except ModelThrottled as exc:
            line["error"] = {"errorCode": 429, "errorMessage": f"Too many requests: {exc}"}
            return line, (0, 0)
        except ModelRequestInvalid as exc:
            line["error"] = {"errorCode": 400, "errorMessage": str(exc)}
            return line, (0, 0)
        except Exception as exc:
            _log.warning("the local model failed on record %s of job %s: %s", record.record_id, job.job_id, exc)
            line["error"] = {"errorCode": 500, "errorMessage": f"The model failed to answer: {exc}"}
            return line, (0, 0)
        with self._lock:
            self.stats.records_answered += 1
        if job.invocation_type == "Converse":
            line["modelOutput"] = converse_reply(completion, int((time.monotonic() - started) * 1000))
        else:
            line["modelOutput"] = anthropic_reply(job.model_id, completion)
        return line, (completion.input_tokens, completion.output_tokens)

    # -- S3 --

    def _read_input(self, job: _Job) -> _Input:
        """Copy the input files from S3 and check them line by line: which records can be answered (the rest are
        400 errors)."""
        bucket, key = split_uri(job.input_uri)
        source = _Input()
        try:
            for file_key, name in self._input_files(job, bucket, key):
                copy = _local_file()
                source.files.append(_InputFile(name, copy))
                try:
                    body = self.s3.get_object(Bucket=bucket, Key=file_key)["Body"]
                    with contextlib.closing(body):
                        shutil.copyfileobj(body, copy, _READ_BYTES)
                except Exception as exc:
                    raise _JobFailure(f"Could not read the input file s3://{bucket}/{file_key}: {exc}") from None
                copy.seek(0)
                for raw in _lines(copy):
                    if self._closed:
                        raise _JobFailure("The service is stopping.")
                    if raw.strip():
                        record = _parse_input_line(raw, name, len(source.answerable))
                        source.answerable.append(record.problem is None)
            if not source.answerable:
                raise _JobFailure(f"The input at {job.input_uri} holds no records.")
            out_bucket, _ = split_uri(job.output_uri)
            try:
                self.s3.head_bucket(Bucket=out_bucket)
            except Exception as exc:
                raise _JobFailure(f"Could not access the output bucket {out_bucket}: {exc}") from None
        except BaseException:
            source.close()
            raise
        return source

    def _stream_records(self, source: _Input, limit: int) -> Generator[tuple[int, _Record]]:
        """The first ``limit`` records of the input with their index, read again from the copies line by line."""
        index = 0
        for file in source.files:
            file.copy.seek(0)
            for raw in _lines(file.copy):
                if not raw.strip():
                    continue
                if index >= limit:
                    return
                yield index, _parse_input_line(raw, file.name, index)
                index += 1

    def _input_files(self, job: _Job, bucket: str, key: str) -> list[tuple[str, str]]:
        """(key, output name) of every input file: the object itself, or the ``.jsonl`` files under the prefix."""
        if key and not key.endswith("/"):
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
            except Exception:
                pass  # not an object: a prefix
            else:
                if not key.lower().endswith(".jsonl"):
                    raise _JobFailure(f"The input file {job.input_uri} is not a .jsonl file.")
                return [(key, key.rsplit("/", 1)[-1])]
        prefix = key if not key or key.endswith("/") else key + "/"
        found: list[tuple[str, str]] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = item["Key"]
                    if name.lower().endswith(".jsonl"):
                        found.append((name, name[len(prefix) :]))
        except Exception as exc:
            raise _JobFailure(f"Could not list the input location {job.input_uri}: {exc}") from None
        if not found:
            raise _JobFailure(f"No .jsonl input files were found at {job.input_uri}.")
        return sorted(found)

    def _write_output(self, job: _Job, spool: _Spool) -> None:
        bucket, key = split_uri(job.output_uri)
        prefix = f"{key.rstrip('/')}/{job.job_id}/" if key.strip("/") else f"{job.job_id}/"
        shuffle = random.Random(job.job_id)  # Bedrock does not keep the input order
        with self._lock:
            manifest = {
                "totalRecordCount": job.total or 0,
                "processedRecordCount": job.processed,
                "successRecordCount": job.success,
                "errorRecordCount": job.errors,
                "inputTokenCount": job.input_tokens,
                "outputTokenCount": job.output_tokens,
            }
        try:
            for name in spool.names():
                order = array("L", range(spool.count(name)))
                shuffle.shuffle(order)
                self.s3.upload_fileobj(spool.reader(name, order), bucket, f"{prefix}{name}.out", Config=_UPLOAD)
            self.s3.put_object(Bucket=bucket, Key=prefix + MANIFEST_NAME, Body=json.dumps(manifest).encode())
        except Exception as exc:
            raise _JobFailure(f"Could not write the output to s3://{bucket}/{prefix}: {exc}") from None


# --- requests: checking and converting -----------------------------------------------------------------


def _parse_input_line(raw: bytes, file: str, index: int) -> _Record:
    generated = f"{index + 1:011d}"  # Bedrock adds a record id to lines without one
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _Record(file, generated, None, f"The line is not a JSON object: {exc}")
    if not isinstance(doc, dict):
        return _Record(file, generated, None, "The line is not a JSON object.")
    rid = doc.get("recordId", generated)
    if not isinstance(rid, str) or not rid:
        return _Record(file, generated, doc.get("modelInput"), "recordId must be a non-empty string.")
    model_input = doc.get("modelInput")
    if not isinstance(model_input, dict):
        return _Record(file, rid, model_input, "modelInput is required and must be a JSON object.")
    return _Record(file, rid, model_input)


def _assign_errors(answerable: Sequence[int], errors: tuple[tuple[str, int], ...]) -> dict[int, str]:
    """Injected record errors: the first answerable records in input order, codes in the plan's order."""
    codes = [code for code, count in errors for _ in range(count)]
    assigned: dict[int, str] = {}
    for index, can in enumerate(answerable):
        if len(assigned) == len(codes):
            break
        if can:
            assigned[index] = codes[len(assigned)]
    return assigned


def _choose_missing(answerable: Sequence[int], injected: dict[int, str], count: int) -> set[int]:
    """The records whose lines go missing: the last answerable ones in input order (no error of any kind)."""
    chosen: set[int] = set()
    for index in range(len(answerable) - 1, -1, -1):
        if len(chosen) >= count:
            break
        if index not in injected and answerable[index]:
            chosen.add(index)
    return chosen


def _lines(body: Any, size: int = _READ_BYTES) -> Iterator[bytes]:
    """The lines of a binary file object, read ``size`` bytes at a time, without their ends; split as
    ``bytes.splitlines()`` splits a whole body (at ``\\n``, ``\\r\\n`` and ``\\r``)."""
    start: list[bytes] = []  # the start of a line that runs on into the next chunk
    after_cr = False  # the last chunk ended with \r: a \n beginning the next one ends the same line
    while chunk := body.read(size):
        if after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        after_cr = False
        pieces = chunk.splitlines(keepends=True)
        for piece in pieces:
            if piece.endswith(b"\r\n"):
                text = piece[:-2]
            elif piece.endswith((b"\n", b"\r")):
                text = piece[:-1]
            else:  # the chunk ended inside this line
                start.append(piece)
                continue
            if start:
                start.append(text)
                text = b"".join(start)
                start.clear()
            yield text
        after_cr = bool(pieces) and pieces[-1].endswith(b"\r")
    if start:
        yield b"".join(start)


# --- HTTP ----------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: LocalBedrock


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalBedrock/1.0"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            status, headers, payload = error_response(validation_error(str(exc)))
            self.close_connection = True
        else:
            status, headers, payload = self.server.service.handle(method, self.path, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("The request body is too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("The Content-Length header is not a number.") from None
        if length > MAX_BODY_BYTES:
            raise ValueError("The request body is too large.")
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("local Bedrock: " + format, *args)
