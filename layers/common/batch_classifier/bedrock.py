"""Amazon Bedrock: batch inference jobs for batch shards, direct model calls for on-demand shards.

Batch jobs (the ``bedrock`` client):

- :func:`submit_shard` creates one CreateModelInvocationJob per shard, idempotently: a deterministic job name
  and ``clientRequestToken`` per shard, the job ARN kept on the shard item, and a conflict resolved to the job
  that already exists. Calling it twice, or redriving an execution, never bills a second job for a shard.
  A quota refusal or throttling leaves the shard ``QUEUED`` for :func:`check_job` to submit later.
- :func:`check_job` is one turn of a shard's wait/poll loop: it submits a queued shard, or polls its job with
  GetModelInvocationJob and records status and counts in the status table, and says how long the shard's
  child workflow should wait before the next turn.
- :func:`stop_job` asks Bedrock to stop a job (StopModelInvocationJob); RecordFailure stops the open jobs of an
  aborted or timed-out execution with it.

On-demand calls (the ``bedrock-runtime`` client): :func:`invoke_on_demand` answers batch-format input lines
with InvokeModel or Converse, with bounded concurrency and retries (exponential backoff, full jitter), within the
invocation's time (:class:`CallBudget`): records it has no time left for come back unsent, for a next round.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel

from .errors import BatchClassifierError, MalformedInputError
from .outputs import ModelResult, is_retryable, model_result
from .results import NOT_SENT, OUT_OF_TIME
from .settings import Settings
from .sharding import ShardKind
from .status import TERMINAL_JOB_STATUSES, ShardStatus, StatusStore
from .storage import RunFiles, read_bytes, s3_uri
from .tasks import InvocationType, parse_task
from .workflow import JobCheck, RunRef, ShardRef

# Job names: 1-63 characters, ``[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}`` (CreateModelInvocationJob).
JOB_NAME_MAX = 63
_JOB_NAME_PREFIX = "bbc"
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_NAME_DIGEST = 10
_RUN_ID_CHARS = 20

# Refusals that mean "not now": the shard stays queued and a later CheckJob submits it again.
_TRY_LATER = frozenset({"ServiceQuotaExceededException", "ThrottlingException", "InternalServerException"})
# Refusals that may mean a job of that name (or token) already exists: look it up before judging.
_MAYBE_EXISTS = frozenset({"ConflictException", "ValidationException"})
# Refusals that will not go away by trying again.
_REFUSED = frozenset({"ValidationException", "ResourceNotFoundException", "AccessDeniedException"})
# GetModelInvocationJob failures that only postpone a status update to the next poll.
_POLL_LATER = frozenset({"ThrottlingException", "InternalServerException"})
# StopModelInvocationJob refusals that mean the job has already ended (or is gone): there is nothing to stop.
_ALREADY_ENDED = frozenset({"ValidationException", "ResourceNotFoundException"})

# Statuses of shards whose job has ended, and of shards that hold no job slot.
# Hours past a job's timeoutDurationInHours after which CheckJob stops waiting for Bedrock to end it.
OVERDUE_GRACE_HOURS = 6

# Job counts from GetModelInvocationJob and the shard item fields they are kept in.
_JOB_COUNTS = {
    "totalRecordCount": "total_records",
    "processedRecordCount": "processed_records",
    "successRecordCount": "success_records",
    "errorRecordCount": "error_records",
}

_BACKOFF_BASE_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 20.0


class JobOverdueError(BatchClassifierError):
    """A batch job is still open long after its ``timeoutDurationInHours``: Bedrock did not end it."""


class JobSubmissionError(BatchClassifierError):
    """Bedrock refused a batch job for a reason that trying again will not fix (bad input, model, role)."""


class Submission(StrEnum):
    """What :func:`submit_shard` did for a shard."""

    SUBMITTED = "submitted"  # a new job was created
    EXISTING = "existing"  # the shard already had a job; nothing was created
    QUEUED = "queued"  # Bedrock said not now (quota, throttling); the shard waits for CheckJob


class SubmitOutcome(BaseModel):
    """The SubmitJob result: the shard, what happened, and its job (none while queued)."""

    shard: str
    outcome: Submission
    job_arn: str | None = None
    job_name: str


# --- names ----------------------------------------------------------------------------------------------


def job_name(run_id: str, shard: str, stage: str) -> str:
    """The job name of a shard: ``bbc-<stage>-<run id>-<shard>``, deterministic and at most 63 characters.

    Characters Bedrock does not accept become ``-``; when that changed anything, the run id was cut or the
    name is too long, the name is shortened and ends with a digest of the full inputs, so distinct shards
    keep distinct names.
    """
    raw = f"{_JOB_NAME_PREFIX}-{stage}-{run_id[:_RUN_ID_CHARS]}-{shard}"
    safe = _JOB_NAME_UNSAFE.sub("-", raw)
    if safe == raw and len(safe) <= JOB_NAME_MAX and len(run_id) <= _RUN_ID_CHARS:
        return safe
    digest = hashlib.sha256(f"{stage}\n{run_id}\n{shard}".encode()).hexdigest()[:_NAME_DIGEST]
    return f"{safe[: JOB_NAME_MAX - _NAME_DIGEST - 1]}-{digest}"


def client_token(run_id: str, shard: str) -> str:
    """The ``clientRequestToken`` of a shard's job: the same for every attempt to submit that shard."""
    digest = hashlib.sha256(f"{run_id}\n{shard}".encode()).hexdigest()
    return f"{_JOB_NAME_PREFIX}-{digest[:48]}"


