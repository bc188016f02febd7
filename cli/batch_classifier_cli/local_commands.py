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
import os
import signal
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Callable
from typing import Any

from .run_command import _follow, _shards_processed, cmd_run
from .runtimes import (
    SERVER_FILE,
    LocalRuntimeError,
    RunSettings,
    _need_server,
    parse_duration,
    parse_time_scale,
    project_root,
    state_dir,
)

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
    from batch_classifier_local.executions import iso, seconds_between  # noqa: PLC0415

    stop = row.get("stopDate")
    return {
        "name": row["name"],
        "arn": row["executionArn"],
        "state_machine": row.get("state_machine"),
        "status": row["status"],
        "started": iso(row["startDate"]),
        "stopped": iso(stop),
        "seconds": seconds_between(row["startDate"], stop),
        "file": row.get("file") or None,
    }


def execution_details(sfn: Any, arn: str) -> dict[str, Any]:
    """What ``show`` prints, as JSON: the execution, then every state with its status, times, error and cause."""
    from batch_classifier_local.executions import iso, seconds_between, state_runs  # noqa: PLC0415

    described = sfn.describe_execution(executionArn=arn)
    stop = described.get("stopDate")
    return {
        "name": described["name"],
        "arn": described["executionArn"],
        "status": described["status"],
        "started": iso(described["startDate"]),
        "stopped": iso(stop),
        "seconds": seconds_between(described["startDate"], stop),
        "error": described.get("error"),
        "cause": described.get("cause"),
        "states": [
            {
                "name": run.name,
                "type": run.kind,
                "status": run.status,
                "entered": iso(run.entered),
                "exited": iso(run.exited),
                "seconds": None if run.seconds is None else round(run.seconds, 3),
                "iterations": run.iterations or None,
                "error": run.error,
                "cause": run.cause,
            }
            for run in state_runs(sfn, arn)
        ],
    }


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
