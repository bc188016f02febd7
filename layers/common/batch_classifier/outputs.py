"""Reading Bedrock batch output: ``*.jsonl.out`` lines, ``manifest.json.out``, and the answer inside a reply.

An output line holds ``recordId`` and either ``modelOutput`` (the model's response body: Anthropic Messages,
Converse, and the other InvokeModel shapes) or ``error`` (``errorCode`` number or string, ``errorMessage``).
Lines come in any order; callers join them on ``recordId``. A line that cannot be read is reported, not
fatal: its record is then missing from the output and ends as a model error.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import IO, Any

import orjson

from .confidence import CONFIDENCE_TAG, parse_confidence
from .tasks import OutputTags

MANIFEST_NAME = "manifest.json.out"

_RECORD_ID = re.compile(rb'^\s*\{\s*"recordId"\s*:\s*"([A-Za-z0-9_-]+)"')
_COLON = re.compile(rb"\s*:")
_WHITESPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()

# Codes worth another attempt: throttling, timeouts and server-side failures.
_RETRYABLE = {
    "408",
    "429",
    "500",
    "502",
    "503",
    "504",
    "throttlingexception",
    "modeltimeoutexception",
    "servicequotaexceededexception",
    "serviceunavailableexception",
    "internalserverexception",
    "modelnotreadyexception",
}


@dataclass(slots=True)
class ModelResult:
    """One record's outcome in a batch output file (or from an on-demand call)."""

    record_id: str
    text: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    # How many texts the request carried (above 1: a packed request; see :func:`split_packed_reply`).
    texts: int = 1

    @property
    def failed(self) -> bool:
        return self.error_code is not None

    @property
    def retryable(self) -> bool:
        return self.error_code is not None and self.error_code.casefold() in _RETRYABLE


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of an output file that could not be read."""

    file: str
    line: int
    problem: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """The job summary Bedrock writes beside the outputs."""

    total_records: int = 0
    processed_records: int = 0
    success_records: int = 0
    error_records: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "total_records": self.total_records,
            "processed_records": self.processed_records,
            "success_records": self.success_records,
            "error_records": self.error_records,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


def parse_manifest(data: bytes | str) -> Manifest:
    doc = _loads(data)
    return Manifest(
        total_records=int(doc.get("totalRecordCount", 0)),
        processed_records=int(doc.get("processedRecordCount", 0)),
        success_records=int(doc.get("successRecordCount", 0)),
        error_records=int(doc.get("errorRecordCount", 0)),
        input_tokens=int(doc.get("inputTokenCount", 0)),
        output_tokens=int(doc.get("outputTokenCount", 0)),
    )


def read_output_lines(stream: IO[bytes], name: str, bad: list[BadLine]) -> Iterator[ModelResult]:
    """Results of every readable line of one output file; unreadable lines are appended to ``bad``."""
    for number, raw in enumerate(_lines(stream), start=1):
        if not raw or raw.isspace():  # (strip would copy the line, kilobytes long)
            continue
        try:
            yield parse_output_line(raw)
        except (ValueError, TypeError, KeyError, SyntaxError) as exc:
            bad.append(BadLine(file=name, line=number, problem=str(exc) or type(exc).__name__))


_READ_BUFFER = 1 << 20


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``stream``, read through a buffer of a megabyte: an output line echoes its request, so lines run
    to kilobytes, and a file opened with the default buffer (8 KiB) would be read in pieces joined again, line by line.
    The buffer is detached at the end, leaving ``stream`` open for its owner to close."""
    try:
        buffered = io.BufferedReader(stream, buffer_size=_READ_BUFFER)  # type: ignore[type-var]
    except (AttributeError, OSError, ValueError):  # not a readable binary stream (an iterable of lines, say)
        yield from stream
        return
    try:
        yield from buffered
    finally:
        with suppress(ValueError):  # the stream was closed first: nothing is left to detach
            buffered.detach()


