"""What the local runtime changes in moto, each patch checked at start-up against the moto it expects (5.2.5).

- Lambda: an invocation runs the real handler in the runtime's worker processes instead of Docker;
- S3 → EventBridge: one "Object Created" event per object, as AWS raises them, with AWS's fields;
- S3 reads: a GET reads its range from the object's buffer instead of copying the whole object;
- EventBridge: rules with Step Functions and Lambda targets are delivered, honouring their input transformers;
- time: Wait states and Retry intervals are scaled by the runtime's time scale;
- Distributed Map: a failed child fails the map past its tolerated failure threshold, as Step Functions does.

The patched code finds the runtime it serves in :data:`ACTIVE`.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
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
        _patch_s3_ranged_reads()
        _patch_events()
        _patch_time()
        _patch_distributed_map()
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


_RANGED_GET = threading.local()  # set while moto answers a GET with a Range header


class _KeyRange:
    """An S3 object's content as moto's ranged GET uses it: its length, and the slice asked for, read from the
    object's spooled buffer; moto itself copies the whole object (twice) for every ranged GET."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(len(self))
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            data: bytes = buffer.read(max(0, stop - start))
            return data


def _patch_s3_ranged_reads() -> None:
    """Serve a ranged GET from the requested bytes only. Readers that page through a large object in ranges
    (FinalizeRun merging every shard's results) would otherwise make moto copy the whole object per range."""
    from moto.s3.models import FakeKey  # noqa: PLC0415
    from moto.s3.responses import S3Response  # noqa: PLC0415

    key_response = _require(S3Response, "key_response", ("self", "request", "full_url", "headers"))
    _require(S3Response, "_handle_range_header", ("self", "request", "response_headers", "response_content"))
    value = FakeKey.__dict__.get("value")
    if not (isinstance(value, property) and value.fget and "_value_buffer" in value.fget.__code__.co_names):
        raise RuntimeError(
            "the local runtime patches moto's FakeKey.value (read from _value_buffer), which this moto does not have "
            "(use moto 5.2.5)."
        )
    read_all = value.fget

    def ranged_key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        wanted = request.headers.get("range") or ""
        _RANGED_GET.active = request.method == "GET" and wanted.startswith("bytes=") and "," not in wanted
        try:
            return key_response(self, request, full_url, headers)
        finally:
            _RANGED_GET.active = False

    def content(key: Any) -> Any:
        return _KeyRange(key) if getattr(_RANGED_GET, "active", False) else read_all(key)

    S3Response.key_response = ranged_key_response  # type: ignore[method-assign]
    FakeKey.value = property(content, value.fset)  # type: ignore[method-assign,assignment]


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


def _patch_distributed_map() -> None:
    """Fail a Distributed Map whose failed children pass its tolerated failure threshold, as Step Functions does
    (``States.ExceedToleratedFailureThreshold``); moto's interpreter counts failed children but lets the map
    succeed."""
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

    original = DistributedIterationComponent._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        counters = eval_input.map_run_record.item_counter
        failed, total = counters.failed.get(), counters.total.get()
        allowed_count = eval_input.tolerated_failure_count or 0
        allowed_share = eval_input.tolerated_failure_percentage or 0.0
        if failed > allowed_count and (total == 0 or 100.0 * failed / total > allowed_share):
            error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
            cause = f"{failed} of {total} child executions failed; the tolerated failure threshold was exceeded."
            details: Any = {"mapRunFailedEventDetails": MapRunFailedEventDetails(error=error.error_name, cause=cause)}
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env, error_name=error, event_type=HistoryEventType.MapRunFailed, event_details=details
                )
            )

    DistributedIterationComponent._map_run = map_run  # type: ignore[method-assign]
