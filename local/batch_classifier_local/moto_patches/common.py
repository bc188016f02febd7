"""What every patch of moto shares: the check of its target at start-up, and the runtime it serves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol


class Runtime(Protocol):
    """What the patched code uses of the runtime it serves (:class:`~batch_classifier_local.runtime.LocalRuntime`)."""

    time_scale: float

    def invoke(self, function_name: str, event: Any) -> tuple[bool, bytes]: ...

    def start_execution(self, state_machine_arn: str, payload: Any, hint: str = ...) -> str: ...


#: The runtime served now, or None: asked at every call, since the runtime is set after the patches are installed.
Active = Callable[[], Runtime | None]


def require(owner: Any, name: str, parameters: tuple[str, ...]) -> Callable[..., Any]:
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
