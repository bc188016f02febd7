"""``batch-classifier faults set|show|clear``: rehearse failures against a running ``batch-classifier serve``.

The plan is the local runtime's fault plan (``batch_classifier_local.faults.FaultPlan``), kept by the running
``serve`` (its local Bedrock's ``/_local/faults``) until it is cleared or the runtime stops.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

from .runtimes import LocalRuntimeError, _need_server

PLAN_HELP = """\
A fault plan is a JSON object; every field is optional:
  job_statuses          {"shard-00002": "Failed"}  a substring of a job's name or input URI -> the status it
                        ends with (Completed, Failed, PartiallyCompleted, Expired, Stopped)
  record_errors         {"429": 2, "400": 1}  error code -> records of every job that fail with it
  missing_records       N  the last N records of every job are absent from its output
  malformed_lines       N  the first N output lines of every job are cut short (not JSON)
  quota_refusals        N  the next N CreateModelInvocationJob calls are refused (ServiceQuotaExceededException)
  throttle_on_demand    N  the next N InvokeModel/Converse calls are throttled (ThrottlingException)
  slow_on_demand_seconds S  every InvokeModel/Converse call takes at least S seconds (a slow model)
  functions             {"ProcessShard": {"fail": 1, "crash": 1, "timeout": 1, "error": "Lambda.ServiceException"}}
                        the next invocations of a function (state name, logical id or folder name): "fail"
                        answers with "error" (Lambda.ServiceException, which the workflow retries, unless named
                        otherwise), "crash" dies as it starts (Runtime.ExitError), "timeout" runs to its end and
                        loses its result (Sandbox.Timedout); the last two stop the execution for a redrive
A job's fate is fixed when the job is created; the counts go down as they are used.
Example:
  batch-classifier faults set '{"job_statuses": {"shard-00001": "Failed"}, "functions": {"FinalizeRun": {"crash": 1}}}'
"""


def _call(method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{_need_server().bedrock}/_local/faults"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}").get("message", error.reason)
        raise LocalRuntimeError(f"the local runtime refused the fault plan: {detail}") from None
    except urllib.error.URLError as error:
        raise LocalRuntimeError(f"the local runtime does not answer at {url} ({error.reason}).") from None


def cmd_faults(args: argparse.Namespace) -> int:
    if args.action == "set":
        try:
            plan = json.loads(args.plan)
        except json.JSONDecodeError as exc:
            raise LocalRuntimeError(
                f"the fault plan is not JSON ({exc}); see `batch-classifier faults --help`."
            ) from None
        if not isinstance(plan, dict):
            raise LocalRuntimeError("a fault plan is a JSON object; see `batch-classifier faults --help`.")
        shown = _call("POST", plan)
    elif args.action == "clear":
        shown = _call("DELETE")
    else:
        shown = _call("GET")
    print(json.dumps(shown, indent=2))
    return 0


def add_commands(commands: Any) -> None:
    cmd = commands.add_parser(
        "faults",
        help="inject failures into a running serve (jobs, records, throttling, function errors)",
        description="Set, show or clear the fault plan of a running `batch-classifier serve`.",
        epilog=PLAN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cmd.add_subparsers(dest="action", required=True)
    setter = actions.add_parser(
        "set", help="replace the plan", epilog=PLAN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    setter.add_argument("plan", help="the plan as JSON (see `batch-classifier faults --help`)")
    actions.add_parser("show", help="print the plan in force, with what is left of its counts")
    actions.add_parser("clear", help="remove every fault")
    cmd.set_defaults(run=cmd_faults)