def run_invocation(s3: Any, settings: Settings, run_id: str) -> tuple[str, str]:
    """The model id and invocation type of a run, from the task snapshot ConvertInput kept for it."""
    key = RunFiles(run_id).task
    task = parse_task(read_bytes(s3, settings.internal_bucket, key).decode("utf-8"), origin=key)
    return settings.model_id or task.model_id, task.invocation_type.value


# --- submitting -----------------------------------------------------------------------------------------


def submit_shard(
    bedrock: Any,
    store: StatusStore,
    settings: Settings,
    run: RunRef,
    shard: ShardRef,
    task_model_id: str,
    invocation_type: str,
) -> SubmitOutcome:
    """Create the batch job of a shard unless it has one already; never creates a second job for a shard."""
    name = job_name(run.run_id, shard.name, settings.stage)
    if shard.kind is not ShardKind.BATCH:
        raise JobSubmissionError(f"shard {shard.name} of run {run.run_id} is an on-demand shard, not a batch job.")
    item = store.get_shard(run.run_id, shard.name)
    if item is None:
        store.add_shards(run.run_id, [shard])
    elif item.get("job_arn"):
        return SubmitOutcome(shard=shard.name, outcome=Submission.EXISTING, job_arn=item["job_arn"], job_name=name)
    files = RunFiles(run.run_id)
    request: dict[str, Any] = {
        "jobName": name,
        "roleArn": settings.bedrock_role_arn,
        "clientRequestToken": client_token(run.run_id, shard.name),
        "modelId": settings.model_id or task_model_id,
        "inputDataConfig": {
            "s3InputDataConfig": {
                "s3Uri": s3_uri(settings.internal_bucket, files.job_input(shard.name)),
                "s3InputFormat": "JSONL",
            }
        },
        "outputDataConfig": {
            "s3OutputDataConfig": {"s3Uri": s3_uri(settings.internal_bucket, files.batch_output_prefix(shard.name))}
        },
        "timeoutDurationInHours": settings.job_timeout_hours,
        "modelInvocationType": InvocationType(invocation_type).value,
    }
    try:
        job_arn: str = bedrock.create_model_invocation_job(**request)["jobArn"]
    except ClientError as exc:
        code, message = _error(exc)
        if code in _MAYBE_EXISTS:
            found = _find_job(bedrock, name)
            if found is not None:
                return _attach(store, run.run_id, shard.name, found, name, Submission.EXISTING)
        if code in _TRY_LATER or code == "ConflictException":
            # A conflict with no job of that name behind it is another request in flight: try again later.
            store.note_attempt(run.run_id, shard.name, f"{code}: {message}")
            return SubmitOutcome(shard=shard.name, outcome=Submission.QUEUED, job_name=name)
        if code in _REFUSED:
            raise JobSubmissionError(
                f"Bedrock refused the batch job for shard {shard.name} of run {run.run_id} ({code}): {message}"
            ) from None
        raise
    return _attach(store, run.run_id, shard.name, job_arn, name, Submission.SUBMITTED)


