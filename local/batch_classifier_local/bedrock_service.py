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

This module is the service: its requests, its quotas and counters, its table of jobs. Jobs live in memory and go
through the real lifecycle on threads of their own (:mod:`.bedrock_jobs`), reading their input and writing their
output through local temporary files (:mod:`.bedrock_job_files`); the wire format is in :mod:`.bedrock_api`, the
HTTP server in :mod:`.bedrock_http`.

The model is given a plain system prompt and messages as ``[{"role": "user" | "assistant", "content": "<text>"}]``
(the text blocks of a message joined), and is called from several threads at once (jobs and HTTP requests).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .bedrock_api import (
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
    validation_error,
)
from .bedrock_http import HttpServer
from .bedrock_jobs import Fate, Job, JobRunner, now
from .faults import OPEN_STATUSES, TERMINAL_STATUSES, FaultPlan
from .models import Completion, Model, ModelRequestInvalid, ModelThrottled

__all__ = ["LocalBedrock", "ServiceError", "Stats"]

_log = logging.getLogger(__name__)

_MAX_RESULTS_DEFAULT = 100

_JOB_IDENTIFIER = re.compile(
    r"(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?([a-z0-9]{12})"
)
_JOB_ID_ALPHABET = string.ascii_lowercase + string.digits


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


class LocalBedrock:
    """Bedrock batch jobs and InvokeModel/Converse over HTTP on ``host:port`` (0: any free port).

    ``s3``: a boto3 S3 client, used to read job inputs and write outputs. ``model``: answers every request.
    ``time_scale``: multiplies every phase duration (0.01: a job spends about 0.1 s in its phases, plus the
    model's own time). ``job_duration_seconds``: the simulated time every job spends InProgress (None: a few
    seconds); a job whose ``timeoutDurationInHours`` comes first ends Expired at its timeout with the records
    answered by then. Without a job duration the timeout is reported but not enforced (only the fault plan
    expires jobs). Both may be changed while the service runs: a job reads them as each of its phases begins.
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
        self.max_open_jobs = max_open_jobs
        self.host = host
        self.port = port
        self.region = region
        self.account_id = account_id
        self.stats = Stats()
        self._faults = FaultPlan()
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._sequence = 0
        self._runner = JobRunner(
            s3,
            model,
            self._lock,
            time_scale=float(time_scale),
            job_duration_seconds=None if job_duration_seconds is None else float(job_duration_seconds),
            on_answer=self._count_answer,
        )
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def time_scale(self) -> float:
        return self._runner.time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        self._runner.time_scale = value

    @property
    def job_duration_seconds(self) -> float | None:
        return self._runner.job_duration_seconds

    @job_duration_seconds.setter
    def job_duration_seconds(self, value: float | None) -> None:
        self._runner.job_duration_seconds = value

    # -- lifecycle of the service --

    def start(self) -> str:
        """Serve on a daemon thread; returns the endpoint URL (``http://127.0.0.1:<port>``)."""
        if self._runner.closed:
            raise RuntimeError("this LocalBedrock was stopped; make a new one.")
        if self._server is not None:
            return self.url
        server = HttpServer((self.host, self.port), self.handle)
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
            self._runner.closed = True
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
        self._runner.close_answers()

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
            self._runner.start(job)
            return {"jobArn": job.arn}

    def _new_job(self, checked: dict[str, Any], plan: FaultPlan) -> Job:
        job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(12))
        while job_id in self._jobs:
            job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(12))
        self._sequence += 1
        fate = Fate(
            status=plan.status_for(checked["name"], checked["input_uri"]),
            record_errors=tuple(plan.record_errors.items()),
            missing=plan.missing_records,
            malformed=plan.malformed_lines,
        )
        return Job(
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
            submit_time=now(),
            sequence=self._sequence,
        )

    def _job(self, identifier: str) -> Job:
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
                self._runner.set_status(job, "Stopping")
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
        self._count_answer()
        return completion

    def _count_answer(self) -> None:
        with self._lock:
            self.stats.records_answered += 1
