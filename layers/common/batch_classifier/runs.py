"""The steps of a run in the cloud: what each Lambda function does, on S3 and the status table.

Each function here is one state of the workflow (docs/workflow.md) and takes its clients as arguments, so
the handlers stay thin and the tests drive these with moto. They build on the same pieces as the local
``prepare``/``collect`` pipeline: readers and mapping, the batch line encoder and shard planning, output parsing
and verdicts. RegisterRun and SubmitJob are here; ConvertInput and ShardRecords (the upload into records and
shards) are in :mod:`.run_intake`, ProcessShard and PlanRetries (results and retry rounds) in :mod:`.run_results`,
and all are importable from here. FinalizeRun, the record-ordered join and the outputs, is :mod:`.finalize`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from .bedrock import Submission, submit_shard
from .run_intake import convert_input, load_run_task, run_plan, run_task, shard_lines, shard_records, shard_texts
from .run_results import (
    UNSENT_EXTRA_ROUNDS,
    ShardRetries,
    last_round,
    plan_retries,
    process_shard,
    results_key,
    retries_key,
)
from .settings import Settings
from .status import ShardStatus, StatusStore
from .storage import (
    RunFiles,
    UploadFile,
)
from .workflow import JobCheck, ObjectCreated, RunRef, ShardRef, run_id_for
from .write_behind import WriteBehind

__all__ = [
    "UNSENT_EXTRA_ROUNDS",
    "ShardRetries",
    "convert_input",
    "last_round",
    "load_run_task",
    "plan_retries",
    "process_shard",
    "register_run",
    "results_key",
    "retries_key",
    "run_id_of",
    "run_plan",
    "run_task",
    "shard_lines",
    "shard_records",
    "shard_texts",
    "submit_job",
    "task_name_for",
]

_INPUT_PREFIX = "input_data/"


# --- RegisterRun ----------------------------------------------------------------------------------------


def task_name_for(key: str, default: str) -> str:
    """``input_data/<task>/<file>`` names its task; a file directly under ``input_data/`` gets the default."""
    parts = PurePosixPath(key.removeprefix(_INPUT_PREFIX)).parts
    return parts[0] if len(parts) > 1 else default


def run_id_of(event: ObjectCreated) -> str:
    """The run id of an upload event (the execution input): the same upload always gives the same run."""
    # The ETag tells one upload of a key from the next; without one, the event id still tells a redelivery.
    version = event.etag.strip('"') or f"event:{event.event_id or event.event_time or ''}"
    return run_id_for(event.bucket, event.object_key, version)


def register_run(event: ObjectCreated, store: StatusStore, settings: Settings, execution: str | None = None) -> RunRef:
    """Record the run of an upload; a second event for the same upload comes back ``duplicate``. A "folder" (a key
    ending in ``/``, as the S3 console makes them) is not a file: it comes back ``ignored``, with no run."""
    key = event.object_key
    run = RunRef(
        run_id=run_id_of(event),
        task=task_name_for(key, settings.default_task),
        bucket=event.bucket,
        key=key,
        etag=event.etag.strip('"'),
        version_id=event.object_version,
        size=event.size,
    )
    if key.endswith("/"):
        return run.model_copy(update={"ignored": f"{key} is a folder, not a file: there is nothing to classify."})
    if not store.register_run(run, execution):
        return run.model_copy(update={"duplicate": True})
    return run


# --- SubmitJob ------------------------------------------------------------------------------------------


def submit_job(run: RunRef, shard: ShardRef, s3: Any, bedrock: Any, store: StatusStore, settings: Settings) -> JobCheck:
    """Write a batch shard's job input and create its job, idempotently (a shard never gets a second job).

    A quota refusal leaves the shard queued: CheckJob submits it on a later turn of the wait/poll loop.
    """
    files = RunFiles(run.run_id)
    task = run_task(s3, settings, files)
    item = store.get_shard(run.run_id, shard.name) or {}
    if not item.get("job_arn"):
        with WriteBehind(UploadFile(s3, settings.internal_bucket, files.job_input(shard.name))) as job_input:
            for line in shard_lines(s3, settings, task, shard):
                job_input.write(line)
    outcome = submit_shard(
        bedrock, store, settings, run, shard, settings.model_id or task.model_id, task.invocation_type.value
    )
    status = ShardStatus.QUEUED if outcome.outcome is Submission.QUEUED else ShardStatus.SUBMITTED
    return JobCheck(status=status.value, wait_seconds=settings.poll_min_seconds)