def _attach(store: StatusStore, run_id: str, shard: str, job_arn: str, name: str, how: Submission) -> SubmitOutcome:
    """Keep the job on the shard item; when another writer attached one first, theirs stands."""
    if store.mark_submitted(run_id, shard, job_arn, name):
        return SubmitOutcome(shard=shard, outcome=how, job_arn=job_arn, job_name=name)
    item = store.get_shard(run_id, shard) or {}
    return SubmitOutcome(
        shard=shard,
        outcome=Submission.EXISTING,
        job_arn=item.get("job_arn", job_arn),
        job_name=item.get("job_name", name),
    )


def _find_job(bedrock: Any, name: str) -> str | None:
    """The ARN of the newest job with exactly this name, if there is one."""
    pages = bedrock.get_paginator("list_model_invocation_jobs").paginate(
        nameContains=name, sortBy="CreationTime", sortOrder="Descending"
    )
    for page in pages:
        for summary in page.get("invocationJobSummaries", []):
            if summary.get("jobName") == name:
                arn: str = summary["jobArn"]
                return arn
    return None


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "Unknown")), str(error.get("Message", ""))


# --- polling --------------------------------------------------------------------------------------------


def check_job(
    bedrock: Any,
    store: StatusStore,
    settings: Settings,
    run: RunRef,
    shard: ShardRef,
    job: JobCheck,
    *,
    invocation: Callable[[], tuple[str, str]],
    now: datetime | None = None,
) -> JobCheck:
    """One turn of a shard's wait/poll loop: submit the shard if it is still queued, else read its job's status.

    The wait doubles from ``poll_min_seconds`` up to ``poll_max_seconds`` (so a week-long job costs a few hundred
    polls), and drops back to the minimum when a queued shard got its job. A job still open well past its
    ``timeoutDurationInHours`` (Bedrock should have ended it ``Expired``) raises :class:`JobOverdueError`, which
    stops the child workflow where a redrive can resume it. ``invocation`` gives the run's model id and invocation
    type; it is called only to submit a queued shard, so a turn that only polls reads nothing else.
    """
    item = store.get_shard(run.run_id, shard.name) or {}
    status = str(item.get("shard_status", ShardStatus.QUEUED.value))
    if status == ShardStatus.PROCESSED.value or status in TERMINAL_JOB_STATUSES:
        return JobCheck(status=status, done=True, wait_seconds=0)
    if not item.get("job_arn"):
        outcome = submit_shard(bedrock, store, settings, run, shard, *invocation())
        if outcome.outcome is Submission.QUEUED:
            return JobCheck(status=ShardStatus.QUEUED.value, wait_seconds=next_wait(job.wait_seconds, settings))
        return JobCheck(status=ShardStatus.SUBMITTED.value, wait_seconds=settings.poll_min_seconds)
    status = _poll_job(bedrock, store, run.run_id, shard.name, item)
    if status == ShardStatus.PROCESSED.value or status in TERMINAL_JOB_STATUSES:
        return JobCheck(status=status, done=True, wait_seconds=0)
    _check_overdue(item, settings, now or datetime.now(UTC), run.run_id, shard.name)
    return JobCheck(status=status, wait_seconds=next_wait(job.wait_seconds, settings))


