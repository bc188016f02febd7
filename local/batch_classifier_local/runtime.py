"""The local runtime: ``template.yaml`` deployed into moto on 127.0.0.1, with real handlers and a local Bedrock.

:class:`LocalRuntime` starts moto's server (every AWS service the template uses, real Step Functions execution),
renders the template with aws-sam-translator and creates the stack, then corrects what moto gets wrong:

- state machines: moto ignores ``DefinitionSubstitutions`` and the S3 definition; the ASL file is substituted
  and set on the state machine, which runs with the execution engine on;
- Lambda: moto would run code in Docker; here each function's handler runs in its own worker processes
  (:mod:`workers`) with the function's environment, pointed at this runtime's endpoints;
- EventBridge: moto cannot deliver to Step Functions targets; this runtime does, honouring the rule's
  ``Input``, ``InputPath`` or ``InputTransformer`` and naming every execution uniquely;
- S3: the customer bucket's EventBridge notification setting (dropped by moto) is set again, and S3 raises one
  event per object created, as AWS does (moto raises two for a multipart upload: PutObject, then
  CompleteMultipartUpload), with AWS's ``reason`` and ``etag`` fields;
- Glue and Athena resources (skipped by moto's CloudFormation) are created through their APIs;
- time: Wait states and Retry intervals are scaled (minutes become milliseconds), and so is the simulated
  duration of local Bedrock batch jobs (``job_duration_seconds``).

The patches of moto's own code behind these (Lambda, S3 events and reads, EventBridge delivery, time, Distributed
Map failures, RedriveExecution) are in :mod:`.moto_patches`. Bedrock is
:class:`~batch_classifier_local.bedrock_service.LocalBedrock` (its wire format in :mod:`.bedrock_api`), answered by
a local model.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from batch_classifier.workflow import key_candidates

from . import moto_patches
from .bedrock_service import LocalBedrock
from .deploy import (
    ACCOUNT,
    ARTIFACTS_BUCKET,
    LOCAL_PARAMETERS,
    REGION,
    STACK_NAME,
    ParameterError,
    Stack,
    check_parameters,
    deploy_stack,
)
from .faults import FunctionFault
from .models import Model, model_from_env
from .workers import EXIT_ERROR, TIMEOUT_ERROR, WorkerPool

__all__ = [
    "ACCOUNT",
    "ARTIFACTS_BUCKET",
    "DEFAULT_TIME_SCALE",
    "LOCAL_PARAMETERS",
    "REGION",
    "STACK_NAME",
    "InjectedFailure",
    "LocalRuntime",
    "ParameterError",
    "Stack",
    "check_parameters",
    "execution_name",
    "free_port",
    "is_execution_of",
]

DEFAULT_TIME_SCALE = 0.001
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}
_LOGICAL_ID = re.compile(r"-([A-Za-z0-9]+Function)-")  # a function's logical id in its deployed name

LOG = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class InjectedFailure:
    """A fault for the workflow tests: a function's invocations that fail with ``error`` before running."""

    function: str
    when: Callable[[Any], bool]
    times: int = 1
    error: str = "InjectedFailure"
    after_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def matches(self, function: str, event: Any) -> bool:
        if function != self.function:
            return False
        with self._lock:
            if self.times <= 0 or not self.when(event):
                return False
            self.times -= 1
            return True


