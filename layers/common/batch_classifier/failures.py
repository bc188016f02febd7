"""RecordFailure: record and announce an execution that stopped without finishing its run.

The workflow catches only input errors (ConvertInput → MarkRunFailed → NotifyRunFailed → RunFailed). Any
other failure, after the transient-error retries, stops the execution at the failing state so that a redrive
resumes exactly there. EventBridge reports that stop ("Step Functions Execution Status Change", status
FAILED, TIMED_OUT or ABORTED) and this step moves the run to FAILED and tells the run events topic. A redrive
that then succeeds moves the run to SUCCEEDED (FinalizeRun); a succeeded run is never marked failed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .runs import run_id_of
from .settings import ConfigurationError
from .status import NOTHING_CLASSIFIED, RunStatus, StatusStore
from .workflow import ObjectCreated

SUBJECT = "Batch classification run failed"
MAX_CAUSE_CHARS = 4000
STOPPED_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
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
    }
)

# Failures the workflow records and announces itself: its input errors, and a run where nothing was classified.
RECORDED_BY_WORKFLOW = INPUT_ERRORS | {NOTHING_CLASSIFIED}


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


def record_failure(event: dict[str, Any], store: StatusStore, sns: Any, topic_arn: str) -> dict[str, Any]:
    """Mark the execution's run FAILED (with the error and cause) and publish it to the run events topic.

    A succeeded run is left alone and nothing is published; a run that was never registered (RegisterRun
    failed) is still announced, with ``run_id`` null. Returns what was done.
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
    if run_id is not None and run is not None:
        done["run_id"] = run_id
        skipped = _already_handled(run, detail.execution_arn, error)
        if skipped:
            return {**done, "skipped": skipped}
        if not store.finish_run(run_id, RunStatus.FAILED, error=error, cause=cause, execution=detail.execution_arn):
            return {**done, "skipped": "the run has succeeded"}
        done["recorded"] = True
    message = {
        "status": RunStatus.FAILED.value,
        "run_id": done["run_id"],
        "execution": detail.execution_arn,
        "error": error,
        "cause": cause,
        "source": f"s3://{upload.bucket}/{upload.object_key}" if upload is not None else None,
    }
    sns.publish(
        TopicArn=topic_arn,
        Subject=SUBJECT,
        Message=json.dumps(message, ensure_ascii=False),
        MessageAttributes={"status": {"DataType": "String", "StringValue": RunStatus.FAILED.value}},
    )
    done["notified"] = True
    return done


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