def _check_overdue(item: dict[str, Any], settings: Settings, now: datetime, run_id: str, shard: str) -> None:
    submitted = item.get("submitted_at")
    if not submitted:
        return
    hours = settings.job_timeout_hours + OVERDUE_GRACE_HOURS
    if now > datetime.fromisoformat(str(submitted)) + timedelta(hours=hours):
        raise JobOverdueError(
            f"the batch job of shard {shard} of run {run_id} ({item.get('job_arn')}) is still "
            f"{item.get('shard_status')} {hours} h after it was "
            f"submitted with timeoutDurationInHours={settings.job_timeout_hours}; redrive the execution to check "
            "it again, or stop the job to end it."
        )


def next_wait(previous: int, settings: Settings, *, reset: bool = False) -> int:
    """The next Wait of the polling loop: double the last one, within the configured bounds."""
    if reset:
        return settings.poll_min_seconds
    return max(settings.poll_min_seconds, min(previous * 2, settings.poll_max_seconds))


def polls_for(duration_seconds: float, settings: Settings) -> int:
    """How many turns the wait/poll loop takes to see a job that runs ``duration_seconds`` end (planning)."""
    waited, wait, polls = 0.0, settings.poll_min_seconds, 0
    while waited < duration_seconds:
        waited += wait
        polls += 1
        wait = next_wait(wait, settings)
    return polls


def _poll_job(bedrock: Any, store: StatusStore, run_id: str, shard: str, item: dict[str, Any]) -> str:
    """The job's status now (recorded on the shard item when it or its counts changed)."""
    previous = str(item.get("shard_status"))
    try:
        job = bedrock.get_model_invocation_job(jobIdentifier=item["job_arn"])
    except ClientError as exc:
        if _error(exc)[0] in _POLL_LATER:
            return previous
        raise
    raw = str(job.get("status", previous))
    try:
        status = ShardStatus(raw)
    except ValueError:
        return raw  # a status this code does not know yet: still open, nothing recorded
    fields: dict[str, Any] = {field: int(job[key]) for key, field in _JOB_COUNTS.items() if key in job}
    if job.get("message"):
        fields["job_message"] = str(job["message"])
    if isinstance(job.get("endTime"), datetime):
        fields["job_ended_at"] = job["endTime"].isoformat(timespec="seconds")
    changed = status.value != previous or any(item.get(k) != v for k, v in fields.items())
    if changed and not store.set_shard_status(run_id, shard, status, **fields):
        return ShardStatus.PROCESSED.value  # processed meanwhile: it never changes again
    return status.value


# --- stopping -------------------------------------------------------------------------------------------

#: Shard statuses whose job is still open and can be stopped (Stopping is already on its way to Stopped).
STOPPABLE_JOB_STATUSES = frozenset(
    {ShardStatus.SUBMITTED, ShardStatus.VALIDATING, ShardStatus.SCHEDULED, ShardStatus.IN_PROGRESS}
)


class StopOutcome(StrEnum):
    """What :func:`stop_job` did for a job."""

    STOPPING = "stopping"  # Bedrock accepted the stop: the job moves to Stopping, then Stopped
    ENDED = "ended"  # the job had already ended (or no longer exists): nothing to stop


def stop_job(bedrock: Any, job_arn: str) -> StopOutcome:
    """Stop a batch job (StopModelInvocationJob). A job that has already ended is :attr:`StopOutcome.ENDED`;
    any other refusal (throttling, access) is raised as the client's ``ClientError``."""
    try:
        bedrock.stop_model_invocation_job(jobIdentifier=job_arn)
    except ClientError as exc:
        if _error(exc)[0] in _ALREADY_ENDED:
            return StopOutcome.ENDED
        raise
    return StopOutcome.STOPPING


