"""What the local runtime changes in moto, each patch checked at start-up against the moto it expects (5.2.5).

- Lambda: an invocation runs the real handler in the runtime's worker processes instead of Docker;
- S3 → EventBridge: one "Object Created" event per object, as AWS raises them, with AWS's fields;
- S3 reads: a GET reads its range from the object's buffer instead of copying the whole object;
- EventBridge: rules with Step Functions and Lambda targets are delivered, honouring their input transformers;
- time: Wait states and Retry intervals are scaled by the runtime's time scale;
- Distributed Map: a failed child fails the map past its tolerated failure threshold, as Step Functions does, and
  each map run remembers which children succeeded, so that a redrive reruns only the others;
- Step Functions: RedriveExecution (moto has none), with ``redriveCount``, ``redriveDate`` and ``redriveStatus`` in
  DescribeExecution and ListExecutions.

The patched code finds the runtime it serves in :data:`ACTIVE`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import inspect
import io
import json
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import LocalRuntime

#: The runtime the patched moto code serves (one per process); set by LocalRuntime.start().
ACTIVE: LocalRuntime | None = None
_PATCHED = False
_PATCH_LOCK = threading.Lock()


def install() -> None:
    global _PATCHED  # noqa: PLW0603
    with _PATCH_LOCK:
        if _PATCHED:
            return
        _patch_lambda()
        _patch_s3_notifications()
        _patch_s3_large_objects()
        _patch_events()
        _patch_time()
        _patch_distributed_map()
        _patch_redrive()
        _PATCHED = True


def _patch_lambda() -> None:
    from moto.awslambda.models import LambdaFunction  # noqa: PLC0415

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        runtime = ACTIVE
        if runtime is None:
            raise RuntimeError("no local runtime is running")
        event = json.loads(body) if body else {}
        ok, payload = runtime.invoke(self.function_name, event)
        if not ok:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]


def _require(owner: Any, name: str, parameters: tuple[str, ...]) -> Callable[..., Any]:
    """``owner.name``, a function taking ``parameters`` first: what a patch of moto replaces or wraps. Another moto
    release may have moved it; then the runtime stops here rather than deliver the wrong events."""

    target = getattr(owner, name, None)
    where = f"{getattr(owner, '__name__', owner)}.{name}"
    if not callable(target):
        raise RuntimeError(f"the local runtime patches moto's {where}, which this moto does not have (use moto 5.2.5).")
    found = tuple(inspect.signature(target).parameters)
    if found[: len(parameters)] != parameters:
        raise RuntimeError(
            f"the local runtime patches moto's {where}{parameters}, but this moto has {where}{found} (use moto 5.2.5)."
        )
    return target  # type: ignore[no-any-return]


_OBJECT_GET = threading.local()  # set while moto answers a GET of an object: "whole" or "range"
_CHUNK = 1024 * 1024


class _KeyContent:
    """An S3 object's content as moto's GET uses it, read from the object's spooled buffer (a file on disk above a
    few MB) as it is sent: its length, a slice (a ranged GET), or its chunks (a whole GET, streamed by the server).
    moto itself reads the whole object into memory for every GET, ranged or not, and copies it."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def _read(self, start: int, size: int) -> bytes:
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            data: bytes = buffer.read(size)
            return data

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(len(self))
        return self._read(start, max(0, stop - start))

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self), _CHUNK):
            yield self._read(start, _CHUNK)


class _JoinedParts:
    """A completed multipart upload's content: its parts' buffers (files on disk above a few MB), taken from the
    parts, in order, copied into the new object's buffer a chunk at a time and then closed. moto joins the parts in
    memory and copies the result twice: about four times the object's size."""

    def __init__(self, parts: list[Any]) -> None:
        self.size = sum(int(part.contentsize) for part in parts)
        taken: dict[int, Any] = {}
        for part in parts:
            with part.lock:
                if id(part) not in taken:
                    # moto disposes of the upload's parts (closing their buffers) before it stores the object
                    taken[id(part)], part._value_buffer = part._value_buffer, io.BytesIO()
        self._buffers = [taken[id(part)] for part in parts]

    def copy_to(self, target: Any) -> None:
        try:
            for buffer in self._buffers:
                buffer.seek(0)
                while chunk := buffer.read(_CHUNK):
                    target.write(chunk)
        finally:
            for buffer in self._buffers:
                buffer.close()