def parse_output_line(raw: bytes | str) -> ModelResult:
    if isinstance(raw, bytes):
        fast = _parse_fast(raw)
        if fast is not None:
            return fast
    doc = _loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("the line is not a JSON object")
    rid = doc.get("recordId")
    if not isinstance(rid, str) or not rid:
        raise KeyError("the line has no recordId")
    error = doc.get("error")
    if error is not None:
        return _error_result(rid, error)
    output = doc.get("modelOutput")
    if not isinstance(output, dict):
        raise ValueError(f"record {rid} has neither modelOutput nor error")
    return model_result(rid, output)


def _parse_fast(raw: bytes) -> ModelResult | None:
    """Parse a line without decoding its echoed ``modelInput`` (most of its bytes); None: take the slow path.

    Bedrock writes ``recordId`` first and the answer after the input. The key patterns searched for cannot
    occur inside a JSON string (their quotes would have to be escaped), so finding them is finding the keys.
    """
    rid = _RECORD_ID.search(raw, 0, 256)
    if rid is None:
        return None
    for key in (b'"modelOutput"', b'"error"'):
        at = raw.rfind(key)
        if at < 0:
            continue
        colon = _COLON.match(raw, at + len(key))
        if colon is None:
            return None
        value = _decode_tail(raw, colon.end())
        if value is _UNREAD:
            return None
        record = rid[1].decode()
        if key == b'"error"':
            return _error_result(record, value)
        return model_result(record, value) if isinstance(value, dict) else None
    return None


_UNREAD = object()


def _decode_tail(raw: bytes, start: int) -> Any:
    """The JSON value at ``start`` in ``raw``, the line's last key's value (``_UNREAD`` if it cannot be read).

    The value normally runs to the line's closing brace, and orjson reads it at once; when something follows it (a key
    after ``modelOutput``), the json module finds where it ends."""
    end = len(raw)
    while end > start and raw[end - 1] in _WHITESPACE:  # (rstrip would copy the line, kilobytes long)
        end -= 1
    if end > start and raw[end - 1] == 0x7D:  # "}", the line's object closing after the value
        try:
            return orjson.loads(raw[start : end - 1])
        except orjson.JSONDecodeError:
            pass
    tail = raw[start:].decode()
    try:
        value, _ = _DECODER.raw_decode(tail, len(tail) - len(tail.lstrip()))
    except json.JSONDecodeError:
        return _UNREAD
    return value


def model_result(record_id: str, output: dict[str, Any]) -> ModelResult:
    """Text, tokens and stop reason from a response body of any supported shape."""
    text, stop = _reply_text(output)
    tokens_in, tokens_out = _usage(output)
    return ModelResult(
        record_id=record_id, text=text, input_tokens=tokens_in, output_tokens=tokens_out, stop_reason=stop
    )


def is_retryable(code: str) -> bool:
    return code.casefold() in _RETRYABLE


def _error_result(rid: str, error: Any) -> ModelResult:
    if isinstance(error, dict):
        code = error.get("errorCode", "unknown")
        message = error.get("errorMessage")
    else:
        code, message = "unknown", str(error)
    return ModelResult(record_id=rid, error_code=str(code), error_message=None if message is None else str(message))


def _reply_text(output: dict[str, Any]) -> tuple[str | None, str | None]:
    # Anthropic Messages: {"content": [{"type": "text", "text": ...}], "stop_reason": ...}
    content = output.get("content")
    if isinstance(content, list):
        return _join_text(content), output.get("stop_reason")
    # Converse: {"output": {"message": {"content": [{"text": ...}]}}, "stopReason": ...}
    message = output.get("output", {}).get("message") if isinstance(output.get("output"), dict) else None
    if isinstance(message, dict):
        return _join_text(message.get("content", [])), output.get("stopReason")
    # Amazon Titan Text: {"results": [{"outputText": ..., "completionReason": ...}]}
    results = output.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        return str(results[0].get("outputText", "")), results[0].get("completionReason")
    # Meta Llama: {"generation": ..., "stop_reason": ...}; older Anthropic: {"completion": ...}
    for key in ("generation", "completion"):
        if isinstance(output.get(key), str):
            return output[key], output.get("stop_reason")
    # Mistral: {"outputs": [{"text": ..., "stop_reason": ...}]}
    outputs = output.get("outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        return str(outputs[0].get("text", "")), outputs[0].get("stop_reason")
    raise ValueError(f"unrecognised modelOutput with keys {sorted(output)}")


def _join_text(blocks: list[Any]) -> str:
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict))


