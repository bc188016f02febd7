"""Canonical records and Bedrock batch input lines.

A canonical record is one input row after mapping: the user's id, the text to classify, the ground-truth
label and carried columns, and its status. Records are stored as JSON Lines in input order.

A batch input line is ``{"recordId": ..., "modelInput": {...}}`` where ``modelInput`` is the InvokeModel body
of an Anthropic model or a Converse request. Record ids are our own short alphanumeric ids (one per distinct
text) and are mapped back to the user's ids through the canonical records.

A request carries one text (record id ``R`` + the text's index) or, when the task packs texts, several consecutive
ones (``P`` + the index of its first text; which texts follow is known from the shard that wrote it, see
:mod:`.packing`). Both are 11 alphanumeric characters, as Bedrock's record ids are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from .exact_json import load_object
from .prompts import PackedPrompt, render_packed_prompt, render_prompt
from .tasks import InvocationType, Task

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# The json module's serialisers, for what orjson refuses (text with a lone surrogate) or would write otherwise (NaN):
# a JSON string, and any cell value (dates and other objects as text). ASCII only, so the bytes are always UTF-8.
_json_string = json.JSONEncoder().encode
_json_value = json.JSONEncoder(default=str, separators=(",", ":")).encode
_RECORD_ID_DIGITS = 10
TEXT_ID_PREFIX = "R"
PACK_ID_PREFIX = "P"
#: A packed request's reply may take the task's ``max_tokens`` for each of its texts, up to this many tokens (the
#: longest reply of the Claude 3 models) unless the task's own ``max_tokens`` is larger.
PACKED_MAX_TOKENS = 4096


class RowStatus(StrEnum):
    """The status every output row ends with (``pending`` only before results are known)."""

    PENDING = "pending"
    CLASSIFIED = "classified"
    INVALID_INPUT = "invalid_input"
    MODEL_ERROR = "model_error"
    UNPARSEABLE = "unparseable"
    OFF_LIST = "off_list"


# Statuses by value: a dict look-up, where calling the enum costs several times as much (a record read per row).
STATUS_BY_VALUE = {status.value: status for status in RowStatus}


def record_id(index: int) -> str:
    """The batch record id of the ``index``-th distinct text: 11 alphanumeric characters, sortable."""
    return f"R{index:0{_RECORD_ID_DIGITS}d}"


def request_ids(first_index: int, count: int, requests: int) -> list[bytes]:
    """The record ids, in ASCII, of ``requests`` consecutive requests of ``count`` texts each, the first starting at
    text ``first_index`` (:func:`request_id` of each)."""
    prefix = TEXT_ID_PREFIX if count == 1 else PACK_ID_PREFIX
    form = f"{prefix}%0{_RECORD_ID_DIGITS}d".encode()
    return list(map(form.__mod__, range(first_index, first_index + count * requests, count)))


def record_index(rid: str) -> int:
    return int(rid[1:])


def pack_id(first_index: int) -> str:
    """The batch record id of a packed request whose first text is the ``first_index``-th: ``P`` and 10 digits."""
    return f"{PACK_ID_PREFIX}{first_index:0{_RECORD_ID_DIGITS}d}"


def request_id(first_index: int, count: int) -> str:
    """The record id of a request of ``count`` texts starting at text ``first_index`` (one text: its own id)."""
    return record_id(first_index) if count == 1 else pack_id(first_index)


def is_text_id(rid: str) -> bool:
    """Whether ``rid`` is the record id of one text (``R`` and digits)."""
    return rid[:1] == TEXT_ID_PREFIX and rid[1:].isdigit()


def is_pack_id(rid: str) -> bool:
    """Whether ``rid`` is the record id of a packed request (``P`` and digits)."""
    return rid[:1] == PACK_ID_PREFIX and rid[1:].isdigit()


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
    # A control row mixed in by the task's ``controls`` (:mod:`.controls`): never written to ``records.jsonl``.
    control: bool = False

    def to_json(self) -> str:
        """One JSON line (without newline)."""
        return self.to_line().decode()

    def to_line(self, text: bytes | None = None) -> bytes:
        """One JSON line (UTF-8, without newline). ``text``: the text already escaped (:func:`escaped`).

        A pending record of plain values is :data:`PENDING_LINE` filled in; the converter writes most lines that way.
        """
        parts = [
            b'{"row":%d,"id":"%b","text":"%b","status":"%b"'
            % (self.row, escaped(self.id), escaped(self.text) if text is None else text, self.status.value.encode())
        ]
        if self.reason is not None:
            parts.append(b',"reason":"%b"' % escaped(self.reason))
        if self.rid is not None:
            parts.append(b',"rid":"%b"' % self.rid.encode())
        if self.first:
            parts.append(b',"first":true')
        if self.truncated:
            parts.append(b',"truncated":true')
        if self.label is not None:
            parts.append(b',"label":"%b"' % escaped(self.label))
        if self.carry:
            parts.append(b',"carry":' + carry_json(self.carry))
        parts.append(b"}")
        return b"".join(parts)

    @classmethod
    def from_json(cls, line: str | bytes) -> CanonicalRecord:
        data = load_object(line, inner="carry")
        return cls(
            row=data["row"],
            id=data["id"],
            text=data["text"],
            status=STATUS_BY_VALUE.get(data["status"]) or RowStatus(data["status"]),
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
    return _body(task, prompt.system, prompt.user_message(text), task.max_tokens)


def packed_model_input(task: Task, texts: Sequence[str]) -> dict[str, Any]:
    """The ``modelInput`` of a packed request: the texts numbered in one message, the packed output format."""
    if len(texts) < 2:
        raise ValueError("a packed request carries at least 2 texts; send one text with model_input()")
    prompt = render_packed_prompt(task)
    return _body(task, prompt.system, prompt.user_message(texts), packed_max_tokens(task, len(texts)))


def request_input(task: Task, texts: Sequence[str]) -> dict[str, Any]:
    """The ``modelInput`` of a request of one text or of several."""
    return model_input(task, texts[0]) if len(texts) == 1 else packed_model_input(task, texts)


def packed_max_tokens(task: Task, count: int) -> int:
    """The reply a packed request of ``count`` texts may take: ``max_tokens`` a text, within :data:`PACKED_MAX_TOKENS`
    (never less than the task's own ``max_tokens``)."""
    return min(task.max_tokens * count, max(task.max_tokens, PACKED_MAX_TOKENS))


def _body(task: Task, system: str, message: str, max_tokens: int) -> dict[str, Any]:
    if task.invocation_type is InvocationType.CONVERSE:
        return {
            "system": [{"text": system}],
            "messages": [{"role": "user", "content": [{"text": message}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": task.temperature},
        }
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": max_tokens,
        "temperature": task.temperature,
        "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": message}]}],
    }


