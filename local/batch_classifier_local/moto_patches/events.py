"""EventBridge: rules whose targets are Step Functions state machines or Lambda functions are delivered by the
runtime (moto's EventBridge cannot), honouring each target's Input, InputPath or InputTransformer."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from .common import Active, replace, require
from .s3 import normalise_event


def patch(active: Active) -> None:
    from moto.events.models import Rule  # noqa: PLC0415

    require(Rule, "send_to_targets", ("self", "original_event", "transform_input"))

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        event = normalise_event(original_event)
        ours = [t for t in self.targets if t["Arn"].startswith(("arn:aws:states:", "arn:aws:lambda:"))]
        others = [t for t in self.targets if t not in ours]
        runtime = active()
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
                original(self, normalise_event(original_event, iso_time=False), transform_input)
            finally:
                self.targets = kept

    replace(Rule, "send_to_targets", send_to_targets)


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
