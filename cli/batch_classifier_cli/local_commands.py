"""The commands that drive the local runtime: run, executions, show, redrive, serve, console, query.

``serve`` keeps a runtime up, with its console in the browser, and writes where they listen (and the settings it
was started with) to ``.local-runtime/server.json``; the other commands use that runtime when it is up, and
``run`` otherwise starts one for the length of the run (its executions and files go away with it, so use
``serve`` to keep them for ``executions``, ``show``, ``redrive`` and ``console``). ``run`` and ``serve`` take the
runtime's settings: template parameter overrides (as ``sam deploy --parameter-overrides``), the simulated duration
of local Bedrock batch jobs, and the time scale of every wait.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from batch_classifier.errors import BatchClassifierError
from batch_classifier.storage import INPUT_PREFIX, TASKS_PREFIX
from batch_classifier.tasks import bundled_task_names, load_task

from .progress import ProgressLine

SERVER_FILE = "server.json"


class LocalRuntimeError(BatchClassifierError):
    """The local runtime is not there or refused the request."""


def project_root() -> Path:
    """The folder holding template.yaml: the current one or one above it."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").is_file() and (folder / "functions").is_dir():
            return folder
    raise LocalRuntimeError(
        "run this from the project folder (the one with template.yaml): the local runtime deploys that template."
    )


def state_dir() -> Path:
    """Where ``serve`` records itself (server.json) and ``query`` mirrors the results: ``.local-runtime`` in the project
    folder, or the folder the environment variable ``BATCH_CLASSIFIER_STATE_DIR`` names."""
    given = os.environ.get("BATCH_CLASSIFIER_STATE_DIR")
    return Path(given) if given else project_root() / ".local-runtime"


