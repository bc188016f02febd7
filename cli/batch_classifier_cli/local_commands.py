"""The commands that drive the local runtime: run, executions, show, redrive, serve, query.

``serve`` keeps a runtime up and writes where it listens to ``.local-runtime/server.json``; the other commands
use that runtime when it is up, and ``run`` otherwise starts one for the length of the run (its executions and
files go away with it, so use ``serve`` to keep them for ``executions``, ``show`` and ``redrive``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

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
        sfn = self.client("stepfunctions")
        before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]}
        self.client("s3").upload_file(str(path), self.outputs["CustomerBucketName"], key)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for execution in sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]:
                if execution["executionArn"] not in before:
                    return str(execution["executionArn"])
            time.sleep(0.05)
        raise LocalRuntimeError(f"no execution started for {key}; is the runtime's EventBridge delivery running?")


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
    return Remote(info["endpoint"], info["bedrock"], info["outputs"], info["state_machine_arn"])


@contextmanager
def runtime_for_command(model: str | None = None) -> Iterator[Any]:
    """The served runtime when one is up, else a runtime for this command only."""
    remote = running_server()
    if remote is not None:
        yield remote
        return
    from batch_classifier_local.models import model_from_spec  # noqa: PLC0415 - heavy imports, local commands only
    from batch_classifier_local.runtime import LocalRuntime  # noqa: PLC0415

    print("starting the local runtime (moto, local Bedrock, workers) ...", file=sys.stderr)
    runtime = LocalRuntime(root=project_root(), model=model_from_spec(model))
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
    with runtime_for_command(args.model) as runtime:
        started = time.monotonic()
        arn = runtime.upload(source, key)
        print(f"uploaded {source.name} to s3://{_outputs(runtime)['CustomerBucketName']}/{key}")
        print(f"execution {arn.rsplit(':', 1)[-1]}")
        sfn = runtime.client("stepfunctions")
        described = _follow(sfn, arn, started)
        if described["status"] != "SUCCEEDED":
            from batch_classifier_local.executions import format_execution  # noqa: PLC0415

            print(format_execution(sfn, arn))
            return 1
        output = json.loads(described.get("output") or "{}")
        if "result" not in output:
            print("duplicate upload: this file already has a run, nothing to do")
            return 0
        summary = _download_results(runtime, output["result"], Path(args.out))
        print_summary(summary)
        print(f"  answered by {_model_name(runtime)}")
        print(f"finished in {time.monotonic() - started:.1f}s")
    return 0


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
    runtime = LocalRuntime(root=root, model=model_from_spec(args.model), port=args.port)
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
        }
        path = root / ".local-runtime" / SERVER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"local runtime at {runtime.endpoint} (Bedrock at {runtime.bedrock.url})")
        print(f"drop files into s3://{runtime.stack.customer_bucket}/input_data/")
        print(f"state machine {runtime.stack.state_machine_arn}")
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
    cmd.set_defaults(run=cmd_serve)

    cmd = commands.add_parser("query", help="SQL over all results with DuckDB (table: results, as in Glue/Athena)")
    cmd.add_argument("sql", help='e.g. "SELECT class, count(*) FROM results GROUP BY class"')
    cmd.set_defaults(run=cmd_query)