class BatchLineEncoder:
    """Encodes batch input lines fast: the JSON around the text is serialised once per task.

    ``encode(rid, text)`` returns exactly ``json.dumps({"recordId": rid, "modelInput": model_input(task, text)})``
    (UTF-8, non-ASCII kept) plus a newline, without re-serialising the system prompt for every record;
    ``encode_request(rid, texts)`` the same for a request of one text or several (:func:`request_input`).
    """

    _MARK = "\x00TEXT\x00"

    def __init__(self, task: Task) -> None:
        self._task = task
        self._head, self._middle, self._tail = self._line_template(model_input(task, self._MARK))
        # Per count of texts: the JSON around a packed request's numbered texts (its max_tokens depends on the count).
        self._packed: dict[int, tuple[bytes, bytes, bytes]] = {}
        self._packed_lines: dict[int, bytes] = {}
        self._pieces: dict[int, tuple[bytes, ...]] = {}
        self._opens: list[bytes] = [b""]  # the escaped opening of the n-th text, from 1
        self._close = escaped(PackedPrompt.TEXT_CLOSE)

    def _line_template(self, body: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
        template = json.dumps({"recordId": self._MARK, "modelInput": body}, ensure_ascii=False, separators=(",", ":"))
        head, middle, tail = template.split(escaped(self._MARK).decode())
        return head.encode(), middle.encode(), (tail + "\n").encode()

    def encode(self, rid: str, text: str) -> bytes:
        return self.encode_escaped(rid, escaped(text))

    def encode_escaped(self, rid: str, text: bytes) -> bytes:
        """The line for a text already escaped as the inside of a JSON string (UTF-8)."""
        return b"".join((self._head, rid.encode(), self._middle, text, self._tail))

    def encode_request(self, rid: str, texts: Sequence[bytes]) -> bytes:
        """The line of a request of ``texts`` (each already escaped as the inside of a JSON string)."""
        if len(texts) == 1:
            return self.encode_escaped(rid, texts[0])
        return self._packed_line(len(texts)) % (rid.encode(), *texts)

    def request_pieces(self, count: int) -> tuple[bytes, ...]:
        """The ``count + 2`` fixed pieces of the line of a request of ``count`` texts: the line is the first piece, the
        record id, the second piece, the first text, ..., the last text and the last piece."""
        found = self._pieces.get(count)
        if found is None:
            if count == 1:
                found = (self._head, self._middle, self._tail)
            else:
                head, middle, tail = self._packed_template(count)
                openings = [self._text_opening(n) for n in range(1, count + 1)]
                between = [self._close + opening for opening in openings[1:]]
                found = (head, middle + openings[0], *between, self._close + tail)
            self._pieces[count] = found
        return found

    def _packed_line(self, count: int) -> bytes:
        """The line of a packed request of ``count`` texts as a ``%`` format: the record id, then each text."""
        found = self._packed_lines.get(count)
        if found is None:
            pieces = (piece.replace(b"%", b"%%") for piece in self.request_pieces(count))
            found = self._packed_lines[count] = b"%b".join(pieces)
        return found

    def _packed_template(self, count: int) -> tuple[bytes, bytes, bytes]:
        found = self._packed.get(count)
        if found is None:
            prompt = render_packed_prompt(self._task)
            body = _body(
                self._task, prompt.system, prompt.intro(count) + self._MARK, packed_max_tokens(self._task, count)
            )
            found = self._packed[count] = self._line_template(body)
        return found

    def _text_opening(self, number: int) -> bytes:
        while len(self._opens) <= number:
            self._opens.append(escaped(PackedPrompt.text_open(len(self._opens))))
        return self._opens[number]

    def request_overhead(self, count: int) -> int:
        """Bytes of the line of a request of ``count`` texts beyond its record id and escaped texts."""
        return sum(map(len, self.request_pieces(count)))


def escaped(text: str) -> bytes:
    """``text`` as the inside of a JSON string (UTF-8, non-ASCII kept; a text with a lone surrogate, which UTF-8 cannot
    hold, escaped to ASCII)."""
    try:
        return orjson.dumps(text)[1:-1]
    except orjson.JSONEncodeError:
        return _json_string(text)[1:-1].encode()


def escaped_strings(texts: list[str]) -> list[bytes]:
    """:func:`escaped` of every text, at once (orjson writes the list; its items are split apart again: ``","`` cannot
    occur inside a JSON string, whose quotes are escaped). ``TypeError`` or ``orjson.JSONEncodeError`` when one is
    not a string orjson writes."""
    if not texts:
        return []
    return orjson.dumps(texts)[2:-2].split(b'","')


def carry_json(carry: dict[str, Any]) -> bytes:
    """The carried columns as a JSON object: orjson writes text and empty values, the json module anything else (numbers
    and dates as the json module writes them, so that they read back as they were)."""
    for value in carry.values():
        if value is not None and value.__class__ is not str:
            return _json_value(carry).encode()
    try:
        return orjson.dumps(carry)
    except orjson.JSONEncodeError:
        return _json_value(carry).encode()


#: The start of the line of a pending record (:meth:`CanonicalRecord.to_line`), up to its record id: to be filled in
#: with the row, the escaped id and text, and the index of the record id.
PENDING_LINE = b'{"row":%d,"id":"%b","text":"%b","status":"pending","rid":"R%010d"'