@dataclass
class LocalRuntime:
    """The whole product on this machine. Use as a context manager, or ``start()`` / ``stop()``.

    ``parameters`` override the template's parameters (over the local defaults), as ``sam deploy
    --parameter-overrides`` does. ``time_scale`` multiplies every wait (Wait states, Retry intervals, local Bedrock
    phases). ``job_duration_seconds`` is the simulated time each local Bedrock batch job spends InProgress (None: a
    few seconds), scaled by ``time_scale`` like every other wait.
    """

    root: Path
    state_dir: Path | None = None
    time_scale: float = DEFAULT_TIME_SCALE
    model: Model | None = None
    port: int = 0
    parameters: dict[str, str] = field(default_factory=dict)
    job_duration_seconds: float | None = None
    endpoint: str = ""
    stack: Stack | None = None
    bedrock: LocalBedrock | None = None
    pool: WorkerPool | None = None
    failures: list[InjectedFailure] = field(default_factory=list)
    _server: Any = None
    _started_executions: list[str] = field(default_factory=list)

    # --- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntime:
        self.start()
        try:
            self.deploy()
        except BaseException:
            self.stop()  # a refused deploy (e.g. an unknown parameter) leaves no server running
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Serve moto on 127.0.0.1 and the local Bedrock; returns the AWS endpoint URL."""
        from moto.core.config import default_user_config  # noqa: PLC0415
        from moto.server import ThreadedMotoServer  # noqa: PLC0415

        if moto_patches.ACTIVE is not None and moto_patches.ACTIVE is not self:
            raise RuntimeError("a local runtime is already running in this process")
        self.port = self.port or free_port()
        _return_freed_memory()
        os.environ.update(_CREDENTIALS)
        os.environ["MOTO_PORT"] = str(self.port)  # moto's ASL interpreter calls services on this port
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        moto_patches.install()
        moto_patches.ACTIVE = self
        # moto's CloudFormation warns about each resource type it does not model (we create those ourselves).
        warnings.filterwarnings("ignore", message=r"Tried to parse .* not supported by moto", category=UserWarning)
        for noisy in ("werkzeug", "moto"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)  # request lines and interpreter tracebacks
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bedrock = LocalBedrock(
            self.client("s3"),
            self.model or model_from_env(),
            time_scale=self.time_scale,
            job_duration_seconds=self.job_duration_seconds,
        )
        self.bedrock.start()
        return self.endpoint

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.bedrock is not None:
            self.bedrock.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if moto_patches.ACTIVE is self:
            moto_patches.ACTIVE = None
            moto_patches.uninstall()  # moto as it was: the process may use plain moto, or start a runtime again

    def client(self, service: str) -> Any:
        """A boto3 client of this runtime's AWS (moto) or, for bedrock and bedrock-runtime, its local Bedrock."""
        url = self.endpoint
        if service in {"bedrock", "bedrock-runtime"} and self.bedrock is not None:
            url = self.bedrock.url
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 2}),
        )

    @property
    def environment(self) -> dict[str, str]:
        """What a process needs to use this runtime with any AWS SDK or the AWS CLI."""
        assert self.bedrock is not None
        return {
            **_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_BEDROCK": self.bedrock.url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock.url,
        }

    # --- deploy ---------------------------------------------------------------------------------------
    def deploy(self) -> Stack:
        """Create the stack from template.yaml (once per runtime) and correct what moto leaves out
        (:func:`~batch_classifier_local.deploy.deploy_stack`), then start the function workers."""
        if self.stack is not None:
            return self.stack
        self.stack = deploy_stack(self.root, self.client, self.parameters, self.environment)
        state = self.state_dir or (self.root / ".local-runtime")
        self.pool = WorkerPool(
            specs=self.stack.functions,
            log_dir=state / "logs",
            code_roots=[self.root / "layers" / "common"],
            workflow=self.stack.workflow,
        )
        threading.Thread(target=self._watch_executions, daemon=True, name="execution-watcher").start()
        return self.stack

    # --- running --------------------------------------------------------------------------------------

    def _watch_executions(self) -> None:
        """Announce executions that end FAILED, TIMED_OUT or ABORTED on the default event bus, as Step Functions
        does ("Step Functions Execution Status Change"); moto does not. Each attempt of an execution is announced
        once: a redriven execution that stops again is announced again."""
        stepfunctions, events = self.client("stepfunctions"), self.client("events")
        announced: set[tuple[str, int]] = set()
        stopped = {"FAILED", "TIMED_OUT", "ABORTED"}
        while self._server is not None and self.stack is not None:
            try:
                for item in stepfunctions.list_executions(stateMachineArn=self.stack.state_machine_arn)["executions"]:
                    arn = item["executionArn"]
                    if item["status"] not in stopped or (arn, int(item.get("redriveCount") or 0)) in announced:
                        continue
                    described = stepfunctions.describe_execution(executionArn=arn)
                    attempt = (arn, int(described.get("redriveCount") or 0))
                    if described["status"] in stopped and attempt not in announced:  # not redriven in between
                        announced.add(attempt)
                        events.put_events(Entries=[_status_change_event(described)])
            except Exception:
                LOG.debug("execution watcher", exc_info=True)
            time.sleep(0.2)

    def invoke(self, function_name: str, event: Any) -> tuple[bool, bytes]:
        """Run one invocation of a deployed function (what moto's Lambda calls)."""
        assert self.pool is not None
        for failure in self.failures:
            if failure.matches(function_name, event):
                time.sleep(failure.after_seconds)
                error = {"errorType": failure.error, "errorMessage": f"injected failure of {function_name}"}
                return False, json.dumps(error).encode()
        fault = self._function_fault(function_name)
        if fault is FunctionFault.CRASH:
            message = f"the worker of {function_name} exited as the invocation started (injected crash)"
            return False, json.dumps({"errorType": EXIT_ERROR, "errorMessage": message}).encode()
        if isinstance(fault, str) and not isinstance(fault, FunctionFault):
            error = {"errorType": fault, "errorMessage": f"injected failure of {function_name}"}
            return False, json.dumps(error).encode()
        answer = self.pool.invoke(function_name, event)
        if fault is FunctionFault.TIMEOUT:
            message = f"Task timed out (injected: {function_name} ran to its end and its result was lost)"
            return False, json.dumps({"errorType": TIMEOUT_ERROR, "errorMessage": message}).encode()
        return answer.ok, answer.body()

    def _function_fault(self, function_name: str) -> FunctionFault | str | None:
        """The fault plan's fault for this invocation: a crash, a timeout, or the error name of a failure."""
        found = _LOGICAL_ID.search(function_name)
        if self.bedrock is None or found is None:
            return None
        fault = self.bedrock.faults.function_fault(found[1])
        if fault is None:
            return None
        kind, error = fault
        return error if kind is FunctionFault.FAIL else kind

    def update_function_environment(self, logical_id: str, **variables: str) -> None:
        """Set environment variables of a deployed function, as ``aws lambda update-function-configuration`` (or a
        ``sam deploy`` of a changed parameter) does: its next invocations run in new workers that have them."""
        assert self.stack is not None and self.pool is not None
        names = [name for name in self.stack.functions if f"-{logical_id}-" in name]
        if not names:
            raise KeyError(f"no function {logical_id} in the stack")
        spec = self.stack.functions[names[0]]
        updated = dataclasses.replace(spec, environment={**spec.environment, **variables})
        self.stack.functions[names[0]] = self.pool.specs[names[0]] = updated
        self.pool.retire(names[0])

    def fail_next(
        self,
        logical_id: str,
        when: Callable[[Any], bool] = lambda event: True,
        times: int = 1,
        after_seconds: float = 0.0,
    ) -> InjectedFailure:
        """Make the next ``times`` invocations of a function (by template name) whose event matches fail,
        ``after_seconds`` into the invocation."""
        assert self.stack is not None
        names = [name for name in self.stack.functions if f"-{logical_id}-" in name]
        if not names:
            raise KeyError(f"no function {logical_id} in the stack")
        failure = InjectedFailure(function=names[0], when=when, times=times, after_seconds=after_seconds)
        self.failures.append(failure)
        return failure

    def upload(self, path: Path, key: str | None = None) -> str:
        """Put a file under input_data/ in the customer bucket; returns the execution this upload started (the one
        whose input names this key and this upload's ETag, among those started since)."""
        assert self.stack is not None
        key = key or f"input_data/{path.name}"
        s3, stepfunctions = self.client("s3"), self.client("stepfunctions")
        before = set(self._started_executions)
        s3.upload_file(str(path), self.stack.customer_bucket, key)
        etag = str(s3.head_object(Bucket=self.stack.customer_bucket, Key=key)["ETag"])
        checked: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for arn in [arn for arn in self._started_executions if arn not in before and arn not in checked]:
                checked.add(arn)
                described = stepfunctions.describe_execution(executionArn=arn)
                if is_execution_of(described.get("input"), key, etag):
                    return arn
            time.sleep(0.02)
        raise RuntimeError(f"no execution started for s3://{self.stack.customer_bucket}/{key} (ETag {etag})")

    def wait(
        self,
        execution_arn: str,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Follow an execution to its end, passing each new history event to ``on_event``; ``timeout`` seconds
        at most (TimeoutError), or for as long as it runs."""
        stepfunctions = self.client("stepfunctions")
        seen = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still runs after {timeout} s")
            described = stepfunctions.describe_execution(executionArn=execution_arn)
            if on_event is not None:
                events = stepfunctions.get_execution_history(executionArn=execution_arn)["events"]
                for event in events[seen:]:
                    on_event(event)
                seen = len(events)
            if described["status"] != "RUNNING":
                return dict(described)
            time.sleep(0.05)

    def start_execution(self, state_machine_arn: str, payload: Any, hint: str = "run") -> str:
        """Start a uniquely named execution (moto would name every unnamed execution ``None``)."""
        started = self.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=execution_name(hint), input=json.dumps(payload)
        )
        arn = str(started["executionArn"])
        self._started_executions.append(arn)
        return arn


def is_execution_of(execution_input: str | None, key: str, etag: str) -> bool:
    """Whether an execution's input (the upload event as the rule's input transformer gives it) is the upload of
    ``key`` with ``etag`` (quotes and URL encoding of the key aside)."""
    try:
        payload = json.loads(execution_input or "{}")
    except ValueError:
        return False
    if not isinstance(payload, dict):
        return False
    got = str(payload.get("key", ""))
    same_key = key in key_candidates(got)
    return same_key and str(payload.get("etag", "")).strip('"') == etag.strip('"')


def _return_freed_memory() -> None:
    """Make glibc give large freed blocks back to the system. This process serves S3 (moto copies whole objects
    of hundreds of megabytes), the local Bedrock and the interpreter on many threads; with glibc's defaults each
    thread's arena keeps what it freed (the mmap threshold grows to 32 MB after the first large free), and the
    process's memory only grows. A fixed 1 MiB threshold and two arenas keep it near what is in use."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    m_mmap_threshold, m_arena_max = -3, -8
    mallopt(m_mmap_threshold, 1024 * 1024)
    mallopt(m_arena_max, 2)


def _status_change_event(execution: dict[str, Any]) -> dict[str, Any]:
    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": millis(execution.get("startDate")),
        "stopDate": millis(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
        "redriveCount": execution.get("redriveCount", 0),
        "redriveDate": millis(execution.get("redriveDate")),
        "redriveStatus": execution.get("redriveStatus"),
        "redriveStatusReason": execution.get("redriveStatusReason"),
    }
    return {
        "Source": "aws.states",
        "DetailType": "Step Functions Execution Status Change",
        "Resources": [execution["executionArn"]],
        "Detail": json.dumps(detail),
    }


def execution_name(hint: str) -> str:
    """``<hint>-<UTC time>-<random>``, within Step Functions' 80 characters and allowed characters."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", hint).strip("-")[:40] or "run"
    return f"{clean}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
