"""``batch-classifier run``: upload a file to the local runtime, follow its execution live, download its results."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_classifier.storage import INPUT_PREFIX, TASKS_PREFIX
from batch_classifier.tasks import bundled_task_names, load_task

from .progress import ProgressLine
from .runtimes import LocalRuntimeError, Remote, RunSettings, runtime_for_command

# --- run ----------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, print_summary: Callable[[dict[str, Any]], None]) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise LocalRuntimeError(f"no such file: {source}.")
    task_name, task_file = run_task(args.task)
    settings = RunSettings.from_args(args)
    with runtime_for_command(args.model, settings) as runtime:
        started = time.monotonic()
        bucket = _outputs(runtime)["CustomerBucketName"]
        if task_file is not None and task_name is not None:
            task_key = upload_task(runtime, task_file, task_name)
            print(f"task {task_name!r} from {task_file} uploaded to s3://{bucket}/{task_key}")
            if task_name in bundled_task_names():
                print(f"  (it replaces the bundled task {task_name!r} for this runtime's uploads)")
        key = input_key(source.name, task_name)
        if args.force:
            key = _rerun_key(runtime.client("s3"), bucket, key)
        arn = runtime.upload(source, key)
        print(f"uploaded {source.name} to s3://{bucket}/{key}")
        print(f"execution {arn.rsplit(':', 1)[-1]}")
        sfn = runtime.client("stepfunctions")
        described = _follow(sfn, arn, started, processed=_shards_processed(runtime))
        from batch_classifier_local.executions import finalize_result, format_execution  # noqa: PLC0415

        result = finalize_result(sfn, arn)
        if described["status"] != "SUCCEEDED" and result is None:
            print(format_execution(sfn, arn))
            return 1
        if result is None:
            print("\n".join(_earlier_run(runtime, json.loads(described.get("output") or "{}"), args.out)))
            print(f"to classify it again, add --force: it is then uploaded as {_rerun_name(key)}")
            return 1
        summary = _download_results(runtime, result, Path(args.out))
        print_summary(summary)
        print(f"  answered by {_model_name(runtime)}")
        print(f"finished in {time.monotonic() - started:.1f}s")
        if described["status"] != "SUCCEEDED":  # FinalizeRun wrote every row, but nothing was classified
            print(f"the run failed ({described.get('error')}): {result.get('headline', '')}")
            return 1
    return 0


def run_task(task: str | None) -> tuple[str | None, Path | None]:
    """``run --task``: a task name (bundled, or already in the bucket's config/tasks/), or a task file, which is
    checked here and uploaded where the workflow reads users' tasks. Returns the task's name and its file."""
    if task is None:
        return None, None
    path = Path(task)
    if path.suffix.lower() in {".yaml", ".yml"} or "/" in task or os.sep in task or path.is_file():
        return load_task(path).name, path
    return task, None


def upload_task(runtime: Any, task_file: Path, name: str) -> str:
    """Put a task file at ``config/tasks/<name>.yaml`` in the customer bucket (where ConvertInput looks first)."""
    key = f"{TASKS_PREFIX}/{name}.yaml"
    runtime.client("s3").put_object(
        Bucket=_outputs(runtime)["CustomerBucketName"], Key=key, Body=task_file.read_bytes()
    )
    return key


def input_key(file_name: str, task: str | None) -> str:
    """``input_data/<task>/<file>``, or ``input_data/<file>`` for the stack's default task."""
    return f"{INPUT_PREFIX}/{task}/{file_name}" if task else f"{INPUT_PREFIX}/{file_name}"


def _rerun_name(key: str, when: datetime | None = None, attempt: int = 1) -> str:
    """``input_data/calls.csv`` → ``input_data/calls-rerun-20250102T030405Z.csv`` (``-<attempt>`` after the time from
    the second attempt on; ``<UTC time>`` when no time is given). A run is told by its upload's bucket, key and ETag:
    the same file uploaded again under the same key is the same run, under a key of its own it is a new one."""
    path = PurePosixPath(key)
    stamp = f"{when:%Y%m%dT%H%M%SZ}" if when else "<UTC time>"
    if attempt > 1:
        stamp = f"{stamp}-{attempt}"
    return str(path.with_name(f"{path.stem}-rerun-{stamp}{path.suffix}"))


def _rerun_key(s3: Any, bucket: str, key: str) -> str:
    """The key of a deliberate rerun: one that no object has yet."""
    now = datetime.now(UTC)
    for attempt in range(1, 100):
        candidate = _rerun_name(key, now, attempt)
        try:
            s3.head_object(Bucket=bucket, Key=candidate)
        except ClientError:
            return candidate
    raise LocalRuntimeError(f"cannot find a free key for a rerun of {key}.")


def _earlier_run(runtime: Any, output: dict[str, Any], out: str) -> list[str]:
    """Where the run of an upload that came again is, in lines to print: its status and execution, its results in
    the customer bucket when it has them, and the folder ``run`` downloaded them to when that folder is here."""
    run = output.get("run") or {}
    upload = f"s3://{run.get('bucket', '?')}/{run.get('key', '?')} (ETag {run.get('etag', '?')})"
    run_id = run.get("run_id")
    if not run_id:
        return [f"duplicate upload: {upload} already has a run; nothing was done."]
    try:
        from batch_classifier.status import run_key  # noqa: PLC0415

        item = runtime.client("dynamodb").get_item(
            TableName=_outputs(runtime)["RunsTableName"], Key={k: {"S": v} for k, v in run_key(run_id).items()}
        )
        record = {k: next(iter(v.values())) for k, v in item.get("Item", {}).items()}
        status = record.get("run_status", "status unknown")
        lines = [f"duplicate upload: {upload} already has run {run_id} ({status}); nothing was done."]
        execution = str(record.get("execution") or "")
        if execution:
            name = execution.rsplit(":", 1)[-1]
            lines.append(f"  execution   {name} (`batch-classifier show {name}`)")
        prefix = str(record.get("output_prefix") or "")
        if not prefix and execution:  # a run item without it: the execution's output says where the results are
            earlier = runtime.client("stepfunctions").describe_execution(executionArn=execution)
            summary = (json.loads(earlier.get("output") or "{}").get("result") or {}).get("summary") or ""
            prefix = summary.split("/", 3)[-1].rsplit("/", 1)[0] + "/" if summary else ""
        if prefix:
            lines.append(f"  results     s3://{run.get('bucket', '?')}/{prefix}")
            local = Path(out) / PurePosixPath(prefix).name
            if local.is_dir():
                lines.append(f"  downloaded  {local}/")
        elif status == "RUNNING":
            lines.append("  results     none yet: the run is still running")
    except (BotoCoreError, ClientError, KeyError, ValueError):
        return [f"duplicate upload: {upload} already has run {run_id}; nothing was done."]
    return lines


def _model_name(runtime: Any) -> str:
    if isinstance(runtime, Remote):
        return "the model of the running `batch-classifier serve`"
    name = str(runtime.bedrock.model.name)
    if name == "offline-classifier":
        return "the offline classifier: a deterministic local stand-in built from the task's categories, not an LLM"
    return name


def _outputs(runtime: Any) -> dict[str, str]:
    return runtime.outputs if isinstance(runtime, Remote) else runtime.stack.outputs


def _follow(
    sfn: Any, arn: str, started: float, seen: int = 0, processed: Callable[[str], int] | None = None
) -> dict[str, Any]:
    """Print each state as it finishes (the live view), until the execution ends; the first ``seen`` events of
    the history (a redriven execution's earlier attempts) are not shown.

    Below those lines, a bar of the shards processed (``processed(run_id)``, from the status table) out of the shards
    planned (ShardRecords' and PlanRetries' outputs), named after the state running; plain lines every so often
    when standard error is not a terminal."""
    entered: dict[str, float] = {}
    progress = ProgressLine(unit="shard")
    run_id: str | None = None
    planned: dict[int, int] = {}  # shards per round: ShardRecords' round, then PlanRetries' new rounds
    scanned = done = 0
    counted = 0.0
    running = "starting"
    try:
        while True:
            described = sfn.describe_execution(executionArn=arn)
            events = sfn.get_execution_history(executionArn=arn)["events"]
            for number, event in enumerate(events[scanned:], start=scanned):
                kind = event["type"]
                if kind.endswith("StateExited"):  # from the first event: a redrive goes on with the earlier plan
                    output = _json_object(event["stateExitedEventDetails"].get("output"))
                    run_id = run_id or (output.get("run") or {}).get("run_id")
                    if event["stateExitedEventDetails"]["name"] in {"ShardRecords", "PlanRetries"}:
                        plan = output.get("plan") or {}  # PlanRetries with nothing to retry gives the same round
                        planned[int(plan.get("round") or 1)] = int(plan.get("shards") or 0)
                if number < seen:
                    continue
                at = time.monotonic() - started
                if kind.endswith("StateEntered"):
                    running = event["stateEnteredEventDetails"]["name"]
                    entered[running] = at
                elif kind.endswith("StateExited"):
                    name = event["stateExitedEventDetails"]["name"]
                    took = at - entered.get(name, at)
                    progress.write(f"  {at:6.1f}s  {name:<22} done in {took:.2f}s")
                elif kind in {"TaskFailed", "LambdaFunctionFailed", "MapIterationFailed", "ExecutionFailed"}:
                    details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                    progress.write(f"  {at:6.1f}s  {kind}: {details.get('error', '')}")
            scanned = len(events)
            if described["status"] != "RUNNING":
                return dict(described)
            if processed is not None and run_id and planned and time.monotonic() - counted >= 1.0:
                done, counted = processed(run_id), time.monotonic()
            progress.update("shards", done, sum(planned.values()) or None, note=running)
            time.sleep(0.1)
    finally:
        progress.done()


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _shards_processed(runtime: Any) -> Callable[[str], int]:
    """How many of a run's shards are processed, read from the status table."""
    from batch_classifier.status import SHARD_PREFIX, ShardStatus, run_key  # noqa: PLC0415

    dynamodb = runtime.client("dynamodb")
    table = _outputs(runtime)["RunsTableName"]

    def count(run_id: str) -> int:
        query: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "shard_status = :processed",
            "ExpressionAttributeValues": {
                ":pk": {"S": run_key(run_id)["pk"]},
                ":prefix": {"S": SHARD_PREFIX},
                ":processed": {"S": ShardStatus.PROCESSED.value},
            },
            "Select": "COUNT",
        }
        total = 0
        while True:
            try:
                page = dynamodb.query(**query)
            except (BotoCoreError, ClientError):  # the bar is only a view: it waits for the next look
                return total
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return count


def _download_results(runtime: Any, result: dict[str, Any], out: Path) -> dict[str, Any]:
    s3 = runtime.client("s3")
    bucket, summary_key = result["summary"].removeprefix("s3://").split("/", 1)
    folder = out / summary_key.rsplit("/", 2)[-2]
    folder.mkdir(parents=True, exist_ok=True)
    report = [result["report"]] if result.get("report") else []  # report.html, when FinalizeRun could write it
    review = [result["review"]] if result.get("review") else []  # review.xlsx, when a row needs review
    for uri in [*result["outputs"], result["summary"], *report, *review]:
        key = uri.removeprefix("s3://").split("/", 1)[1]
        s3.download_file(bucket, key, str(folder / key.rsplit("/", 1)[-1]))
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    print(f"results in {folder}/ (also at s3://{bucket}/{summary_key.rsplit('/', 1)[0]}/)")
    return summary