@dataclass
class Remote:
    """A runtime served by ``batch-classifier serve`` (possibly in another process)."""

    endpoint: str
    bedrock: str
    outputs: dict[str, str]
    state_machine_arn: str
    settings: dict[str, Any] = field(default_factory=dict)  # what serve was started with (see RunSettings)
    console: str | None = None  # the URL of serve's console

    def client(self, service: str) -> Any:
        url = self.bedrock if service in {"bedrock", "bedrock-runtime"} else self.endpoint
        return boto3.client(
            service,
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 2}),
        )

    def upload(self, path: Path, key: str) -> str:
        """Put a file in the customer bucket; returns the execution this upload started (the one whose input names
        this key and this upload's ETag, among those started since)."""
        from batch_classifier_local.runtime import is_execution_of  # noqa: PLC0415

        sfn, s3 = self.client("stepfunctions"), self.client("s3")
        bucket = self.outputs["CustomerBucketName"]
        checked = self._executions(sfn)
        s3.upload_file(str(path), bucket, key)
        etag = str(s3.head_object(Bucket=bucket, Key=key)["ETag"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for arn in sorted(self._executions(sfn) - checked):
                checked.add(arn)
                if is_execution_of(sfn.describe_execution(executionArn=arn).get("input"), key, etag):
                    return arn
            time.sleep(0.05)
        raise LocalRuntimeError(f"no execution started for {key}; is the runtime's EventBridge delivery running?")

    def _executions(self, sfn: Any) -> set[str]:
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        return {e["executionArn"] for page in pages for e in page["executions"]}


def running_server() -> Remote | None:
    """The runtime of ``batch-classifier serve``, when one answers."""
    path = state_dir() / SERVER_FILE
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    try:
        urllib.request.urlopen(info["endpoint"] + "/moto-api/", timeout=2).close()
    except OSError:
        return None
    return Remote(
        info["endpoint"],
        info["bedrock"],
        info["outputs"],
        info["state_machine_arn"],
        info.get("settings", {}),
        info.get("console"),
    )


# --- the runtime's settings (run and serve) -------------------------------------------------------------------

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``48h``, ``2d``, ``1.5h`` → seconds (argparse type of ``--job-duration``)."""
    found = _DURATION.fullmatch(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 90s, 30m, 48h, 2d"
        )
    return float(found[1]) * _UNIT_SECONDS[found[2].lower()]


def parse_time_scale(text: str) -> float:
    """A positive factor (argparse type of ``--time-scale``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number such as 0.001 or 1e-5")
    return value


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``Key=Value`` items (or ``ParameterKey=Key,ParameterValue=Value``, as ``sam deploy`` also accepts)."""
    overrides: dict[str, str] = {}
    for item in items or []:
        long_form = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", item, re.DOTALL)
        name, sep, value = (long_form[1], "=", long_form[2]) if long_form else item.partition("=")
        if not sep or not name.strip():
            raise LocalRuntimeError(
                f"--parameter-overrides takes Key=Value items (e.g. MaxRecordsPerJob=100), not {item!r}; "
                "put the file before the option."
            )
        overrides[name.strip()] = value
    return overrides


@dataclass
class RunSettings:
    """The settings of a local runtime: what ``run`` and ``serve`` take and ``serve`` records in server.json.
    None (and no overrides) means "not given": the runtime's defaults, or whatever a running serve has."""

    parameters: dict[str, str] = field(default_factory=dict)
    job_duration_seconds: float | None = None
    time_scale: float | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSettings:
        settings = cls(parse_overrides(args.parameter_overrides), args.job_duration, args.time_scale)
        if not settings.parameters and settings.job_duration_seconds is None:
            return settings
        from batch_classifier_local.runtime import ParameterError, check_parameters  # noqa: PLC0415
        from batch_classifier_local.template import load_template  # noqa: PLC0415

        template = load_template(project_root() / "template.yaml")
        try:
            check_parameters(template, settings.parameters)
        except ParameterError as exc:
            raise LocalRuntimeError(str(exc)) from None
        declared = (template.get("Parameters") or {}).get("JobTimeoutHours", {})
        hours = settings.parameters.get("JobTimeoutHours", declared.get("Default"))
        duration = settings.job_duration_seconds
        if duration is not None and hours is not None and duration > float(hours) * 3600:
            print(
                f"note: batch jobs of {_seconds_text(duration)} outlast JobTimeoutHours={hours}: they will end "
                f"Expired at {hours}h, as on Bedrock (--parameter-overrides JobTimeoutHours=... lets them finish).",
                file=sys.stderr,
            )
        return settings

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "job_duration_seconds": self.job_duration_seconds,
            "time_scale": self.time_scale,
        }

    def runtime_options(self) -> dict[str, Any]:
        """Keyword arguments of LocalRuntime."""
        options: dict[str, Any] = {
            "parameters": dict(self.parameters),
            "job_duration_seconds": self.job_duration_seconds,
        }
        if self.time_scale is not None:
            options["time_scale"] = self.time_scale
        return options

    def check_served(self, served: dict[str, Any]) -> None:
        """Refuse settings a running serve was not started with: they apply when a runtime starts."""
        differ = []
        if self.parameters and self.parameters != (served.get("parameters") or {}):
            given = " ".join(f"{k}={v}" for k, v in (served.get("parameters") or {}).items()) or "none"
            differ.append(f"--parameter-overrides (serve has: {given})")
        if self.job_duration_seconds is not None and self.job_duration_seconds != served.get("job_duration_seconds"):
            differ.append(f"--job-duration (serve has: {_seconds_text(served.get('job_duration_seconds'))})")
        if self.time_scale is not None and self.time_scale != served.get("time_scale"):
            differ.append(f"--time-scale (serve has: {served.get('time_scale', 'the default')})")
        if differ:
            raise LocalRuntimeError(
                f"a `batch-classifier serve` is running, and {', '.join(differ)} cannot apply to it: settings apply "
                "when a runtime starts, so drop them or restart serve with them."
            )

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.parameters.items()]
        if self.job_duration_seconds is not None:
            parts.append(f"batch jobs of {_seconds_text(self.job_duration_seconds)}")
        if self.time_scale is not None:
            parts.append(f"time scale {self.time_scale:g}")
        return ", ".join(parts)


def _seconds_text(seconds: Any) -> str:
    if seconds is None:
        return "the default"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@contextmanager
def runtime_for_command(model: str | None = None, settings: RunSettings | None = None) -> Iterator[Any]:
    """The served runtime when one is up (refusing settings it was not started with), else a runtime for this
    command only."""
    settings = settings or RunSettings()
    remote = running_server()
    if remote is not None:
        settings.check_served(remote.settings)
        yield remote
        return
    from batch_classifier_local.models import model_from_spec  # noqa: PLC0415 - heavy imports, local commands only
    from batch_classifier_local.runtime import LocalRuntime  # noqa: PLC0415

    print("starting the local runtime (moto, local Bedrock, workers) ...", file=sys.stderr)
    if settings.describe():
        print(f"  with {settings.describe()}", file=sys.stderr)
    runtime = LocalRuntime(root=project_root(), model=model_from_spec(model), **settings.runtime_options())
    with runtime:
        yield runtime


def _need_server() -> Remote:
    """The running serve, for the commands that only read from it."""
    try:
        remote = running_server()
    except LocalRuntimeError:  # not in the project folder, where serve records itself
        raise LocalRuntimeError(
            f"no local runtime found from here: `batch-classifier serve` records where it listens in the project "
            f"folder's .local-runtime/{SERVER_FILE}, so run this command in the project folder (the one with "
            "template.yaml)."
        ) from None
    if remote is None:
        raise LocalRuntimeError(
            "no local runtime is running: start one with `batch-classifier serve` in another terminal "
            "(executions live as long as it runs)."
        )
    return remote


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
    for uri in [*result["outputs"], result["summary"], *report]:
        key = uri.removeprefix("s3://").split("/", 1)[1]
        s3.download_file(bucket, key, str(folder / key.rsplit("/", 1)[-1]))
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    print(f"results in {folder}/ (also at s3://{bucket}/{summary_key.rsplit('/', 1)[0]}/)")
    return summary


# --- executions, show, redrive ------------------------------------------------------------------------------


def cmd_executions(args: argparse.Namespace) -> int:
    from batch_classifier_local.executions import list_all  # noqa: PLC0415

    sfn = _need_server().client("stepfunctions")
    rows = list_all(sfn)
    if args.json:
        print(json.dumps([_execution_json(row) for row in rows], indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no executions yet: drop a file with `batch-classifier run FILE`")
        return 0
    print(f"{'name':<48} {'status':<10} {'started':<19} {'seconds':>8}  file")
    for row in rows:
        stop = row.get("stopDate")
        seconds = f"{(stop - row['startDate']).total_seconds():.1f}" if stop else ""
        started = f"{row['startDate']:%Y-%m-%d %H:%M:%S}"
        print(f"{row['name'][:48]:<48} {row['status']:<10} {started} {seconds:>8}  {row['file']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from batch_classifier_local.executions import format_execution, resolve  # noqa: PLC0415

    sfn = _need_server().client("stepfunctions")
    arn = _resolve(resolve, sfn, args.execution)
    if args.json:
        print(json.dumps(execution_details(sfn, arn), indent=2, ensure_ascii=False))
    else:
        print(format_execution(sfn, arn))
    return 0


def _execution_json(row: dict[str, Any]) -> dict[str, Any]:
    """One line of ``executions`` as JSON (times in ISO 8601)."""
    stop = row.get("stopDate")
    return {
        "name": row["name"],
        "arn": row["executionArn"],
        "state_machine": row.get("state_machine"),
        "status": row["status"],
        "started": _iso(row["startDate"]),
        "stopped": _iso(stop),
        "seconds": round((stop - row["startDate"]).total_seconds(), 3) if stop else None,
        "file": row.get("file") or None,
    }


def execution_details(sfn: Any, arn: str) -> dict[str, Any]:
    """What ``show`` prints, as JSON: the execution, then every state with its status, times, error and cause."""
    from batch_classifier_local.executions import state_runs  # noqa: PLC0415

    described = sfn.describe_execution(executionArn=arn)
    stop = described.get("stopDate")
    return {
        "name": described["name"],
        "arn": described["executionArn"],
        "status": described["status"],
        "started": _iso(described["startDate"]),
        "stopped": _iso(stop),
        "seconds": round((stop - described["startDate"]).total_seconds(), 3) if stop else None,
        "error": described.get("error"),
        "cause": described.get("cause"),
        "states": [
            {
                "name": run.name,
                "type": run.kind,
                "status": run.status,
                "entered": _iso(run.entered),
                "exited": _iso(run.exited),
                "seconds": None if run.seconds is None else round(run.seconds, 3),
                "iterations": run.iterations or None,
                "error": run.error,
                "cause": run.cause,
            }
            for run in state_runs(sfn, arn)
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def cmd_redrive(args: argparse.Namespace) -> int:
    from batch_classifier_local.executions import ExecutionNotRedrivable, format_execution, redrive, resolve  # noqa: PLC0415

    server = _need_server()
    sfn = server.client("stepfunctions")
    arn = _resolve(resolve, sfn, args.execution)
    started = time.monotonic()
    try:
        done = redrive(sfn, arn)
    except ExecutionNotRedrivable as exc:
        raise LocalRuntimeError(str(exc)) from None
    times = "once" if done.count == 1 else f"{done.count} times"
    print(f"redriving execution {arn.rsplit(':', 1)[-1]} at {done.resumes_at} (same execution ARN; redriven {times})")
    described = _follow(sfn, arn, started, seen=done.events_before, processed=_shards_processed(server))
    print(format_execution(sfn, arn))
    return 0 if described["status"] == "SUCCEEDED" else 1


def _resolve(resolve: Callable[[Any, str], str], sfn: Any, name: str) -> str:
    try:
        return resolve(sfn, name)
    except KeyError as exc:
        raise LocalRuntimeError(str(exc.args[0])) from None


# --- serve ----------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from batch_classifier_local.console import ConsoleServer  # noqa: PLC0415
    from batch_classifier_local.models import model_from_spec  # noqa: PLC0415
    from batch_classifier_local.runtime import LocalRuntime  # noqa: PLC0415

    root = project_root()
    settings = RunSettings.from_args(args)
    runtime = LocalRuntime(root=root, model=model_from_spec(args.model), port=args.port, **settings.runtime_options())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with runtime:
        assert runtime.stack is not None and runtime.bedrock is not None
        outputs = stack_outputs(runtime.client, runtime.stack.outputs)
        try:
            console = ConsoleServer(runtime.client, outputs, port=args.console_port)
        except OSError as exc:
            raise LocalRuntimeError(
                f"the console cannot listen on 127.0.0.1:{args.console_port} ({exc.strerror or exc}): give another "
                "--console-port, or none for a free one."
            ) from None
        console.start()
        info = {
            "endpoint": runtime.endpoint,
            "bedrock": runtime.bedrock.url,
            "console": console.url,
            "outputs": outputs,
            "state_machine_arn": runtime.stack.state_machine_arn,
            "pid": os.getpid(),
            "settings": {**settings.to_json(), "time_scale": runtime.time_scale},
        }
        path = state_dir() / SERVER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"local runtime at {runtime.endpoint} (Bedrock at {runtime.bedrock.url})")
        print(f"console at {console.url} (`batch-classifier console` opens it)")
        print(f"drop files into s3://{runtime.stack.customer_bucket}/input_data/")
        print(f"state machine {runtime.stack.state_machine_arn}")
        if settings.describe():
            print(f"with {settings.describe()}")
        print("stack outputs:")
        width = max(map(len, outputs), default=0)
        for name, value in outputs.items():
            print(f"  {name:<{width}}  {value}")
        print("use it from the AWS CLI or any SDK with:")
        for name, value in runtime.environment.items():
            print(f"  export {name}={value}")
        print("Ctrl-C stops it.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            path.unlink(missing_ok=True)
            console.stop()
    return 0


# --- console ----------------------------------------------------------------------------------------------------


def cmd_console(args: argparse.Namespace) -> int:
    """Print the URL of the running serve's console, and open it in a browser when this machine has one."""
    remote = _need_server()
    if not remote.console:
        raise LocalRuntimeError(
            "the running `batch-classifier serve` has no console (it was started before there was one): restart it."
        )
    try:
        urllib.request.urlopen(remote.console + "api/health", timeout=3).close()
    except OSError as exc:
        raise LocalRuntimeError(f"the console at {remote.console} does not answer ({exc}): restart serve.") from None
    print(f"console at {remote.console}")
    if args.no_browser:
        return 0
    if open_browser(remote.console):
        print("opened in your browser")
    else:
        print("no browser here: open the URL in one (from another machine, forward the port first, e.g. ssh -L)")
    return 0


def open_browser(url: str) -> bool:
    """Open a URL in a graphical browser when there is one; False (never an error) when there is none: no display
    on Linux or BSD (unless $BROWSER names a browser), or no browser Python knows."""
    graphical = sys.platform in {"darwin", "win32", "cygwin"} or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    )
    if not graphical:
        return False
    try:
        webbrowser.get()
        return bool(webbrowser.open(url, new=2))
    except Exception:  # webbrowser.Error, or a launcher that cannot start
        return False


def stack_outputs(client: Callable[[str], Any], outputs: dict[str, str]) -> dict[str, str]:
    """The local stack's outputs, with real values where moto's CloudFormation gives none: the layer version's ARN
    (moto gives the object's repr) and the Glue database and table and the Athena workgroup (moto skips those
    resources and the runtime creates them itself), read back from the local services."""
    fixed = dict(outputs)
    if not fixed.get("CommonLayerArn", "").startswith("arn:"):
        fixed.pop("CommonLayerArn", None)
        layers = [
            layer["LatestMatchingVersion"]["LayerVersionArn"]
            for layer in client("lambda").list_layers().get("Layers", [])
            if "CommonLayer" in layer["LayerName"] and layer.get("LatestMatchingVersion")
        ]
        if len(layers) == 1:
            fixed["CommonLayerArn"] = layers[0]
    glue = client("glue")
    databases = [d["Name"] for d in glue.get_databases().get("DatabaseList", [])]
    if "AnalyticsDatabaseName" not in fixed and len(databases) == 1:
        fixed["AnalyticsDatabaseName"] = databases[0]
    if "AnalyticsTableName" not in fixed and "AnalyticsDatabaseName" in fixed:
        tables = [t["Name"] for t in glue.get_tables(DatabaseName=fixed["AnalyticsDatabaseName"]).get("TableList", [])]
        if len(tables) == 1:
            fixed["AnalyticsTableName"] = tables[0]
    if "AthenaWorkGroupName" not in fixed:
        groups = [
            g["Name"] for g in client("athena").list_work_groups().get("WorkGroups", []) if g["Name"] != "primary"
        ]
        if len(groups) == 1:
            fixed["AthenaWorkGroupName"] = groups[0]
    return fixed


# --- query ------------------------------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb  # noqa: PLC0415 - the local stand-in for Athena

    from batch_classifier_local.analytics import format_rows, mirror, query  # noqa: PLC0415

    remote = _need_server()
    files = mirror(remote.client("s3"), remote.outputs["InternalBucketName"], state_dir() / "analytics")
    if not files:
        raise LocalRuntimeError("no results to query yet: run a file first (`batch-classifier run FILE`).")
    try:
        columns, rows = query(files, args.sql, remote.outputs.get("AnalyticsTableName", "results"))
    except duckdb.Error as exc:
        raise LocalRuntimeError(f"the query failed: {exc}") from None
    print(format_rows(columns, rows))
    return 0


def add_commands(commands: Any, print_summary: Callable[[dict[str, Any]], None]) -> None:
    cmd = commands.add_parser("run", help="classify a file on the local runtime, end to end, and print the summary")
    cmd.add_argument("file", help="the file to drop into input_data/")
    cmd.add_argument(
        "--task",
        help="a task name (uploads under input_data/<task>/), or a task file (.yaml), uploaded first to "
        "config/tasks/<its name>.yaml in the customer bucket; default: the stack's default task",
    )
    cmd.add_argument("--model", help="offline (default) or openai:<base url>#<model> for an OpenAI-compatible server")
    cmd.add_argument("--out", default="results", help="where to copy the results (default: ./results)")
    cmd.add_argument(
        "--force",
        action="store_true",
        help="classify the file even if this runtime has run it before: a run is told by the upload's bucket, key "
        "and ETag (the content), so the file is uploaded under its own key, <name>-rerun-<UTC time>.<ext>, and its "
        "results get their own folder",
    )
    _add_runtime_options(cmd)
    cmd.set_defaults(run=lambda a: cmd_run(a, print_summary))

    cmd = commands.add_parser("executions", help="list the local runtime's executions")
    cmd.add_argument("--json", action="store_true", help="print them as JSON")
    cmd.set_defaults(run=cmd_executions)

    cmd = commands.add_parser("show", help="an execution state by state, as the Step Functions console shows it")
    cmd.add_argument("execution", help="an execution name or ARN")
    cmd.add_argument("--json", action="store_true", help="print it as JSON")
    cmd.set_defaults(run=cmd_show)

    cmd = commands.add_parser(
        "redrive", help="redrive a failed execution (RedriveExecution): it resumes where it failed, same ARN"
    )
    cmd.add_argument("execution", help="an execution name or ARN")
    cmd.set_defaults(run=cmd_redrive)

    cmd = commands.add_parser("serve", help="keep the local runtime up, with its console, and print how to reach them")
    cmd.add_argument("--port", type=int, default=0, help="port of the AWS endpoint (default: a free one)")
    cmd.add_argument(
        "--console-port", type=int, default=0, help="port of the console on 127.0.0.1 (default: a free one)"
    )
    cmd.add_argument("--model", help="offline (default) or openai:<base url>#<model>")
    _add_runtime_options(cmd)
    cmd.set_defaults(run=cmd_serve)

    cmd = commands.add_parser(
        "console", help="(with serve) print the URL of the console in the browser, and open it when a browser is here"
    )
    cmd.add_argument("--no-browser", action="store_true", help="only print the URL")
    cmd.set_defaults(run=cmd_console)

    cmd = commands.add_parser("query", help="SQL over all results with DuckDB (table: results, as in Glue/Athena)")
    cmd.add_argument("sql", help='e.g. "SELECT class, count(*) FROM results GROUP BY class"')
    cmd.set_defaults(run=cmd_query)


def _add_runtime_options(cmd: argparse.ArgumentParser) -> None:
    """The runtime's settings, on run and serve (run refuses them when it reuses a serve started without them)."""
    cmd.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="template parameters, as sam deploy --parameter-overrides takes them "
        "(e.g. MaxRecordsPerJob=100 MinRecordsPerJob=10 MaxConcurrentJobs=3)",
    )
    cmd.add_argument(
        "--job-duration",
        type=parse_duration,
        metavar="DURATION",
        help="simulated time every local Bedrock batch job spends InProgress: 90s, 30m, 48h, 2d (default: a few "
        "seconds); scaled by the time scale. A job longer than JobTimeoutHours ends Expired, as on Bedrock",
    )
    cmd.add_argument(
        "--time-scale",
        type=parse_time_scale,
        metavar="FACTOR",
        help="real seconds per simulated second of every wait: Wait states, retries, batch jobs "
        "(default: 0.001, so 48h take about 3 minutes; 1e-5 about 2 seconds)",
    )
