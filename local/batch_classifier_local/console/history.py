"""An execution's event history as a table, with its poll loops collapsed.

A poll loop (``WaitForJob`` → ``CheckJob`` → ``JobEnded?`` → ``WaitForJob`` ...) writes the same few events again
and again: a week-long job is hundreds of turns. :func:`history_rows` keeps every other event as a row of its own
and shows each run of identical turns of a loop through a Wait state as one row (with how many turns, and the ids
and times it covers). A turn is identical when its states and its events' types are: a turn that failed, retried or went
elsewhere breaks the run and is shown in full.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..executions import iso, seconds_between

#: The longest loop, in states, that is looked for.
MAX_LOOP_STATES = 8

Segment = list[dict[str, Any]]


def history_rows(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the history table, oldest first: ``{"kind": "event", ...}`` for an event, ``{"kind": "loop", ...}``
    for the turns of a poll loop that repeat (``count`` of them)."""
    started = events[0]["timestamp"] if events else None
    segments = _segments(events)
    signatures = [_signature(segment) for segment in segments]
    rows: list[dict[str, Any]] = []
    index = 0
    while index < len(segments):
        period, turns = _loop_at(signatures, index)
        if turns >= 2:
            covered = [event for segment in segments[index : index + period * turns] for event in segment]
            states = [_state_of(segment) for segment in segments[index : index + period]]
            rows.append(
                {
                    "kind": "loop",
                    "states": states,
                    "count": turns,
                    "first_id": covered[0]["id"],
                    "last_id": covered[-1]["id"],
                    "events": len(covered),
                    "timestamp": iso(covered[0]["timestamp"]),
                    "ended": iso(covered[-1]["timestamp"]),
                    "elapsed": seconds_between(started, covered[0]["timestamp"]),
                    "detail": f"{' → '.join(states)} ×{turns}",
                }
            )
            index += period * turns
            continue
        state = _state_of(segments[index])
        for event in segments[index]:
            rows.append(_event_row(event, state, started))
        index += 1
    return rows


def _segments(events: Sequence[dict[str, Any]]) -> list[Segment]:
    """The history cut where a state is entered and at each execution-level event: a state's passage (its
    entry, its task's events, its exit) is one segment."""
    segments: list[Segment] = []
    for event in events:
        kind = str(event.get("type", ""))
        if not segments or kind.endswith("StateEntered") or kind.startswith("Execution"):
            segments.append([event])
        else:
            segments[-1].append(event)
    return segments


def _signature(segment: Segment) -> tuple[tuple[str, str], ...]:
    return tuple((str(event.get("type", "")), _event_state(event) or "") for event in segment)


def _loop_at(signatures: list[tuple[tuple[str, str], ...]], index: int) -> tuple[int, int]:
    """The loop that starts at ``index`` and covers most events (period in segments, turns), among the runs of
    identical turns of states that pass through a Wait state; (0, 0) when none repeats."""
    best = (0, 0)
    for period in range(1, MAX_LOOP_STATES + 1):
        block = signatures[index : index + period]
        if len(block) < period:
            break
        kinds = [signature[0][0] for signature in block]
        if "WaitStateEntered" not in kinds or not all(kind.endswith("StateEntered") for kind in kinds):
            continue
        turns = 1
        while signatures[index + turns * period : index + (turns + 1) * period] == block:
            turns += 1
        if turns >= 2 and period * turns > best[0] * best[1]:
            best = (period, turns)
    return best


def _state_of(segment: Segment) -> str:
    return _event_state(segment[0]) or ""


def _event_state(event: dict[str, Any]) -> str | None:
    for key in ("stateEnteredEventDetails", "stateExitedEventDetails"):
        details = event.get(key)
        if isinstance(details, dict) and details.get("name"):
            return str(details["name"])
    return None


def _event_row(event: dict[str, Any], state: str, started: Any) -> dict[str, Any]:
    kind = str(event.get("type", ""))
    details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
    return {
        "kind": "event",
        "id": event.get("id"),
        "type": kind,
        "state": _event_state(event) or (state if not kind.startswith("Execution") else ""),
        "timestamp": iso(event.get("timestamp")),
        "elapsed": seconds_between(started, event.get("timestamp")),
        "failed": kind.endswith(("Failed", "TimedOut", "Aborted")),
        "detail": _detail(kind, details),
    }


def _detail(kind: str, details: dict[str, Any]) -> str:
    """A line about the event: its error and cause, the resource a task called, a map run, a redrive."""
    if details.get("error") or details.get("cause"):
        return f"{details.get('error') or ''}: {_cause(details.get('cause'))}".strip(": ")
    if kind == "ExecutionRedriven":
        return f"redrive {details.get('redriveCount', '')}".strip()
    if details.get("mapRunArn"):
        return str(details["mapRunArn"]).rsplit(":", 1)[-1]
    if kind in {"TaskScheduled", "TaskStarted", "TaskSucceeded"} and details.get("resourceType"):
        return f"{details['resourceType']}:{details.get('resource', '')}"
    if kind == "MapStateStarted" and "length" in details:
        return f"{details['length']} items" if details["length"] else ""
    return ""


def _cause(cause: Any, limit: int = 300) -> str:
    """A cause in one line: a Lambda error's message rather than its JSON."""
    text = str(cause or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        text = str(parsed["errorMessage"])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
