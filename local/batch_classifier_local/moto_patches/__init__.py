"""What the local runtime changes in moto, each patch checked at start-up against the moto it expects (5.2.5).

- Lambda (:mod:`.awslambda`): an invocation runs the real handler in the runtime's worker processes instead of
  Docker;
- S3 (:mod:`.s3`): one "Object Created" event per object, as AWS raises them, with AWS's fields; a GET reads its
  range from the object's buffer instead of copying the whole object, and a multipart upload is joined part by part;
- EventBridge (:mod:`.events`): rules with Step Functions and Lambda targets are delivered, honouring their input
  transformers;
- Step Functions (:mod:`.stepfunctions`): Wait states and Retry intervals are scaled by the runtime's time scale; a
  failed child fails a Distributed Map past its tolerated failure threshold, as Step Functions does, and each map
  run remembers which children succeeded, so that a redrive reruns only the others;
- RedriveExecution (:mod:`.redrive`, moto has none), with ``redriveCount``, ``redriveDate`` and ``redriveStatus``
  in DescribeExecution and ListExecutions;
- the server (:mod:`.server`): a request finds its service without moto listing its own package folder each time.

Each patch first checks, with :func:`.common.require`, that what it replaces or wraps is there with the signature
it expects, so that another moto release stops the runtime at start-up rather than misbehave. The patched code
finds the runtime it serves in :data:`ACTIVE`, read at every call.
"""

from __future__ import annotations

import threading

from . import awslambda, events, redrive, s3, server, stepfunctions
from .common import Runtime, restore

#: The runtime the patched moto code serves (one per process); set by LocalRuntime.start().
ACTIVE: Runtime | None = None
_PATCHED = False
_PATCH_LOCK = threading.Lock()


def install() -> None:
    """Patch moto, once per process (later calls do nothing); RuntimeError when this moto is not the one expected,
    with whatever was patched before the failing check undone."""
    global _PATCHED  # noqa: PLW0603
    with _PATCH_LOCK:
        if _PATCHED:
            return
        try:
            awslambda.patch(_active)
            s3.patch_notifications()
            s3.patch_large_objects()
            events.patch(_active)
            stepfunctions.patch_time(_active)
            stepfunctions.patch_distributed_map()
            redrive.patch()
            server.patch_dispatch()
        except BaseException:
            restore()
            raise
        _PATCHED = True


def uninstall() -> None:
    """Put moto back as it was (LocalRuntime.stop): the process can use plain moto, or start a runtime again."""
    global _PATCHED  # noqa: PLW0603
    with _PATCH_LOCK:
        restore()
        _PATCHED = False


def _active() -> Runtime | None:
    return ACTIVE