def _usage(output: dict[str, Any]) -> tuple[int, int]:
    usage = output.get("usage")
    if isinstance(usage, dict):
        tokens_in = usage.get("input_tokens", usage.get("inputTokens", 0))
        tokens_out = usage.get("output_tokens", usage.get("outputTokens", 0))
        return int(tokens_in or 0), int(tokens_out or 0)
    if "inputTextTokenCount" in output:  # Titan
        results = output.get("results") or [{}]
        return int(output["inputTextTokenCount"]), int(results[0].get("tokenCount", 0))
    if "prompt_token_count" in output:  # Llama
        return int(output["prompt_token_count"]), int(output.get("generation_token_count", 0))
    return 0, 0


def _loads(raw: bytes | str) -> Any:
    """JSON, or the Python-literal spelling some documentation examples use (single-quoted keys)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as first:
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            return ast.literal_eval(_python_literals(text))
        except (ValueError, SyntaxError):
            raise ValueError(f"not JSON: {first.msg} at column {first.colno}") from None


def _python_literals(text: str) -> str:
    return re.sub(r"\b(true|false|null)\b", lambda m: {"true": "True", "false": "False", "null": "None"}[m[1]], text)


# --- the answer inside the reply ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The label and explanation found in a reply (label None when the reply has no label tag), and the confidence
    (0..1) when the reply gives a readable one."""

    label: str | None
    explanation: str | None
    confidence: float | None = None


_QUOTES = "\"'`*“”‘’«»"


def extract_answer(text: str, tags: OutputTags) -> Answer:
    """Find ``<label-tag>`` and ``<explanation-tag>`` (also ``<class>`` followed by a rationale).

    Tolerates whitespace, quotes and text around the tags, tag case, and a reply cut off inside the tags. A
    ``<confidence>`` is read when there is one (:func:`~.confidence.parse_confidence`); a missing or garbled one
    leaves the answer as it is, without a confidence.
    """
    folded = text.lower() if text.isascii() else None  # re.I folds some non-ASCII letters to ASCII ones
    for tag in dict.fromkeys((tags.label, "classification", "class", "category")):
        raw, rest = _tag_value(text, tag, folded)
        label = _clean_label(raw) if raw is not None else None
        if label is not None:
            explanation, _ = _tag_value(text, tags.explanation, folded)
            if explanation is None:
                explanation, _ = _tag_value(text, "rationale", folded)
            if explanation is None:
                explanation = _free_text(rest)
            said, _ = _tag_value(text, CONFIDENCE_TAG, folded)
            return Answer(label=label, explanation=explanation, confidence=parse_confidence(said))
    return Answer(label=None, explanation=None)


def _tag_value(text: str, tag: str, folded: str | None = None) -> tuple[str | None, str]:
    """The stripped content of the first ``<tag>`` and the text after it; an unclosed tag runs to the next tag.
    ``folded``: ``text.lower()``, to skip the search when the tag's name is nowhere in the text."""
    if folded is not None and tag.isascii():
        name = tag.lower()
        at = folded.find(name)
        if at < 0:
            return None, text
        # The common reply, <tag>value</tag> with the tag's name nowhere before or inside: the value without a search.
        start = at + len(name) + 1
        if folded[at - 1 : start] == f"<{name}>":
            end = folded.find(f"</{name}>", start)
            if end >= 0 and folded.find(name, start) == end + 2:
                value = text[start:end].strip()
                return (value or None), text[end + len(name) + 3 :]
    closed, opened = _tag_patterns(tag)
    found = closed.search(text) or opened.search(text)
    if found is None:
        return None, text
    value = found[1].strip()
    return (value or None), text[found.end() :]


