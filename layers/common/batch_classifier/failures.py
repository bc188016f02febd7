"""RecordFailure: record and announce an execution that stopped without finishing its run.

The workflow catches only input errors (ConvertInput → MarkRunFailed → NotifyRunFailed → RunFailed). Any
other failure, after the transient-error retries, stops the execution at the failing state so that a redrive
resumes exactly there. EventBridge reports that stop ("Step Functions Execution Status Change", status
FAILED, TIMED_OUT or ABORTED) and this step moves the run to FAILED and tells the run events topic. A redrive
that then succeeds moves the run to SUCCEEDED (FinalizeRun); a succeeded run is never marked failed.

The run's Bedrock batch jobs, by how the execution stopped:

- ABORTED or TIMED_OUT: every job of the run that is still open (Submitted, Validating, Scheduled, InProgress)
  is stopped with StopModelInvocationJob, and its shard is recorded ``Stopping``. Someone ended the execution
  (or its time ran out): nothing is left to read the jobs' output, and they would go on processing, and
  billing for, records for up to ``JobTimeoutHours``. A later redrive still loses nothing: its CheckJob polls
  the stopped job on to ``Stopped`` (a terminal status), ProcessShard judges the records the job answered
  before the stop, and the records it did not answer are retryable model errors that PlanRetries sends again
  in a retry round.
- FAILED: the jobs keep running. A redrive resumes at the failed state and the shards' child workflows pick
  their jobs up again by the ARN on the shard item (submission is idempotent per shard), so work already paid
  for is used. The notification lists the jobs left running, so an operator who will not redrive can stop them.

A job that cannot be stopped (it had already ended, or Bedrock refused) is logged and does not keep the others
from being stopped, nor the run from being recorded and announced; the notification lists the jobs left running.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .bedrock import STOPPABLE_JOB_STATUSES, StopOutcome, stop_job
from .runs import run_id_of
from .settings import ConfigurationError
from .status import NOTHING_CLASSIFIED, SHARD_PREFIX, RunStatus, ShardStatus, StatusStore
from .workflow import ObjectCreated, now_iso

SUBJECT = "Batch classification run failed"
MAX_CAUSE_CHARS = 4000
STOPPED_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
#: Execution statuses whose open batch jobs are stopped; a FAILED execution's jobs are kept for its redrive.
STOP_JOBS_STATUSES = frozenset({"TIMED_OUT", "ABORTED"})
# The errors ConvertInput catches (its Catch in statemachine/batch_classifier.asl.json): for these the workflow
# has already recorded the failure (MarkRunFailed) and told the topic (NotifyRunFailed) before ending in RunFailed.
INPUT_ERRORS = frozenset(
    {
        "InputFormatError",
        "InputEncodingError",
        "MalformedInputError",
        "EmptyInputError",
        "InputNotFoundError",
        "InputChangedError",
        "InputTooLargeError",
        "MissingColumnError",
        "TaskError",
        "ControlFileError",
    }
)

# Failures the workflow records and announces itself: its input errors, and a run where nothing was classified.
RECORDED_BY_WORKFLOW = INPUT_ERRORS | {NOTHING_CLASSIFIED}

_log = logging.getLogger(__name__)


class ExecutionStatusChange(BaseModel):
    """The ``detail`` of a "Step Functions Execution Status Change" event (what DescribeExecution returns)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn", min_length=1)
    state_machine_arn: str = Field(default="", alias="stateMachineArn")
    name: str = ""
    status: str
    input: str | None = None
    error: str | None = None
    cause: str | None = None