# --- on-demand calls ------------------------------------------------------------------------------------

#: What an invocation keeps back from its remaining time for the work after its calls (judging the answers,
#: writing the shard's results and retries to S3, one status update, each with its own SDK retries): the larger of
#: a floor, for short timeouts, and a share of the time, so a long invocation keeps more for a slow tail.
BUDGET_MARGIN_SECONDS = 10.0
BUDGET_MARGIN_SHARE = 0.10
#: Lambda's longest timeout: the time assumed when the invocation's context cannot tell what is left.
LAMBDA_MAX_SECONDS = 900.0


class CallBudget:
    """The time an invocation may spend on on-demand calls, measured on a monotonic ``clock``.

    A call (one attempt at a record) starts only while the time left exceeds the slowest call seen so far, so
    the calls stop when one more is not expected to fit; :func:`invoke_on_demand` does not wait past the
    deadline for a call that still runs. Calls report their durations from several threads.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline = clock() + seconds
        self.slowest = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_invocation(
        cls, remaining_ms: Callable[[], int] | None, clock: Callable[[], float] = time.monotonic
    ) -> CallBudget:
        """The budget of an invocation with ``remaining_ms`` (the Lambda context's ``get_remaining_time_in_millis``)
        left, less :func:`budget_margin`. It is read once, here: the budget then counts down on ``clock``. Without
        it (a context that lacks the method, or a value that is not a number) the budget is Lambda's longest
        timeout, 15 minutes."""
        remaining = LAMBDA_MAX_SECONDS
        if remaining_ms is not None:
            try:
                remaining = float(remaining_ms()) / 1000
            except (TypeError, ValueError):
                remaining = LAMBDA_MAX_SECONDS
            if not math.isfinite(remaining):
                remaining = LAMBDA_MAX_SECONDS
        return cls(remaining - budget_margin(remaining), clock)

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - self.clock()

    def fits_a_call(self, pause: float = 0.0) -> bool:
        """Whether a call started after ``pause`` seconds is expected to end before the deadline."""
        return self.left() - pause > self.slowest

    def observe(self, seconds: float) -> None:
        """Note how long a call took."""
        with self._lock:
            self.slowest = max(self.slowest, seconds)


def budget_margin(remaining: float) -> float:
    """The seconds kept back from ``remaining`` seconds for the work after the calls."""
    return max(BUDGET_MARGIN_SECONDS, BUDGET_MARGIN_SHARE * max(remaining, 0.0))


def invoke_on_demand(
    runtime: Any,
    model_id: str,
    invocation_type: str,
    lines: Iterable[bytes],
    concurrency: int = 4,
    max_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    budget: CallBudget | None = None,
) -> Iterator[ModelResult]:
    """Answer batch input lines (``{"recordId", "modelInput"}``) with direct calls, in any order.

    At most ``concurrency`` calls run at once and at most twice that many lines are read ahead, so memory
    does not grow with the input. Throttling, timeouts and server errors are tried again up to
    ``max_attempts`` times; a record that still fails comes back as a failed :class:`ModelResult` (the AWS
    error code and message), never as an exception.

    With a ``budget``, no call (and no retry) starts once it cannot be expected to fit, and the deadline is not
    waited past: every line still comes back once, a record never sent with the error code ``NotSent``, one
    whose call was still running with ``TimeBudgetExceeded`` (that call is left to end on its own; its answer
    is not used).
    """
    kind = InvocationType(invocation_type)
    workers = max(1, concurrency)

    def call(rid: str, model_input: dict[str, Any]) -> ModelResult:
        return _invoke_with_retries(runtime, model_id, kind, rid, model_input, max_attempts, sleep, budget)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="on-demand")
    pending: dict[Future[ModelResult], str] = {}
    cut_off = False
    try:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            rid, model_input = _batch_line(raw, number)
            if budget is not None and not budget.fits_a_call():
                yield _not_sent(rid)
                continue
            pending[pool.submit(call, rid, model_input)] = rid
            if len(pending) >= 2 * workers:
                cut_off = (yield from _settle(pending, budget)) or cut_off
        while pending:
            cut_off = (yield from _settle(pending, budget)) or cut_off
    finally:
        # Calls cut off by the deadline are not waited for; calls not yet started never start.
        pool.shutdown(wait=not cut_off, cancel_futures=True)


def _settle(pending: dict[Future[ModelResult], str], budget: CallBudget | None) -> Generator[ModelResult, None, bool]:
    """Yield the results of the calls that end first; at the deadline, every pending record (and True)."""
    timeout = None if budget is None else max(0.0, budget.left())
    done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
    if done:
        for future in done:
            del pending[future]
            yield future.result()
        return False
    cut_off = False
    for future, rid in list(pending.items()):
        if future.cancel():
            yield _not_sent(rid)
        elif future.done():
            yield future.result()
        else:
            cut_off = True
            yield ModelResult(
                record_id=rid, error_code=OUT_OF_TIME, error_message="the call was still running at the deadline"
            )
    pending.clear()
    return cut_off


def _not_sent(rid: str) -> ModelResult:
    return ModelResult(record_id=rid, error_code=NOT_SENT, error_message="no time left for another call")


def _batch_line(raw: bytes, number: int) -> tuple[str, dict[str, Any]]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedInputError(f"on-demand input line {number} is not JSON ({exc.msg}).") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("recordId"), str)
        or not isinstance(doc.get("modelInput"), dict)
    ):
        raise MalformedInputError(f"on-demand input line {number} is not a batch line with recordId and modelInput.")
    return doc["recordId"], doc["modelInput"]


def _invoke_with_retries(
    runtime: Any,
    model_id: str,
    kind: InvocationType,
    rid: str,
    model_input: dict[str, Any],
    max_attempts: int,
    sleep: Callable[[float], None],
    budget: CallBudget | None = None,
) -> ModelResult:
    clock = budget.clock if budget is not None else time.monotonic
    failed = _not_sent(rid)
    pause = 0.0
    for attempt in range(1, max(1, max_attempts) + 1):
        if budget is not None and not budget.fits_a_call(pause):
            return failed  # never sent, or the last attempt's error: a retry would not fit the budget
        if pause:
            sleep(pause)
        started = clock()
        try:
            return _invoke(runtime, model_id, kind, rid, model_input)
        except ClientError as exc:
            code, message = _error(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            retry = is_retryable(code) or status >= 500
        except (BotoConnectionError, HTTPClientError) as exc:
            code, message, retry = type(exc).__name__, str(exc), True
        except ParamValidationError as exc:
            code, message, retry = type(exc).__name__, str(exc), False
        finally:
            if budget is not None:
                budget.observe(clock() - started)
        failed = ModelResult(record_id=rid, error_code=code, error_message=message)
        if not retry:
            break
        pause = random.uniform(0, min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
    return failed


def _invoke(runtime: Any, model_id: str, kind: InvocationType, rid: str, model_input: dict[str, Any]) -> ModelResult:
    if kind is InvocationType.CONVERSE:
        response: dict[str, Any] = runtime.converse(modelId=model_id, **model_input)
    else:
        reply = runtime.invoke_model(
            modelId=model_id, body=json.dumps(model_input), contentType="application/json", accept="application/json"
        )
        try:
            response = json.loads(reply["body"].read())
        except json.JSONDecodeError as exc:
            return ModelResult(record_id=rid, error_code="InvalidModelResponse", error_message=f"not JSON: {exc.msg}")
    if not isinstance(response, dict):
        return ModelResult(record_id=rid, error_code="InvalidModelResponse", error_message="not a JSON object")
    try:
        return model_result(rid, response)
    except ValueError as exc:
        return ModelResult(record_id=rid, error_code="InvalidModelResponse", error_message=str(exc))