class _FullObjectCrc:
    """A FULL_OBJECT checksum of a multipart upload, computed a chunk at a time over its parts, with the algorithms
    moto's ``compute_checksum`` uses (CRC64NVME needs awscrt; without it, moto and this use CRC32)."""

    def __init__(self, update: Callable[[bytes, int], int], size: int) -> None:
        self._update, self._size, self._value = update, size, 0

    @classmethod
    def of(cls, algorithm: str) -> _FullObjectCrc | None:
        from moto.core.compat import HAS_CRT  # noqa: PLC0415

        if algorithm == "CRC64NVME" and HAS_CRT:
            from awscrt import checksums  # type: ignore[import-not-found]  # noqa: PLC0415

            return cls(checksums.crc64nvme, 8)
        if algorithm in {"CRC32", "CRC64NVME"}:
            return cls(binascii.crc32, 4)
        return None  # CRC32C (moto prefers a library it may not find), SHA: moto's own, a part at a time

    def add(self, part: Any) -> None:
        with part.lock:
            part._value_buffer.seek(0)
            while chunk := part._value_buffer.read(_CHUNK):
                self._value = self._update(chunk, self._value)

    def digest(self) -> str:
        return base64.b64encode(self._value.to_bytes(self._size, "big")).decode()


def _patch_s3_large_objects() -> None:
    """Keep large objects out of the memory of the process that serves S3: a GET (ranged or whole) is read from
    the object's buffer as it is sent, and a multipart upload is joined part by part into the new object's buffer.
    Readers that page through a large object in ranges (FinalizeRun), Bedrock reading a job's input, and uploads
    of job files and outputs would otherwise cost several times the object's size each, at once."""
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML  # noqa: PLC0415
    from moto.s3.models import FakeKey, FakeMultipart, MultipartChecksumBuilder  # noqa: PLC0415
    from moto.s3.responses import S3Response  # noqa: PLC0415
    from moto.settings import S3_UPLOAD_PART_MIN_SIZE  # noqa: PLC0415

    key_response = _require(S3Response, "key_response", ("self", "request", "full_url", "headers"))
    _require(S3Response, "_handle_range_header", ("self", "request", "response_headers", "response_content"))
    _require(FakeMultipart, "complete", ("self", "body"))
    _require(MultipartChecksumBuilder, "addPart", ("self", "part"))
    value = FakeKey.__dict__.get("value")
    if not (
        isinstance(value, property)
        and value.fget
        and value.fset
        and "_value_buffer" in value.fget.__code__.co_names
        and {"_value_buffer", "contentsize"} <= set(value.fset.__code__.co_names)
    ):
        raise RuntimeError(
            "the local runtime patches moto's FakeKey.value (kept in _value_buffer), which this moto does not have "
            "(use moto 5.2.5)."
        )
    read_all, write_all = value.fget, value.fset

    def streamed_key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        wanted = request.headers.get("range") or ""
        # Only for the runtime's HTTP server (werkzeug's serving puts the socket in the environ): the in-process
        # mock of moto wants bytes.
        served = "werkzeug.socket" in getattr(request, "environ", {})
        _OBJECT_GET.active = served and request.method == "GET" and "," not in wanted and "partNumber" not in full_url
        try:
            return key_response(self, request, full_url, headers)
        finally:
            _OBJECT_GET.active = False

    def content(key: Any) -> Any:
        return _KeyContent(key) if getattr(_OBJECT_GET, "active", False) else read_all(key)

    def store(key: Any, new_value: Any) -> None:
        if not isinstance(new_value, _JoinedParts):
            write_all(key, new_value)
            return
        key._value_buffer.seek(0)
        key._value_buffer.truncate()
        new_value.copy_to(key._value_buffer)
        key.contentsize = new_value.size

    def complete_on_disk(self: Any, body: Any) -> tuple[_JoinedParts, str, tuple[str, str, int] | None]:
        # What moto's FakeMultipart.complete checks and computes (part numbers and ETags, the 5 MB minimum, the
        # ETag of the parts' MD5s, the upload's checksum), without joining the parts in memory.
        builder = MultipartChecksumBuilder(
            self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
        )
        crc = None if builder.checksum_type == "COMPOSITE" else _FullObjectCrc.of(builder.checksum_algorithm)
        chosen: list[Any] = []
        md5s = bytearray()
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.strip('"') != etag.strip('"'):
                raise InvalidPart()
            if chosen and chosen[-1].contentsize < S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s += bytes.fromhex(part.etag.strip('"'))
            if crc is None:
                builder.addPart(read_all(part))  # one part in memory at a time
            else:
                crc.add(part)
            chosen.append(part)
        if not chosen:
            raise MalformedXML()
        checksum = builder.build() if crc is None else (builder.checksum_type, crc.digest(), len(chosen))
        etag = hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()
        return _JoinedParts(chosen), f"{etag}-{len(chosen)}", checksum

    S3Response.key_response = streamed_key_response  # type: ignore[method-assign]
    FakeKey.value = property(content, store)  # type: ignore[method-assign,assignment]
    FakeMultipart.complete = complete_on_disk  # type: ignore[method-assign,assignment]


