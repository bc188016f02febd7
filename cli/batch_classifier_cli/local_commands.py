"""The commands that drive the local runtime: run, executions, show, redrive, serve, query.

``serve`` keeps a runtime up and writes where it listens (and the settings it was started with) to
``.local-runtime/server.json``; the other commands use that runtime when it is up, and ``run`` otherwise starts one
for the length of the run (its executions and files go away with it, so use ``serve`` to keep them for
``executions``, ``show`` and ``redrive``). ``run`` and ``serve`` take the runtime's settings: template parameter
overrides (as ``sam deploy --parameter-overrides``), the simulated duration of local Bedrock batch jobs, and the
time scale of every wait.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from batch_classifier.errors import BatchClassifierError

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
    return project_root() / ".local-runtime"


@dataclass
class Remote:
    """A runtime served by ``batch-classifier serve`` (possibly in another process)."""

    endpoint: str
    bedrock: str
    outputs: dict[str, str]
    state_machine_arn: str
    settings: dict[str, Any] = field(default_factory=dict)  # what serve was started with (see RunSettings)

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
        info["endpoint"], info["bedrock"], info["outputs"], info["state_machine_arn"], info.get("settings", {})
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
    remote = running_server()
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
    key = f"input_data/{args.task}/{source.name}" if args.task else f"input_data/{source.name}"
    settings = RunSettings.from_args(args)
    with runtime_for_command(args.model, settings) as runtime:
        started = time.monotonic()
        arn = runtime.upload(source, key)
        print(f"uploaded {source.name} to s3://{_outputs(runtime)['CustomerBucketName']}/{key}")
        print(f"execution {arn.rsplit(':', 1)[-1]}")
        sfn = runtime.client("stepfunctions")
        described = _follow(sfn, arn, started)
        from batch_classifier_local.executions import finalize_result, format_execution  # noqa: PLC0415

        result = finalize_result(sfn, arn)
        if described["status"] != "SUCCEEDED" and result is None:
            print(format_execution(sfn, arn))
            return 1
        if result is None:
            print(f"duplicate upload: {_earlier_run(runtime, json.loads(described.get('output') or '{}'))}")
            return 1
        summary = _download_results(runtime, result, Path(args.out))
        print_summary(summary)
        print(f"  answered by {_model_name(runtime)}")
        print(f"finished in {time.monotonic() - started:.1f}s")
        if described["status"] != "SUCCEEDED":  # FinalizeRun wrote every row, but nothing was classified
            print(f"the run failed ({described.get('error')}): {result.get('headline', '')}")
            return 1
    return 0


def _earlier_run(runtime: Any, output: dict[str, Any]) -> str:
    """Where the run of an upload that came again is: its execution and status, and its results when it has them."""
    run = output.get("run") or {}
    upload = f"s3://{run.get('bucket', '?')}/{run.get('key', '?')} (ETag {run.get('etag', '?')})"
    run_id = run.get("run_id")
    if not run_id:
        return f"{upload} already has a run; nothing was done."
    try:
        from batch_classifier.status import run_key  # noqa: PLC0415

        item = runtime.client("dynamodb").get_item(
            TableName=_outputs(runtime)["RunsTableName"], Key={k: {"S": v} for k, v in run_key(run_id).items()}
        )
        record = {k: next(iter(v.values())) for k, v in item.get("Item", {}).items()}
        execution = str(record.get("execution") or "")
        where = [f"{upload} already has run {run_id} ({record.get('run_status', 'status unknown')})"]
        if execution:
            name = execution.rsplit(":", 1)[-1]
            where.append(f"started by execution {name} (`batch-classifier show {name}`)")
            earlier = runtime.client("stepfunctions").describe_execution(executionArn=execution)
            summary = (json.loads(earlier.get("output") or "{}").get("result") or {}).get("summary")
            if summary:
                where.append(f"results in {summary.rsplit('/', 1)[0]}/")
    except (BotoCoreError, ClientError, KeyError, ValueError):
        return f"{upload} already has run {run_id}; nothing was done."
    return ", ".join(where) + "; nothing was done."


def _model_name(runtime: Any) -> str:
    if isinstance(runtime, Remote):
        return "the model of the running `batch-classifier serve`"
    name = runtime.bedrock.model.name
    if name == "offline-classifier":
        return "the offline classifier: a deterministic local stand-in built from the task's categories, not an LLM"
    return name


def _outputs(runtime: Any) -> dict[str, str]:
    return runtime.outputs if isinstance(runtime, Remote) else runtime.stack.outputs


def _follow(sfn: Any, arn: str, started: float) -> dict[str, Any]:
    """Print each state as it finishes (the live view), until the execution ends."""
    seen = 0
    entered: dict[str, float] = {}
    while True:
        described = sfn.describe_execution(executionArn=arn)
        events = sfn.get_execution_history(executionArn=arn)["events"]
        for event in events[seen:]:
            kind = event["type"]
            at = time.monotonic() - started
            if kind.endswith("StateEntered"):
                entered[event["stateEnteredEventDetails"]["name"]] = at
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                took = at - entered.get(name, at)
                print(f"  {at:6.1f}s  {name:<22} done in {took:.2f}s", flush=True)
            elif kind in {"TaskFailed", "LambdaFunctionFailed", "MapIterationFailed", "ExecutionFailed"}:
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                print(f"  {at:6.1f}s  {kind}: {details.get('error', '')}", flush=True)
        seen = len(events)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.1)


def _download_results(runtime: Any, result: dict[str, Any], out: Path) -> dict[str, Any]:
    s3 = runtime.client("s3")
    bucket, summary_key = result["summary"].removeprefix("s3://").split("/", 1)
    folder = out / summary_key.rsplit("/", 2)[-2]
    folder.mkdir(parents=True, exist_ok=True)
    for uri in [*result["outputs"], result["summary"]]:
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
    print(format_execution(sfn, _resolve(resolve, sfn, args.execution)))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from batch_classifier_local.executions import ExecutionNotRedrivable, format_execution, redrive, resolve  # noqa: PLC0415

    sfn = _need_server().client("stepfunctions")
    arn = _resolve(resolve, sfn, args.execution)
    try:
        new = redrive(sfn, arn)
    except ExecutionNotRedrivable as exc:
        raise LocalRuntimeError(str(exc)) from None
    print(f"redriving as {new.rsplit(':', 1)[-1]}")
    described = _follow(sfn, new, time.monotonic())
    print(format_execution(sfn, new))
    return 0 if described["status"] == "SUCCEEDED" else 1


def _resolve(resolve: Callable[[Any, str], str], sfn: Any, name: str) -> str:
    try:
        return resolve(sfn, name)
    except KeyError as exc:
        raise LocalRuntimeError(str(exc.args[0])) from None


# --- serve ----------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from batch_classifier_local.models import model_from_spec  # noqa: PLC0415
    from batch_classifier_local.runtime import LocalRuntime  # noqa: PLC0415

    root = project_root()
    settings = RunSettings.from_args(args)
    runtime = LocalRuntime(root=root, model=model_from_spec(args.model), port=args.port, **settings.runtime_options())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with runtime:
        assert runtime.stack is not None and runtime.bedrock is not None
        info = {
            "endpoint": runtime.endpoint,
            "bedrock": runtime.bedrock.url,
            "outputs": runtime.stack.outputs,
            "state_machine_arn": runtime.stack.state_machine_arn,
            "pid": os.getpid(),
            "settings": {**settings.to_json(), "time_scale": runtime.time_scale},
        }
        path = root / ".local-runtime" / SERVER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"local runtime at {runtime.endpoint} (Bedrock at {runtime.bedrock.url})")
        print(f"drop files into s3://{runtime.stack.customer_bucket}/input_data/")
        print(f"state machine {runtime.stack.state_machine_arn}")
        if settings.describe():
            print(f"with {settings.describe()}")
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
    return 0


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
    cmd.add_argument("--task", help="the task (uploads under input_data/<task>/); default: the stack's default task")
    cmd.add_argument("--model", help="offline (default) or openai:<base url>#<model> for an OpenAI-compatible server")
    cmd.add_argument("--out", default="results", help="where to copy the results (default: ./results)")
    _add_runtime_options(cmd)
    cmd.set_defaults(run=lambda a: cmd_run(a, print_summary))

    cmd = commands.add_parser("executions", help="list the local runtime's executions")
    cmd.set_defaults(run=cmd_executions)

    cmd = commands.add_parser("show", help="an execution state by state, as the Step Functions console shows it")
    cmd.add_argument("execution", help="an execution name or ARN")
    cmd.set_defaults(run=cmd_show)

    cmd = commands.add_parser("redrive", help="rerun a failed execution from where it failed")
    cmd.add_argument("execution", help="an execution name or ARN")
    cmd.set_defaults(run=cmd_redrive)

    cmd = commands.add_parser("serve", help="keep the local runtime up and print how to reach it")
    cmd.add_argument("--port", type=int, default=0, help="port of the AWS endpoint (default: a free one)")
    cmd.add_argument("--model", help="offline (default) or openai:<base url>#<model>")
    _add_runtime_options(cmd)
    cmd.set_defaults(run=cmd_serve)

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