@cache
def _tag_patterns(tag: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    name = re.escape(tag)
    closed = re.compile(rf"<\s*{name}\s*>(.*?)<\s*/\s*{name}\s*>", re.I | re.S)
    opened = re.compile(rf"<\s*{name}\s*>([^<]*)", re.I)
    return closed, opened


def _clean_label(raw: str) -> str | None:
    """A label without the quotes, emphasis and final full stop models wrap around it."""
    return raw.strip().strip(_QUOTES).strip().rstrip(".").strip() or None


def _free_text(rest: str) -> str | None:
    cleaned = re.sub(r"<[^>]+>", " ", rest)
    cleaned = " ".join(cleaned.split()).lstrip(":-– ")
    return cleaned or None


# --- the answers inside a packed reply ------------------------------------------------------------------

_ANSWER_OPEN = re.compile(r"<\s*answer\b([^>]*)>", re.I)
_ANSWER_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.I)
_NUMBER = re.compile(r"\d+")
_CUT_OFF = frozenset({"max_tokens", "length"})


@dataclass(frozen=True, slots=True)
class PackedReply:
    """A packed reply split by text number: the answer of each text answered exactly once, and for every other
    text of the request why it has none."""

    answers: dict[int, str]
    unanswered: dict[int, str]


def split_packed_reply(text: str, count: int, stop_reason: str | None = None) -> PackedReply:
    """The ``<answer number="N">`` blocks of a reply to a request of ``count`` texts, by number.

    Nothing is guessed: a text is answered only when exactly one block carries its number. A text whose number no
    block carries, or several do, is unanswered; so is the text of a last block the reply was cut off in
    (``stop_reason`` ``max_tokens``). A block numbered outside 1..``count`` means the reply's numbering is not the
    request's, so no block of it can be tied to a text: every text is unanswered.
    """
    found: dict[int, list[str]] = {}
    stray: list[int] = []
    opens = list(_ANSWER_OPEN.finditer(text))
    for at, opening in enumerate(opens):
        numbered = _NUMBER.search(opening[1])
        end = opens[at + 1].start() if at + 1 < len(opens) else len(text)
        closing = _ANSWER_CLOSE.search(text, opening.end(), end)
        if closing is None and at + 1 == len(opens) and stop_reason in _CUT_OFF:
            continue  # the reply stopped inside this answer: its text is unanswered, not half-read
        body = text[opening.end() : closing.start() if closing else end]
        if numbered is None:
            stray.append(0)
            continue
        value = int(numbered[0])
        if 1 <= value <= count:
            found.setdefault(value, []).append(body)
        else:
            stray.append(value)
    if stray:
        shown = ", ".join(str(n) if n else "(none)" for n in stray[:5])
        why = f"the reply numbers answers {shown}, which a request of {count} texts does not have, so none is kept"
        return PackedReply(answers={}, unanswered=dict.fromkeys(range(1, count + 1), why))
    answers: dict[int, str] = {}
    unanswered: dict[int, str] = {}
    cut = " (the reply was cut off at max_tokens)" if stop_reason in _CUT_OFF else ""
    for number in range(1, count + 1):
        bodies = found.get(number, [])
        if len(bodies) == 1:
            answers[number] = bodies[0]
        elif bodies:
            unanswered[number] = f"text {number} of {count} was answered {len(bodies)} times in its packed reply"
        else:
            unanswered[number] = f"text {number} of {count} was not answered in its packed reply{cut}"
    return PackedReply(answers=answers, unanswered=unanswered)