# What S3 did, as moto names it → the ``reason`` of AWS's "Object Created" event.
_CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}
_S3_EVENT = threading.local()  # the S3 event being delivered, and whether a multipart upload is completing


def _patch_s3_notifications() -> None:
    """One S3 event per object created, as AWS raises them. moto's ``complete_multipart_upload`` stores the object
    with ``put_object`` (an ObjectCreated:Put event) and ``put_object_tagging`` (ObjectTagging:Put), then raises
    ObjectCreated:CompleteMultipartUpload: only the last is what AWS raises. The event name is kept for
    :func:`_normalise_s3_event`, which gives the event AWS's ``reason``."""
    from moto.s3 import notifications  # noqa: PLC0415
    from moto.s3.models import S3Backend  # noqa: PLC0415

    send_event = _require(notifications, "send_event", ("account_id", "event_name", "bucket", "key"))
    send_to_bridge = _require(
        notifications, "_send_event_bridge_message", ("account_id", "bucket", "event_name", "key")
    )
    complete = _require(S3Backend, "complete_multipart_upload", ("self", "bucket_name", "multipart_id", "body"))
    completed = str(notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT.value)

    def send_one_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        if getattr(_S3_EVENT, "completing", False) and str(getattr(event_name, "value", event_name)) != completed:
            return  # raised on the way to CompleteMultipartUpload: not an event of AWS's
        send_event(account_id, event_name, bucket, key)

    def send_to_event_bridge(account_id: str, bucket: Any, event_name: Any, key: Any) -> None:
        _S3_EVENT.name = str(getattr(event_name, "value", event_name))
        try:
            send_to_bridge(account_id, bucket, event_name, key)
        finally:
            _S3_EVENT.name = None

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        _S3_EVENT.completing = True
        try:
            return complete(self, bucket_name, multipart_id, body)
        finally:
            _S3_EVENT.completing = False

    notifications.send_event = send_one_event
    notifications._send_event_bridge_message = send_to_event_bridge
    S3Backend.complete_multipart_upload = complete_multipart_upload  # type: ignore[method-assign]


def _patch_events() -> None:
    from moto.events.models import Rule  # noqa: PLC0415

    _require(Rule, "send_to_targets", ("self", "original_event", "transform_input"))

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        event = _normalise_s3_event(original_event)
        ours = [t for t in self.targets if t["Arn"].startswith(("arn:aws:states:", "arn:aws:lambda:"))]
        others = [t for t in self.targets if t not in ours]
        runtime = ACTIVE
        if ours and runtime is not None and self.event_pattern.matches_event(event):
            for target in ours:
                payload = _target_input(target, event)
                if target["Arn"].startswith("arn:aws:states:"):
                    hint = Path(str(event.get("detail", {}).get("object", {}).get("key", "run"))).stem
                    runtime.start_execution(target["Arn"], payload, hint=hint)
                else:  # EventBridge invokes Lambda targets asynchronously
                    name = target["Arn"].split(":function:", 1)[1].split(":", 1)[0]
                    threading.Thread(target=runtime.invoke, args=(name, payload), daemon=True).start()
        if others:
            kept = self.targets
            self.targets = others
            try:
                # moto's own targets format the time themselves: they get its epoch time.
                original(self, _normalise_s3_event(original_event, iso_time=False), transform_input)
            finally:
                self.targets = kept

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


