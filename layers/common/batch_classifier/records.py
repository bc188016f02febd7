"""Canonical records and Bedrock batch input lines.

A canonical record is one input row after mapping: the user's id, the text to classify, the ground-truth
label and carried columns, and its status. Records are stored as JSON Lines in input order.

A batch input line is ``{"recordId": ..., "modelInput": {...}}`` where ``modelInput`` is the InvokeModel body
of an Anthropic model or a Converse request. Record ids are our own short alphanumeric ids (one per distinct
text) and are mapped back to the user's ids through the canonical records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .prompts import render_prompt
from .tasks import InvocationType, Task

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Serialisers for the hot path: a JSON string, and any cell value (dates and other objects as text).
_json_string = json.JSONEncoder(ensure_ascii=False).encode
_json_value = json.JSONEncoder(ensure_ascii=False, default=str).encode
_RECORD_ID_DIGITS = 10


class RowStatus(StrEnum):
    """The status every output row ends with (``pending`` only before results are known)."""

    PENDING = "pending"
    CLASSIFIED = "classified"
    INVALID_INPUT = "invalid_input"
    MODEL_ERROR = "model_error"
    UNPARSEABLE = "unparseable"
    OFF_LIST = "off_list"


def record_id(index: int) -> str:
    """The batch record id of the ``index``-th distinct text: 11 alphanumeric characters, sortable."""
    return f"R{index:0{_RECORD_ID_DIGITS}d}"


def record_index(rid: str) -> int:
    return int(rid[1:])


@dataclass(slots=True)
class CanonicalRecord:
    """One input row, mapped. ``rid`` is the batch record id of its text (shared by identical texts)."""

    row: int
    id: str
    text: str
    status: RowStatus = RowStatus.PENDING
    reason: str | None = None
    rid: str | None = None
    first: bool = False
    truncated: bool = False
    label: str | None = None
    carry: dict[str, Any] = field(default_factory=dict)

    def to_json(self, text_json: str | None = None) -> str:
        """One JSON line (without newline). ``text_json``: the text already encoded as a JSON string."""
        parts = [
            f'{{"row":{self.row},"id":{_json_string(self.id)},'
            f'"text":{text_json or _json_string(self.text)},"status":"{self.status.value}"'
        ]
        if self.reason is not None:
            parts.append(f',"reason":{_json_string(self.reason)}')
        if self.rid is not None:
            parts.append(f',"rid":"{self.rid}"')
        if self.first:
            parts.append(',"first":true')
        if self.truncated:
            parts.append(',"truncated":true')
        if self.label is not None:
            parts.append(f',"label":{_json_string(self.label)}')
        if self.carry:
            parts.append(f',"carry":{_json_value(self.carry)}')
        parts.append("}")
        return "".join(parts)

    @classmethod
    def from_json(cls, line: str | bytes) -> CanonicalRecord:
        data = json.loads(line)
        return cls(
            row=data["row"],
            id=data["id"],
            text=data["text"],
            status=RowStatus(data["status"]),
            reason=data.get("reason"),
            rid=data.get("rid"),
            first=data.get("first", False),
            truncated=data.get("truncated", False),
            label=data.get("label"),
            carry=data.get("carry", {}),
        )


def model_input(task: Task, text: str) -> dict[str, Any]:
    """The ``modelInput`` of one record: the request body the task's invocation type expects."""
    prompt = render_prompt(task)
    message = prompt.user_message(text)
    if task.invocation_type is InvocationType.CONVERSE:
        return {
            "system": [{"text": prompt.system}],
            "messages": [{"role": "user", "content": [{"text": message}]}],
            "inferenceConfig": {"maxTokens": task.max_tokens, "temperature": task.temperature},
        }
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": task.max_tokens,
        "temperature": task.temperature,
        "system": prompt.system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": message}]}],
    }


class BatchLineEncoder:
    """Encodes batch input lines fast: the JSON around the text is serialised once per task.

    ``encode(rid, text)`` returns exactly ``json.dumps({"recordId": rid, "modelInput": model_input(task, text)})``
    (UTF-8, non-ASCII kept) plus a newline, without re-serialising the system prompt for every record.
    """

    _MARK = "\x00TEXT\x00"

    def __init__(self, task: Task) -> None:
        template = json.dumps(
            {"recordId": self._MARK, "modelInput": model_input(task, self._MARK)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        marker = json.dumps(self._MARK, ensure_ascii=False)[1:-1]
        head, middle, tail = template.split(marker)
        self._head = head.encode()
        self._middle = middle.encode()
        self._tail = (tail + "\n").encode()

    def encode(self, rid: str, text: str) -> bytes:
        return self.encode_escaped(rid, _json_string(text)[1:-1].encode())

    def encode_escaped(self, rid: str, escaped: bytes) -> bytes:
        """The line for a text already escaped as the inside of a JSON string (UTF-8)."""
        return b"".join((self._head, rid.encode(), self._middle, escaped, self._tail))

    @property
    def overhead(self) -> int:
        """Bytes of a line beyond its record id and escaped text."""
        return len(self._head) + len(self._middle) + len(self._tail)