def truncate(text: str, limit: int = MAX_CAUSE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def execution_input(detail: ExecutionStatusChange) -> ObjectCreated | None:
    """The workflow input of the execution, or None when the event does not carry a readable one."""
    if not detail.input:
        return None
    try:
        return ObjectCreated.model_validate(json.loads(detail.input))
    except (ValueError, ValidationError):
        return None


def record_failure(
    event: dict[str, Any], store: StatusStore, sns: Any, topic_arn: str, *, bedrock: Any
) -> dict[str, Any]:
    """Mark the execution's run FAILED (with the error and cause) and publish it to the run events topic; for an
    ABORTED or TIMED_OUT execution, first stop the run's open batch jobs (``bedrock``, the Bedrock client).

    A succeeded run is left alone and nothing is published; a run that was never registered (RegisterRun
    failed) is still announced, with ``run_id`` null. A run registered by another execution is not touched
    (nor are its jobs). Returns what was done.
    """
    if not topic_arn:
        raise ConfigurationError("the environment variable RUN_EVENTS_TOPIC_ARN is not set; the template sets it.")
    detail = ExecutionStatusChange.model_validate(event.get("detail") or {})
    done: dict[str, Any] = {
        "execution": detail.execution_arn,
        "execution_status": detail.status,
        "run_id": None,
        "recorded": False,
        "notified": False,
    }
    if detail.status not in STOPPED_STATUSES:
        return {**done, "skipped": f"the execution is {detail.status}, not stopped by a failure"}
    error = detail.error or detail.status
    cause = truncate(detail.cause or f"the execution ended {detail.status}")
    upload = execution_input(detail)
    run_id = run_id_of(upload) if upload is not None else None
    run = store.get_run(run_id) if run_id is not None else None
    jobs = JobStops()
    if run_id is not None and run is not None:
        done["run_id"] = run_id
        skipped = _already_handled(run, detail.execution_arn, error)
        if skipped:
            return {**done, "skipped": skipped}
        if detail.status in STOP_JOBS_STATUSES:
            jobs = stop_open_jobs(bedrock, store, run_id, f"the execution {detail.execution_arn} {detail.status}")
        else:
            jobs.running = [item["job_arn"] for item in open_jobs(store, run_id)]
        if not store.finish_run(run_id, RunStatus.FAILED, error=error, cause=cause, execution=detail.execution_arn):
            return {**done, **jobs.report(), "skipped": "the run has succeeded"}
        done["recorded"] = True
    done.update(jobs.report())
    message = {
        "status": RunStatus.FAILED.value,
        "run_id": done["run_id"],
        "execution": detail.execution_arn,
        "error": error,
        "cause": cause,
        "source": f"s3://{upload.bucket}/{upload.object_key}" if upload is not None else None,
        "jobs_stopped": len(jobs.stopped),
        "jobs_running": jobs.running,
    }
    sns.publish(
        TopicArn=topic_arn,
        Subject=SUBJECT,
        Message=json.dumps(message, ensure_ascii=False),
        MessageAttributes={"status": {"DataType": "String", "StringValue": RunStatus.FAILED.value}},
    )
    done["notified"] = True
    return done


class JobStops(BaseModel):
    """The run's open batch jobs after RecordFailure: stopped, found ended, refused, or still running."""

    stopped: list[str] = Field(default_factory=list)  # StopModelInvocationJob accepted: the shard is Stopping
    ended: list[str] = Field(default_factory=list)  # had already ended (CheckJob will read how)
    refused: list[dict[str, str]] = Field(default_factory=list)  # {job_arn, error}: Bedrock did not stop it
    running: list[str] = Field(default_factory=list)  # still open after this: kept for a redrive, or refused

    def report(self) -> dict[str, Any]:
        return {
            "jobs_stopped": self.stopped,
            "jobs_ended": self.ended,
            "jobs_refused": self.refused,
            "jobs_running": self.running,
        }


def open_jobs(store: StatusStore, run_id: str) -> list[dict[str, Any]]:
    """The shard items of a run whose batch job is still open (by the status the table last recorded)."""
    return [
        item
        for item in store.shards(run_id)
        if item.get("job_arn") and item.get("shard_status") in STOPPABLE_JOB_STATUSES
    ]


def stop_open_jobs(bedrock: Any, store: StatusStore, run_id: str, reason: str) -> JobStops:
    """Stop every open batch job of a run and record its shard ``Stopping`` (with ``reason``).

    One job that cannot be stopped does not keep the others from being stopped: a job that had already ended is
    noted (its shard keeps the status CheckJob will read from Bedrock), any other refusal is logged and reported
    as still running.
    """
    stops = JobStops()
    for item in open_jobs(store, run_id):
        job_arn = str(item["job_arn"])
        shard = str(item["sk"]).removeprefix(SHARD_PREFIX)
        try:
            outcome = stop_job(bedrock, job_arn)
        except (ClientError, BotoCoreError) as exc:
            why = _describe(exc)
            _log.warning("could not stop the batch job %s of shard %s of run %s: %s", job_arn, shard, run_id, why)
            stops.refused.append({"job_arn": job_arn, "error": why})
            stops.running.append(job_arn)
            continue
        if outcome is StopOutcome.ENDED:
            _log.info("the batch job %s of shard %s of run %s had already ended", job_arn, shard, run_id)
            stops.ended.append(job_arn)
            continue
        store.set_shard_status(
            run_id, shard, ShardStatus.STOPPING, stop_requested_at=now_iso(), stop_reason=truncate(reason, 500)
        )
        stops.stopped.append(job_arn)
    return stops


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def _already_handled(run: dict[str, Any], execution_arn: str, error: str) -> str | None:
    """Why the run must not be touched (nor the failure announced) again, or None."""
    status = run.get("run_status")
    if status == RunStatus.SUCCEEDED.value:
        return "the run has succeeded"
    owner = run.get("execution")
    if owner and owner != execution_arn:
        # Another execution registered this upload (a duplicate event's execution failing, or a new run of the
        # upload after this one failed): that run is not this execution's to fail.
        return "the run belongs to another execution"
    if status == RunStatus.FAILED.value and error in RECORDED_BY_WORKFLOW and run.get("error") == error:
        return "the workflow recorded and announced this failure"
    return None
