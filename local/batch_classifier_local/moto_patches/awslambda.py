"""Lambda: an invocation runs the function's real handler in the runtime's worker processes (moto would need
Docker)."""

from __future__ import annotations

import json
from typing import Any

from .common import Active, replace, require


def patch(active: Active) -> None:
    from moto.awslambda.models import LambdaFunction  # noqa: PLC0415

    require(LambdaFunction, "invoke", ("self", "body", "request_headers", "response_headers"))

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
        runtime = active()
        if runtime is None:
            raise RuntimeError("no local runtime is running")
        event = json.loads(body) if body else {}
        ok, payload = runtime.invoke(self.function_name, event)
        if not ok:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    replace(LambdaFunction, "invoke", invoke)