def _normalise_s3_event(event: Any, iso_time: bool = True) -> Any:
    """moto's S3 events differ from AWS's: ``eTag`` (AWS: ``etag``), an epoch ``time`` (AWS: ISO 8601; kept
    when not ``iso_time``) and the ``reason`` of "Object Created" (moto: ``ObjectCreated``; AWS: the API, e.g.
    ``PutObject`` or ``CompleteMultipartUpload``). The key stays as moto gives it, unencoded."""
    event = json.loads(json.dumps(event, default=str))
    obj = event.get("detail", {}).get("object")
    if isinstance(obj, dict) and "eTag" in obj and "etag" not in obj:
        obj["etag"] = obj.pop("eTag")
    reason = _CREATED_REASONS.get(getattr(_S3_EVENT, "name", None) or "")
    if reason is not None and event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        event["detail"]["reason"] = reason
    if iso_time and isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(event["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """The execution input EventBridge gives a target: Input, InputPath, InputTransformer, or the event."""
    from jsonpath_ng.ext import parse  # type: ignore[attr-defined]  # noqa: PLC0415 - moto's JSONPath library

    def value_at(path: str) -> Any:
        found = parse(path).find(event)
        return found[0].value if found else None

    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        return value_at(target["InputPath"])
    transformer = target.get("InputTransformer")
    if not transformer:
        return event
    text = transformer["InputTemplate"]
    for name, path in transformer.get("InputPathsMap", {}).items():
        value = value_at(path)
        # Inside quotes a string goes in escaped; anywhere else the value goes in as JSON.
        quoted = json.dumps(value)[1:-1] if isinstance(value, str) else json.dumps(value)
        text = text.replace(f'"<{name}>"', json.dumps(value)).replace(f"<{name}>", quoted)
    return json.loads(text)


def _patch_time() -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (  # noqa: PLC0415
        WaitFunction,
    )

    real_sleep = time.sleep

    def scaled(seconds: float) -> float:
        return seconds * (ACTIVE.time_scale if ACTIVE is not None else 1.0)

    retrier_decl.time = types.SimpleNamespace(sleep=lambda seconds: real_sleep(scaled(seconds)))  # type: ignore[assignment,attr-defined]

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(scaled(wait_seconds))

    WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]


# The children that succeeded in the last run of a Distributed Map that did not succeed, by (execution ARN, state
# name): child index → (the item as JSON, the child's output). A redrive hands them to the map's next run.
_MAP_SUCCESSES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {}
_MAP_REDRIVES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {}


def _patch_distributed_map() -> None:
    """Fail a Distributed Map whose failed children pass its tolerated failure threshold, as Step Functions does
    (``States.ExceedToleratedFailureThreshold``); moto's interpreter counts failed children but lets the map
    succeed. Each map run also records its children that succeeded; in the run a redrive resumes, those children
    are not run again (they count as succeeded, with the output they had), as Step Functions redrives a map run."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (  # noqa: PLC0415
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (  # noqa: PLC0415
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: PLC0415
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: PLC0415
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: PLC0415
        distributed_item_processor_worker as workers,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded  # noqa: PLC0415

    original = _require(DistributedIterationComponent, "_map_run", ("self", "env", "eval_input"))
    DistributedItemProcessorWorker = workers.DistributedItemProcessorWorker  # noqa: N806
    eval_job = _require(DistributedItemProcessorWorker, "_eval_job", ("self", "env", "job"))
    if "map_run_record" not in inspect.signature(DistributedItemProcessorWorker.__init__).parameters:
        raise RuntimeError(
            "the local runtime patches moto's DistributedItemProcessorWorker, which this moto builds without its "
            "map run record (use moto 5.2.5)."
        )

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        key = (_execution_arn(env), str(eval_input.state_name))
        record = eval_input.map_run_record
        record.earlier_successes = _MAP_REDRIVES.pop(key, {})
        record.successes = {}
        succeeded = False
        try:
            original(self, env, eval_input)
            counters = record.item_counter
            failed, total = counters.failed.get(), counters.total.get()
            allowed_count = eval_input.tolerated_failure_count or 0
            allowed_share = eval_input.tolerated_failure_percentage or 0.0
            if failed > allowed_count and (total == 0 or 100.0 * failed / total > allowed_share):
                error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
                cause = f"{failed} of {total} child executions failed; the tolerated failure threshold was exceeded."
                details: Any = {
                    "mapRunFailedEventDetails": MapRunFailedEventDetails(error=error.error_name, cause=cause)
                }
                raise FailureEventException(
                    failure_event=FailureEvent(
                        env=env, error_name=error, event_type=HistoryEventType.MapRunFailed, event_details=details
                    )
                )
            succeeded = env.is_running()
        finally:
            if succeeded:
                _MAP_SUCCESSES.pop(key, None)
            else:
                _MAP_SUCCESSES[key] = record.successes

    def eval_job_once(self: Any, env: Any, job: Any) -> None:
        record = self._map_run_record
        item = json.dumps(job.job_input, sort_keys=True, default=str)
        earlier = getattr(record, "earlier_successes", {}).get(job.job_index)
        if earlier is not None and earlier[0] == item:  # succeeded before the redrive: not run again
            for counter in (record.item_counter, record.execution_counter):
                counter.total.count()
                counter.succeeded.count()
                counter.results_written.count()
            job.job_output = copy.deepcopy(earlier[1])
            record.successes[job.job_index] = earlier
            return
        eval_job(self, env, job)
        successes = getattr(record, "successes", None)
        if successes is not None and isinstance(env.program_state(), ProgramEnded):
            successes[job.job_index] = (item, job.job_output)

    DistributedIterationComponent._map_run = map_run  # type: ignore[method-assign]
    DistributedItemProcessorWorker._eval_job = eval_job_once  # type: ignore[method-assign]


def _execution_arn(env: Any) -> str:
    return str(env.states.context_object.context_object_data["Execution"]["Id"])


# --- RedriveExecution ---------------------------------------------------------------------------------------------

REDRIVABLE_PERIOD = timedelta(days=14)
HISTORY_EVENT_LIMIT = 25_000
_REDRIVE_TOKENS_KEPT = 10  # Step Functions answers the last 10 client tokens of an execution idempotently
_REDRIVE_LOCK = threading.Lock()


def _patch_redrive() -> None:
    """RedriveExecution on moto's executing Step Functions backend, with Step Functions' semantics: a FAILED,
    TIMED_OUT or ABORTED execution of a Standard state machine, stopped within the last 14 days, runs again under the
    same ARN, from the state that did not succeed, with the input that state had, on the definition it started
    with. The history gets ``ExecutionRedriven`` and then the new events (ids continue); ``redriveCount`` goes up by
    one and ``redriveDate`` is set; the state machine's timeout starts again. Any other execution is refused with
    ExecutionNotRedrivable and the reason DescribeExecution gives in ``redriveStatusReason``. In a Distributed Map
    that failed, only the children that did not succeed run again (:func:`_patch_distributed_map`); an inline Map or
    Parallel state runs all its iterations or branches again."""
    from moto.core.exceptions import AWSError  # noqa: PLC0415
    from moto.core.responses import ActionResult  # noqa: PLC0415
    from moto.stepfunctions.parser.api import (  # noqa: PLC0415
        ExecutionRedrivenEventDetails,
        ExecutionStatus,
        HistoryEventType,
    )
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.eval.event.event_manager import (  # noqa: PLC0415
        EventHistoryContext,
        EventManager,
    )
    from moto.stepfunctions.parser.backend.execution import Execution  # noqa: PLC0415
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker  # noqa: PLC0415
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415
    from moto.stepfunctions.parser.utils import TMP_THREADS  # noqa: PLC0415
    from moto.stepfunctions.responses import StepFunctionResponse  # noqa: PLC0415

    if hasattr(StepFunctionResponse, "redrive_execution") or hasattr(StepFunctionsParserBackend, "redrive_execution"):
        raise RuntimeError(
            "the local runtime adds RedriveExecution to moto, which this moto already has (use moto 5.2.5)."
        )
    _require(Execution, "_get_start_execution_worker", ("self",))
    _require(Execution, "_get_start_execution_worker_comm", ("self",))
    _require(ExecutionWorker, "_get_evaluation_entrypoint", ("self",))
    _require(ExecutionWorker, "_get_evaluation_environment", ("self",))
    _require(EventManager, "add_event", ("self", "context", "event_type", "event_details"))
    _require(EventManager, "get_event_history", ("self",))
    _require(EvalComponent, "eval", ("self", "env"))
    _require(StepFunctionsParserBackend, "describe_execution", ("self", "execution_arn"))
    describe_execution = _require(StepFunctionResponse, "describe_execution", ("self",))
    list_executions = _require(StepFunctionResponse, "list_executions", ("self",))
    if not isinstance(getattr(EventManager(), "_history_event_list", None), list):
        raise RuntimeError(
            "the local runtime reads moto's EventManager._history_event_list, which this moto does not have "
            "(use moto 5.2.5)."
        )

    class ExecutionNotRedrivable(AWSError):
        TYPE = "ExecutionNotRedrivable"
        STATUS = 400

    def not_redrivable(execution: Any) -> str | None:
        """Why the execution cannot be redriven now (Step Functions' ``redriveStatusReason``), or None."""
        status = str(execution.status)
        if getattr(execution.state_machine, "type", "STANDARD") != "STANDARD":
            return "Execution of an EXPRESS state machine cannot be redriven."
        if status in {ExecutionStatus.RUNNING.value, ExecutionStatus.SUCCEEDED.value}:
            return f"Execution is {status} and cannot be redriven."
        if execution.stop_date is not None and datetime.now(UTC) - execution.stop_date > REDRIVABLE_PERIOD:
            return "Execution redrivable period exceeded."
        env = execution.exec_worker.env if execution.exec_worker is not None else None
        if env is None:
            return "Execution has no history to redrive from."
        if len(env.event_manager._history_event_list) >= HISTORY_EVENT_LIMIT:
            return "Execution history event limit exceeded."
        return None

    def redrive_fields(execution: Any) -> dict[str, Any]:
        """What DescribeExecution adds about redrives: count, date, and whether a redrive is possible (and why not)."""
        count = int(getattr(execution, "redrive_count", 0))
        fields: dict[str, Any] = {"redriveCount": count}
        if count:
            fields["redriveDate"] = execution.redrive_date
        reason = not_redrivable(execution)
        fields["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
        if reason:
            fields["redriveStatusReason"] = reason
        return fields

    def redrive_execution(self: Any, execution_arn: str, client_token: str | None = None) -> datetime:
        execution = self.describe_execution(execution_arn)
        with _REDRIVE_LOCK:
            tokens: dict[str, datetime] = execution.__dict__.setdefault("redrive_tokens", {})
            if client_token and client_token in tokens:
                return tokens[client_token]  # the same request again: already redriven
            reason = not_redrivable(execution)
            if reason is not None:
                raise ExecutionNotRedrivable(f"Execution '{execution_arn}' cannot be redriven: {reason}")
            previous = execution.exec_worker.env
            events = previous.event_manager.get_event_history()
            resume = _resume_point(events, set(json.loads(execution.state_machine.definition)["States"]))
            if resume is None:
                raise ExecutionNotRedrivable(
                    f"Execution '{execution_arn}' cannot be redriven: its history shows no state that did not succeed."
                )
            state_name, state_input = resume
            key = (execution_arn, state_name)
            if key in _MAP_SUCCESSES:
                _MAP_REDRIVES[key] = _MAP_SUCCESSES.pop(key)
            count = int(getattr(execution, "redrive_count", 0)) + 1
            date = datetime.now(UTC)
            worker = execution._get_start_execution_worker()
            program = worker._get_evaluation_entrypoint()
            env = worker._get_evaluation_environment()
            env.event_manager = previous.event_manager  # the history goes on, ids included
            env.variable_store = previous.variable_store
            env.map_run_record_pool_manager = previous.map_run_record_pool_manager  # ListMapRuns keeps every attempt's
            context = EventHistoryContext(previous_event_id=int(events[-1]["id"]) if events else 0)
            redriven: Any = {"executionRedrivenEventDetails": ExecutionRedrivenEventDetails(redriveCount=count)}
            env.event_manager.add_event(
                context=context, event_type=HistoryEventType.ExecutionRedriven, event_details=redriven
            )
            env.event_history_context = context
            data: Any = env.states.context_object.context_object_data["Execution"]
            data["RedriveCount"] = count  # $$.Execution.RedriveCount and RedriveTime, as Step Functions adds them
            data["RedriveTime"] = date.isoformat()
            env.states.reset(input_value=state_input)
            env.next_state_name = state_name
            worker.env = env
            execution.exec_worker = worker
            execution.exec_status = ExecutionStatus.RUNNING
            execution.stop_date = execution.error = execution.cause = execution.output = None
            execution.redrive_count = count
            execution.redrive_date = date
            communication = execution._get_start_execution_worker_comm()

            def run() -> None:
                # Program.eval, from the state that did not succeed rather than StartAt.
                timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
                body = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
                TMP_THREADS.append(body)
                body.start()
                body.join(timeout=timeout)
                if body.is_alive():
                    env.set_timed_out()
                communication.terminated()

            thread = threading.Thread(target=run, daemon=True, name=f"redrive-{execution.name}")
            TMP_THREADS.append(thread)
            thread.start()
            if client_token:
                tokens[client_token] = date
                for old in list(tokens)[:-_REDRIVE_TOKENS_KEPT]:
                    del tokens[old]
            return date

    def redrive_response(self: Any) -> Any:
        backend = self.stepfunction_backend
        if not isinstance(backend, StepFunctionsParserBackend):
            raise ExecutionNotRedrivable("Executions are not run (stepfunctions.execute_state_machine is off).")
        date = redrive_execution(backend, self._get_param("executionArn"), client_token=self._get_param("clientToken"))
        return ActionResult({"redriveDate": date})

    def describe_with_redrive(self: Any) -> Any:
        result = describe_execution(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        if isinstance(execution, Execution) and isinstance(result, ActionResult) and isinstance(result.result, dict):
            result.result.update(redrive_fields(execution))
        return result

    def list_with_redrive(self: Any) -> Any:
        result = list_executions(self)
        if not (isinstance(result, ActionResult) and isinstance(result.result, dict)):
            return result
        wanted = self._get_param("redriveFilter")
        kept = []
        for item in result.result.get("executions") or []:
            execution = self.stepfunction_backend.describe_execution(item["executionArn"])
            count = int(getattr(execution, "redrive_count", 0))
            if (wanted == "REDRIVEN" and not count) or (wanted == "NOT_REDRIVEN" and count):
                continue
            item["redriveCount"] = count
            if count:
                item["redriveDate"] = execution.redrive_date
            kept.append(item)
        result.result["executions"] = kept
        return result

    StepFunctionsParserBackend.redrive_execution = redrive_execution  # type: ignore[attr-defined]
    StepFunctionResponse.redrive_execution = redrive_response  # type: ignore[attr-defined]
    StepFunctionResponse.describe_execution = describe_with_redrive  # type: ignore[method-assign]
    StepFunctionResponse.list_executions = list_with_redrive  # type: ignore[method-assign]


def _resume_point(events: list[dict[str, Any]], top_level: set[str]) -> tuple[str, Any] | None:
    """Where a redrive resumes: the top-level state of the last attempt that was entered and never exited (the one
    that failed, timed out or was aborted, a Fail state included), with the input it was entered with."""
    entered: dict[str, str | None] = {}
    for event in events:
        if event.get("type") == "ExecutionRedriven":
            entered.clear()  # every state of the attempt before ended with it
        details = event.get("stateEnteredEventDetails")
        if details and details.get("name") in top_level:
            entered.pop(details["name"], None)  # entered again (a loop): it is the latest
            entered[details["name"]] = details.get("input")
        exited = event.get("stateExitedEventDetails")
        if exited:
            entered.pop(exited.get("name"), None)
    if not entered:
        return None
    name, text = list(entered.items())[-1]
    return name, json.loads(text) if text else {}
