"""One warm Lambda container: a process that imports one function's handler and answers invocations.

Started by :mod:`batch_classifier_local.workers` as ``python -m batch_classifier_local.worker <app.py>`` with the
function's environment. Once the handler is imported, it writes ``{"ready": true}`` on the protocol channel (the
original stdout). Requests arrive as JSON lines on stdin (``{"event": ...}``); each answer is one JSON line on the
protocol channel: ``{"ok": true, "result": ...}`` or ``{"ok": false, "errorType":
..., "errorMessage": ..., "stackTrace": [...]}`` as Lambda reports an unhandled exception. Everything the handler
prints or logs goes to stderr, which the runtime keeps in the function's log file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    deadline: float = field(default_factory=lambda: time.monotonic() + _timeout_seconds())

    def get_remaining_time_in_millis(self) -> int:
        """What is left of the function's ``Timeout`` since the invocation started, as Lambda counts it."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


#: The line a worker writes once its handler is imported, before any answer.
READY = '{"ready": true}'


def _timeout_seconds() -> float:
    return float(os.environ.get("LOCAL_LAMBDA_TIMEOUT", "900"))  # the function's Timeout, enforced by workers.py


def main() -> None:
    app = Path(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # the handler's prints and logs go to stderr, never into the protocol
    sys.stdout = sys.stderr
    spec = importlib.util.spec_from_file_location(f"{app.parent.name}_app", app)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.lambda_handler
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", app.parent.name)
    protocol.write(READY + "\n")  # imported: the runtime may warm the next worker
    for line in sys.stdin:
        request = json.loads(line)
        context = Context(
            function_name=name,
            memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")),
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
            aws_request_id=str(uuid.uuid4()),
        )
        answer: dict[str, Any]
        try:
            answer = {"ok": True, "result": handler(request["event"], context)}
        except Exception as exc:
            answer = {
                "ok": False,
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc),
            }
        protocol.write(json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
