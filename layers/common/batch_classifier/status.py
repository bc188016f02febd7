"""The status table: one item per run and one per shard, every status change a conditional update.

Keys: ``pk = RUN#<run_id>``; the run item has ``sk = RUN``, shard items ``sk = SHARD#<name>``. The index
``RunsByStatus`` (``run_status``, ``started_at``) lists runs by status and time. Conditions make sure that two
writers cannot move a run or a shard backwards (a late CheckJob cannot undo PROCESSED, a duplicate event
cannot restart a running run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from .workflow import RunRef, ShardRef, now_iso

RUN_SK = "RUN"
SHARD_PREFIX = "SHARD#"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


#: The error of a run in which no row was classified: FinalizeRun records it, the workflow announces it.
NOTHING_CLASSIFIED = "NothingClassifiedError"


class RunOutcome(StrEnum):
    """What a finished run means for its user (in the status table, summary.json and the notification)."""

    SUCCEEDED = "succeeded"  # classified, with at most the tolerated share of rows left unclassified
    SUCCEEDED_WITH_ERRORS = "succeeded_with_errors"  # classified, but more rows than tolerated were not
    FAILED = "failed"  # no row was classified: the execution fails
    # classified, but the task's control rows were answered below its controls.min_accuracy: the run succeeds, and
    # its accuracy on the user's rows is in doubt (see controls.py)
    DEGRADED = "degraded"

    def headline(self, rows: int, by_status: dict[str, int]) -> str:
        """One sentence for a person: what happened to the rows."""
        classified = by_status.get("classified", 0)
        others = ", ".join(
            f"{count:,} {status}" for status, count in by_status.items() if count and status != "classified"
        )
        if self is RunOutcome.FAILED:
            return f"no row was classified: {others or 'no rows'}; the outputs give each row's status."
        if self is RunOutcome.SUCCEEDED_WITH_ERRORS:
            return f"{classified:,} of {rows:,} rows classified; not classified: {others}."
        tail = f" (not classified: {others})" if others else ""
        return f"{classified:,} of {rows:,} rows classified{tail}."


def run_outcome(rows: int, by_status: dict[str, int], error_rows_percent: float) -> RunOutcome:
    """Failed when nothing was classified; with errors when more than ``error_rows_percent`` % of the rows were
    not classified (invalid input, model errors, unparseable or off-list answers); else succeeded."""
    classified = by_status.get("classified", 0)
    if classified == 0:
        return RunOutcome.FAILED
    if 100.0 * (rows - classified) / rows > error_rows_percent:
        return RunOutcome.SUCCEEDED_WITH_ERRORS
    return RunOutcome.SUCCEEDED


class ShardStatus(StrEnum):
    """A shard's life: queued, submitted, the Bedrock job's own statuses, then processed."""

    QUEUED = "QUEUED"
    SUBMITTED = "Submitted"
    VALIDATING = "Validating"
    SCHEDULED = "Scheduled"
    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    PARTIALLY_COMPLETED = "PartiallyCompleted"
    FAILED = "Failed"
    STOPPED = "Stopped"
    EXPIRED = "Expired"
    PROCESSED = "PROCESSED"


TERMINAL_JOB_STATUSES = frozenset(
    {
        ShardStatus.COMPLETED,
        ShardStatus.PARTIALLY_COMPLETED,
        ShardStatus.FAILED,
        ShardStatus.STOPPED,
        ShardStatus.EXPIRED,
    }
)


def run_key(run_id: str) -> dict[str, str]:
    return {"pk": f"RUN#{run_id}", "sk": RUN_SK}


def shard_key(run_id: str, shard: str) -> dict[str, str]:
    return {"pk": f"RUN#{run_id}", "sk": f"{SHARD_PREFIX}{shard}"}


def _applied(write: Callable[[], Any]) -> bool:
    """Run a conditional write; False when its condition does not hold (another writer got there first)."""
    try:
        write()
    except ClientError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def _conditional_failed(exc: ClientError) -> bool:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code == "ConditionalCheckFailedException"


class StatusStore:
    """Runs and shards in the status table (a boto3 ``Table`` resource)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    # --- runs ---------------------------------------------------------------------------------------

    def register_run(self, run: RunRef, execution: str | None = None) -> bool:
        """Record a new run; False when the upload already has a run that is running or succeeded."""
        item = {
            **run_key(run.run_id),
            "run_status": RunStatus.RUNNING.value,
            "started_at": run.started_at,
            "updated_at": run.started_at,
            "task": run.task,
            "source_bucket": run.bucket,
            "source_key": run.key,
            "source_etag": run.etag,
            "source_size": run.size,
        }
        if execution:
            item["execution"] = execution
        return _applied(
            lambda: self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR run_status = :failed",
                ExpressionAttributeValues={":failed": RunStatus.FAILED.value},
            )
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._table.get_item(Key=run_key(run_id)).get("Item")
        return found

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields of a run that has not succeeded; the run is RUNNING again (a failed run being redriven)."""
        self._update(
            run_key(run_id),
            {**fields, "run_status": RunStatus.RUNNING.value},
            condition="attribute_exists(pk) AND run_status <> :succeeded",
            values={":succeeded": RunStatus.SUCCEEDED.value},
        )

    def finish_run(self, run_id: str, status: RunStatus, **fields: Any) -> bool:
        """Move a run to SUCCEEDED or FAILED; a succeeded run never moves again (False then)."""
        return _applied(
            lambda: self._update(
                run_key(run_id),
                {"run_status": status.value, "finished_at": now_iso(), **fields},
                condition="attribute_exists(pk) AND run_status <> :succeeded",
                values={":succeeded": RunStatus.SUCCEEDED.value},
            )
        )

    # --- shards -------------------------------------------------------------------------------------

    def add_shards(self, run_id: str, shards: list[ShardRef]) -> None:
        """Queue shards; a shard that is already there (a retried step) is left as it is."""
        for shard in shards:
            item = {
                **shard_key(run_id, shard.name),
                "shard_status": ShardStatus.QUEUED.value,
                "kind": shard.kind.value,
                "records": shard.records,
                "round": shard.round,
                "attempts": 0,
                "updated_at": now_iso(),
            }
            _applied(partial(self._table.put_item, Item=item, ConditionExpression="attribute_not_exists(pk)"))

    def get_shard(self, run_id: str, shard: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._table.get_item(Key=shard_key(run_id, shard), ConsistentRead=True).get(
            "Item"
        )
        return found

    def shards(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every shard item of a run (consistent read), in name order."""
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": f"RUN#{run_id}", ":prefix": SHARD_PREFIX},
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**query)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_submitted(self, run_id: str, shard: str, job_arn: str, job_name: str) -> bool:
        """Attach a job to a queued shard; False when the shard already has one (the job stands)."""
        return _applied(
            lambda: self._update(
                shard_key(run_id, shard),
                {
                    "shard_status": ShardStatus.SUBMITTED.value,
                    "job_arn": job_arn,
                    "job_name": job_name,
                    "submitted_at": now_iso(),
                },
                condition="attribute_not_exists(job_arn)",
                values={},
                add={"attempts": 1},
            )
        )

    def note_attempt(self, run_id: str, shard: str, error: str) -> None:
        """Count a submission that was refused (the shard stays queued)."""
        self._update(shard_key(run_id, shard), {"error": error}, condition=None, values={}, add={"attempts": 1})

    def set_shard_status(self, run_id: str, shard: str, status: ShardStatus, **fields: Any) -> bool:
        """Record a job status or PROCESSED; a processed shard never changes again (False then)."""
        return _applied(
            lambda: self._update(
                shard_key(run_id, shard),
                {"shard_status": status.value, **fields},
                condition="attribute_exists(pk) AND shard_status <> :processed",
                values={":processed": ShardStatus.PROCESSED.value},
            )
        )

    # --- plumbing -----------------------------------------------------------------------------------

    def _update(
        self,
        key: dict[str, str],
        fields: dict[str, Any],
        *,
        condition: str | None,
        values: dict[str, Any],
        add: dict[str, int] | None = None,
    ) -> None:
        fields = {**fields, "updated_at": now_iso()}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        attribute_values = {f":v{i}": _dynamo_value(value) for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        if add:
            for j, (name, amount) in enumerate(add.items()):
                names[f"#a{j}"] = name
                attribute_values[f":a{j}"] = amount
            expression += " ADD " + ", ".join(f"#a{j} :a{j}" for j in range(len(add)))
        request: dict[str, Any] = {
            "Key": key,
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**attribute_values, **values},
        }
        if condition:
            request["ConditionExpression"] = condition
        self._table.update_item(**request)


def _dynamo_value(value: Any) -> Any:
    """DynamoDB takes Decimal, not float."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo_value(v) for v in value]
    return value
