"""The lifecycle of a local Bedrock batch job, from Submitted to its terminal status, on a thread of its own.

Each phase lasts a few seconds times ``time_scale``: Submitted → Validating → Scheduled → InProgress → Completed,
or the terminal status the fault plan gave the job when it was created (its :class:`Fate`). ``job_duration_seconds``
makes InProgress last that long instead (times ``time_scale`` too); a job whose ``timeoutDurationInHours`` runs out
first then ends Expired at its timeout, as Bedrock's would. The input (one ``.jsonl`` file, or every ``.jsonl`` file
under a prefix) is checked during validation; every record is answered by the
:class:`~batch_classifier_local.models.Model`; the output is written when the job ends (the files:
:mod:`.bedrock_job_files`).

What a job leaves behind:

- Completed: every record, answered or with an ``error`` line. Record errors do not make a job
  PartiallyCompleted: Bedrock documents that status as "not all of your records could be processed in time".
- PartiallyCompleted, Expired, Stopped (injected): the first half of the records in input order, the rest absent;
  a job stopped through the API: the records answered before the stop was seen. Each with its manifest.
- Failed: nothing (no output files, no manifest).

Injected record errors go to the first answerable records in input order, missing lines are the last answerable
ones, and malformed lines (cut short) the first lines written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .bedrock_answers import AnswerPool, Outcome, Request
from .bedrock_api import BadInput, anthropic_reply, anthropic_request, converse_reply, converse_request
from .bedrock_job_files import JobFailure, JobInput, Record, Spool, read_input, stream_records, write_output
from .faults import OPEN_STATUSES, TERMINAL_STATUSES
from .models import Model, ModelRequestInvalid, ModelThrottled

_log = logging.getLogger(__name__)

# Seconds each phase lasts at time_scale 1.0 (InProgress: spread over the job's records).
PHASE_SECONDS = {"Submitted": 2.0, "Validating": 2.0, "Scheduled": 1.0, "InProgress": 3.0, "Stopping": 1.0}

# Messages of record errors injected by the fault plan, by error code.
_RECORD_ERROR_MESSAGES = {
    "400": "Malformed input request, please reformat your input and try again.",
    "408": "Model has timed out in processing the request.",
    "424": "The model returned an error while processing the request.",
    "429": "Too many requests, please wait before trying again.",
    "500": "The service encountered an internal error. Try your request again.",
    "503": "The service is temporarily unavailable. Try your request again.",
}


@dataclass(frozen=True)
class Fate:
    """What the fault plan decided for a job when it was created."""

    status: str | None
    record_errors: tuple[tuple[str, int], ...]
    missing: int
    malformed: int = 0


@dataclass
class Job:
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
    fate: Fate
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

    def manifest(self) -> dict[str, int]:
        """``manifest.json.out``: the job's counts."""
        return {
            "totalRecordCount": self.total or 0,
            "processedRecordCount": self.processed,
            "successRecordCount": self.success,
            "errorRecordCount": self.errors,
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Runs jobs through their lifecycle, each on a thread of its own.

    ``lock`` guards the jobs' fields (the service reads them under it too); ``on_answer`` is called for every record
    the model answers. ``time_scale`` and ``job_duration_seconds`` are read as each phase begins, so a change applies
    to the phases still to come. Once ``closed`` is set, jobs stop where they are and write nothing more.
    """

    def __init__(
        self,
        s3: Any,
        model: Model,
        lock: threading.RLock,
        *,
        time_scale: float,
        job_duration_seconds: float | None,
        on_answer: Callable[[], None],
    ) -> None:
        self.s3 = s3
        self.model = model
        self.time_scale = time_scale
        self.job_duration_seconds = job_duration_seconds
        self.closed = False
        self._lock = lock
        self._answers: AnswerPool | None = None
        self._answering = 0  # jobs answering their records
        self._on_answer = on_answer

    def start(self, job: Job) -> None:
        """Run the job on a daemon thread of its own."""
        job.thread = threading.Thread(target=self._run_job, args=(job,), name=f"bedrock-job-{job.job_id}")
        job.thread.daemon = True
        job.thread.start()

    def set_status(self, job: Job, status: str, message: str | None = None) -> None:
        with self._lock:
            if job.stop_requested and status in OPEN_STATUSES - {"Stopping"}:
                return  # a stop came in meanwhile: the job does not move on
            job.status = status
            if message is not None:
                job.message = message
            job.last_modified = now()
            if status in TERMINAL_STATUSES:
                job.end_time = job.last_modified

    def _pause(self, job: Job, phase: str) -> bool:
        """Wait out a phase; False when the service is closing (the job thread must return)."""
        seconds = self._in_progress_span(job)[0] if phase == "InProgress" else PHASE_SECONDS[phase] * self.time_scale
        if seconds > 0:
            job.wake.wait(seconds)
        return not self.closed

    def _in_progress_span(self, job: Job) -> tuple[float, float]:
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

    def _run_job(self, job: Job) -> None:
        try:
            self._drive(job)
        except Exception as exc:
            _log.exception("local Bedrock job %s failed", job.job_id)
            if not self.closed:
                self.set_status(job, "Failed", f"Internal error of the local Bedrock service: {exc}")

    def _drive(self, job: Job) -> None:
        if not self._pause(job, "Submitted"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self.set_status(job, "Validating")
        try:
            source = read_input(self.s3, job.input_uri, job.output_uri, lambda: self.closed)
        except JobFailure as exc:
            if self._pause(job, "Validating"):
                self.set_status(job, "Failed", str(exc))
            return
        with source, Spool() as spool:  # local files, deleted however the job ends
            self._drive_validated(job, source, spool)

    def _drive_validated(self, job: Job, source: JobInput, spool: Spool) -> None:
        with self._lock:
            job.total = len(source.answerable)
        if not self._pause(job, "Validating"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self.set_status(job, "Scheduled")
        if not self._pause(job, "Scheduled"):
            return
        if job.stop_requested:
            self._end_stopped(job, None)
            return
        self.set_status(job, "InProgress")
        fate = job.fate.status
        if fate == "Failed":
            if not self._pause(job, "InProgress"):
                return
            if job.stop_requested:
                self._end_stopped(job, None)
            else:
                self.set_status(job, "Failed", "The batch inference job failed (injected fault).")
            return
        ended_by = self._answer_records(job, source, spool)
        source.close()  # answered: the input copies are not needed any more
        if self.closed:
            return
        with self._lock:
            if job.stop_requested:
                ended_by = "stop"
        try:
            if ended_by == "stop" or fate == "Stopped":
                self._end_stopped(job, spool)
            elif fate == "Expired" or ended_by == "timeout":
                self._write_output(job, spool)
                self.set_status(job, "Expired", "The job reached its timeout before all records were processed.")
            elif fate == "PartiallyCompleted":
                self._write_output(job, spool)
                self.set_status(job, "PartiallyCompleted", "Not all records could be processed in time.")
            else:
                self._write_output(job, spool)
                self.set_status(job, "Completed")
        except JobFailure as exc:
            self.set_status(job, "Failed", str(exc))

    def _end_stopped(self, job: Job, spool: Spool | None) -> None:
        if job.status != "Stopping":
            self.set_status(job, "Stopping")
        job.wake.clear()  # the stop woke the job; Stopping still takes its time (closing sets closed first)
        if self.closed or not self._pause(job, "Stopping"):
            return
        if spool is not None and job.processed:
            self._write_output(job, spool)
        self.set_status(job, "Stopped", "The job was stopped by a user.")

    def _write_output(self, job: Job, spool: Spool) -> None:
        with self._lock:
            manifest = job.manifest()
        write_output(self.s3, job.output_uri, job.job_id, manifest, spool)

    def _answer_records(self, job: Job, source: JobInput, spool: Spool) -> str | None:
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
        with (
            self._answer_pool() as pool,
            contextlib.closing(stream_records(source, limit)) as records,
            contextlib.closing(pool.ahead(self._prepare(job, r, injected) for r in records)) as answered,
        ):
            for (index, record, so_far, request), outcome in answered:
                if self.closed:
                    return "closed"
                if job.stop_requested:
                    return "stop"
                line, tokens = self._answer(job, so_far, request, outcome)
                with self._lock:
                    job.processed += 1
                    if "error" in line:
                        job.errors += 1
                    else:
                        job.success += 1
                        job.input_tokens += tokens[0]
                        job.output_tokens += tokens[1]
                    job.last_modified = now()
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
            if rest > 0 and not job.stop_requested and not self.closed:
                job.wake.wait(rest)
        if timed_out and not job.stop_requested:
            return "timeout"
        return None

    @contextlib.contextmanager
    def _answer_pool(self) -> Iterator[AnswerPool]:
        """The processes that answer for the model while a job answers its records: started by the first job that
        needs them, stopped when no job answers any more (they hold a hundred MB, and the runs' last steps need
        the memory more)."""
        with self._lock:
            if self._answers is None or self._answers.model is not self.model:
                if self._answers is not None:
                    self._answers.close()
                self._answers = AnswerPool(self.model)
            pool = self._answers
            self._answering += 1
        try:
            yield pool
        finally:
            with self._lock:
                self._answering -= 1
                idle = self._answering == 0 and self._answers is pool
            if idle:
                self.close_answers()

    def close_answers(self) -> None:
        """Stop the processes that answer for the model (no job answers, or the service stops)."""
        with self._lock:
            if self._answering and not self.closed:
                return  # a job started answering meanwhile
            answers, self._answers = self._answers, None
        if answers is not None:
            answers.close()

    def _prepare(
        self, job: Job, numbered: tuple[int, Record], injected: dict[int, str]
    ) -> tuple[tuple[int, Record, dict[str, Any], Request | None], Request | None]:
        """A record's output line so far and its request to the model, None when the line is already whole (a 400
        error, or an injected one), keyed by the record's index, the record, the line and the request."""
        index, record = numbered
        line: dict[str, Any] = {"recordId": record.record_id}
        if record.model_input is not None:
            line["modelInput"] = record.model_input
        request: Request | None = None
        error = injected.get(index)
        if record.problem is not None:
            line["error"] = {"errorCode": 400, "errorMessage": record.problem}
        elif error is not None:
            line["error"] = {
                "errorCode": int(error) if error.isdigit() else error,
                "errorMessage": _RECORD_ERROR_MESSAGES.get(error, f"Injected error {error}."),
            }
        else:
            try:
                if job.invocation_type == "Converse":
                    request = converse_request(record.model_input)
                else:
                    request = anthropic_request(record.model_input)
            except BadInput as exc:
                line["error"] = {"errorCode": 400, "errorMessage": f"Malformed input request: {exc}"}
        return (index, record, line, request), request

    def _answer(
        self, job: Job, line: dict[str, Any], request: Request | None, outcome: Outcome | None
    ) -> tuple[dict[str, Any], tuple[int, int]]:
        """The record's output line and its tokens: the model's answer to the request (``outcome``, from the answer
        pool, or asked here when None) or the error line."""
        if request is None:
            return line, (0, 0)
        started = time.monotonic()
        try:
            if outcome is None:
                completion = self.model.complete(*request)
                took = time.monotonic() - started
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                completion, took = outcome
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
            _log.warning("the local model failed on record %s of job %s: %s", line["recordId"], job.job_id, exc)
            line["error"] = {"errorCode": 500, "errorMessage": f"The model failed to answer: {exc}"}
            return line, (0, 0)
        self._on_answer()
        if job.invocation_type == "Converse":
            line["modelOutput"] = converse_reply(completion, int(took * 1000))
        else:
            line["modelOutput"] = anthropic_reply(job.model_id, completion)
        return line, (completion.input_tokens, completion.output_tokens)


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
