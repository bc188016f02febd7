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


_ABSENT = object()
#: What the patches replaced, in order: (owner, name, what it held before, or _ABSENT), for :func:`restore`.
_REPLACED: list[tuple[Any, str, Any]] = []


def replace(owner: Any, name: str, value: Any) -> None:
    """Set ``owner.name`` to ``value``, remembering what it was (a class's own attribute, so a property or a method
    is put back as it was) so that :func:`restore` undoes it."""
    before = vars(owner).get(name, _ABSENT) if isinstance(owner, type) else getattr(owner, name, _ABSENT)
    _REPLACED.append((owner, name, before))
    setattr(owner, name, value)


def restore() -> None:
    """Undo every :func:`replace`, the last first: moto as it was before the runtime started."""
    while _REPLACED:
        owner, name, before = _REPLACED.pop()
        if before is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, before)
