"""The local runtime a command uses: the one ``batch-classifier serve`` keeps up, or one started for the command.

``serve`` writes where it listens (and the settings it was started with) to ``.local-runtime/server.json``;
``running_server`` reads it back. ``RunSettings`` are the runtime's settings that ``run`` and ``serve`` take:
template parameter overrides, the simulated duration of local Bedrock batch jobs, and the time scale of every wait.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
