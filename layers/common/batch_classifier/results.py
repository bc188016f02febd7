"""From model results to output rows: the verdict on each distinct text, and the row each input row becomes.

A :class:`Verdict` is decided once per distinct text (record id) and fanned out to every input row carrying
that text. The result of a packed request is first split into one result per text it carried
(:func:`unpack_results`), so everything from the verdict on is per text, whatever the request carried.
:func:`output_row` builds the row of the results file; :class:`SummaryBuilder` counts as rows go by, so a summary
of a million rows needs no second pass.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .confidence import CONFIDENCE_COLUMN, NEEDS_REVIEW_COLUMN, needs_review
from .cost import PriceTable
from .errors import BatchClassifierError
from .evaluation import evaluate
from .labels import LabelMatcher, MatchMethod
from .mapping import OutputLayout
from .outputs import ModelResult, extract_answer, split_packed_reply
from .records import STATUS_BY_VALUE, CanonicalRecord, RowStatus, is_text_id, record_id, record_index
from .tasks import Task

# Columns the product adds to every output row, after the id and the input's own columns.
RESULT_COLUMNS = (
    "class",
    "rationale",
    "status",
    NEEDS_REVIEW_COLUMN,
    CONFIDENCE_COLUMN,
    "reason",
    "match",
    "model_answer",
    "truncated",
)
CORRECT_COLUMN = "correct"
_RESERVED = frozenset(("id", *RESULT_COLUMNS, CORRECT_COLUMN))
MISSING_REASON = "missing from the model output"

# On-demand records the time budget of an invocation left without an answer (see ``bedrock.CallBudget``).
#: Error code of a record that was never sent: the invocation's time could not fit one more call.
NOT_SENT = "NotSent"
#: Error code of a record whose call was still running when the invocation's time ran out.
OUT_OF_TIME = "TimeBudgetExceeded"
OUT_OF_TIME_REASON = "not answered before the time budget ran out"
UNSENT_REASON = "not sent before the time budget ran out; sent again in the next round"
#: Error code of a text its packed reply did not answer exactly once (see ``outputs.split_packed_reply``).
UNANSWERED_IN_PACK = "NotAnsweredInPackedReply"


class ResultsJoinError(BatchClassifierError):
    """Records and results cannot be joined (they come from different runs, or a file is incomplete)."""


@dataclass(slots=True)
class Verdict:
    """What became of one distinct text."""

    status: RowStatus
    category: str | None = None
    rationale: str | None = None
    match: MatchMethod | None = None
    answer: str | None = None
    reason: str | None = None
    retryable: bool = False
    # Sent again alone (not packed) when retried: the packed request is what may have failed it.
    alone: bool = False
    # The model's confidence (0..1) when it gave a readable one, and whether the row goes in the review queue.
    confidence: float | None = None
    needs_review: bool = False

    def to_json(self, index: int) -> str:
        """One line of a results file: the record index and the verdict's set fields."""
        data: dict[str, Any] = {"i": index, "status": self.status.value}
        for key, value in (
            ("class", self.category),
            ("rationale", self.rationale),
            ("match", self.match.value if self.match else None),
            ("answer", self.answer),
            ("reason", self.reason),
            ("confidence", self.confidence),
        ):
            if value is not None:
                data[key] = value
        if self.retryable:
            data["retryable"] = True
        if self.needs_review:
            data["review"] = True
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # text orjson refuses (a lone surrogate): the json module writes it as before
            return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> tuple[int, Verdict]:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:  # what to_json wrote with the json module
            data = json.loads(line)
        status, match = data["status"], data.get("match")
        verdict = cls(
            status=STATUS_BY_VALUE.get(status) or RowStatus(status),
            category=data.get("class"),
            rationale=data.get("rationale"),
            match=(_MATCHES.get(match) or MatchMethod(match)) if match else None,
            answer=data.get("answer"),
            reason=data.get("reason"),
            retryable=data.get("retryable", False),
            confidence=data.get("confidence"),
            needs_review=data.get("review", False),
        )
        return data["i"], verdict


# Match methods by value: a dict look-up, where calling the enum costs several times as much (a million verdicts).
_MATCHES = {method.value: method for method in MatchMethod}


def judge(result: ModelResult | None, matcher: LabelMatcher, task: Task) -> Verdict:
    """The verdict on one model result (None: the record never came back)."""
    if result is None:
        return judge_missing()
    if result.error_code == NOT_SENT:
        return Verdict(RowStatus.MODEL_ERROR, reason=f"{OUT_OF_TIME_REASON} (never sent)")
    if result.error_code == UNANSWERED_IN_PACK:
        return Verdict(RowStatus.MODEL_ERROR, reason=result.error_message, retryable=True, alone=True)
    if result.failed:
        message = f": {result.error_message}" if result.error_message else ""
        # A call cut off by the time budget was sent: like a model timeout, it may be tried again.
        retryable = result.retryable or result.error_code == OUT_OF_TIME
        reason = f"error {result.error_code}{message}"
        if result.texts > 1 and not retryable:
            # Refused as a request of several texts (too long, say): each text goes again on its own.
            return Verdict(
                RowStatus.MODEL_ERROR,
                reason=f"{reason} (a request of {result.texts} texts)",
                retryable=True,
                alone=True,
            )
        return Verdict(RowStatus.MODEL_ERROR, reason=reason, retryable=retryable)
    answer = extract_answer(result.text or "", task.output_tags)
    rationale = " ".join(answer.explanation.split()) if answer.explanation else None
    if answer.label is None:
        cut = " (the reply was cut off at max_tokens)" if result.stop_reason in {"max_tokens", "length"} else ""
        return Verdict(
            RowStatus.UNPARSEABLE, rationale=rationale, reason=f"no <{task.output_tags.label}> in the reply{cut}"
        )
    found = matcher.match(answer.label)
    if found.category is None:
        return Verdict(
            RowStatus.OFF_LIST,
            rationale=rationale,
            match=found.method,
            answer=answer.label,
            reason=f"{answer.label!r} is not one of the task's categories",
            confidence=answer.confidence,
        )
    return Verdict(
        RowStatus.CLASSIFIED,
        category=found.category,
        rationale=rationale,
        match=found.method,
        answer=answer.label,
        confidence=answer.confidence,
        needs_review=needs_review(task, found.method, answer.confidence),
    )


@dataclass
class JudgedOutputs:
    """The verdicts of one batch of model results (a job's output files, an on-demand shard), with totals."""

    verdicts: dict[int, Verdict] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    unknown_records: int = 0

    def take(self, result: ModelResult, verdict: Verdict, index: int) -> None:
        """Keep ``verdict`` for ``index`` unless an answer is already there (an answer beats an error)."""
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        previous = self.verdicts.get(index)
        if previous is None or previous.status is RowStatus.MODEL_ERROR:
            self.verdicts[index] = verdict

    def sorted_items(self) -> Iterator[tuple[int, Verdict]]:
        """``(index, verdict)`` in index order."""
        for index in sorted(self.verdicts):
            yield index, self.verdicts[index]

    def sorted_lines(self) -> Iterator[str]:
        for index, verdict in self.sorted_items():
            yield verdict.to_json(index)


def judge_results(
    results: Iterable[ModelResult], matcher: LabelMatcher, task: Task, known: Callable[[int], bool]
) -> JudgedOutputs:
    """Judge every result whose record id is one of our texts' (``known``); others are only counted.

    Results of packed requests must have been split first (:func:`unpack_results`)."""
    judged = JudgedOutputs()
    for result in results:
        index = record_index(result.record_id) if is_text_id(result.record_id) else 0
        if not known(index):
            judged.unknown_records += 1
            continue
        judged.take(result, judge(result, matcher, task), index)
    return judged


def unpack_results(
    results: Iterable[ModelResult], texts_of: Callable[[str], tuple[int, ...] | None]
) -> Iterator[ModelResult]:
    """One result per text: a packed request's result becomes a result for each text it carried.

    ``texts_of`` gives the indexes of the texts a request carried (None: not a request of ours; its result passes
    through, to be counted as unknown). A text answered exactly once in the packed reply gets that answer; one left
    unanswered gets the error :data:`UNANSWERED_IN_PACK`; an error of the request is every text's. The request's
    tokens are counted once, on its first text.
    """
    for result in results:
        indexes = texts_of(result.record_id)
        if indexes is None or len(indexes) == 1:
            yield result
            continue
        count = len(indexes)
        reply = None if result.failed else split_packed_reply(result.text or "", count, result.stop_reason)
        for number, index in enumerate(indexes, start=1):
            # The request's tokens are its first text's; the others' are 0, so totals count them once.
            tokens_in, tokens_out = (result.input_tokens, result.output_tokens) if number == 1 else (0, 0)
            one = ModelResult(record_id(index), input_tokens=tokens_in, output_tokens=tokens_out, texts=count)
            if reply is None:
                one.error_code, one.error_message = result.error_code, result.error_message
            elif number in reply.answers:
                one.text, one.stop_reason = reply.answers[number], result.stop_reason
            else:
                one.error_code, one.error_message = UNANSWERED_IN_PACK, reply.unanswered[number]
            yield one


def read_verdicts(lines: Iterable[bytes | str]) -> Iterator[tuple[int, Verdict]]:
    """``(index, verdict)`` from a results file written in index order."""
    for line in lines:
        if line.strip():
            yield Verdict.from_json(line)


def merge_verdicts(streams: Iterable[Iterable[tuple[int, Verdict]]]) -> Iterator[tuple[int, Verdict]]:
    """One index-ordered stream from several; for an index seen twice an answer beats an error, and the
    later of two errors (a retry's) wins."""
    current: tuple[int, Verdict] | None = None
    for index, verdict in heapq.merge(*streams, key=lambda item: item[0]):
        if current is not None and current[0] == index:
            if current[1].status is RowStatus.MODEL_ERROR:
                current = (index, verdict)
            continue
        if current is not None:
            yield current
        current = (index, verdict)
    if current is not None:
        yield current


def join_verdicts(
    records: Iterable[CanonicalRecord], verdicts: Iterable[tuple[int, Verdict]], shared: set[int]
) -> Iterator[tuple[CanonicalRecord, Verdict | None]]:
    """Each record (input order) with its verdict; memory holds only the verdicts of shared texts.

    First occurrences of texts come in index order, so the index-ordered verdicts are read alongside;
    a first occurrence without a verdict is missing from the model output. Rows that never reached the
    model get None.
    """
    pending = iter(verdicts)
    ahead: tuple[int, Verdict] | None = next(pending, None)
    kept: dict[int, Verdict] = {}
    missing = judge_missing()
    for record in records:
        if record.rid is None:
            yield record, None
            continue
        index = record_index(record.rid)
        if not record.first:
            shared_verdict = kept.get(index)
            if shared_verdict is None:
                raise ResultsJoinError(
                    f"row {record.row} repeats text {record.rid}, which is not listed as shared; "
                    "the prepared records and their list of shared texts do not belong together."
                )
            yield record, shared_verdict
            continue
        while ahead is not None and ahead[0] < index:
            ahead = next(pending, None)
        verdict = missing
        if ahead is not None and ahead[0] == index:
            verdict = ahead[1]
            ahead = next(pending, None)
        if index in shared:
            kept[index] = verdict
        yield record, verdict


def judge_missing() -> Verdict:
    """The verdict on a record that never came back from the model."""
    return Verdict(RowStatus.MODEL_ERROR, reason=MISSING_REASON, retryable=True)


def judge_unsent() -> Verdict:
    """The verdict on an on-demand record left unsent by the time budget while another round can still send it:
    not ``retryable`` (it was never tried, so it uses none of its retries), and replaced by the next round's."""
    return Verdict(RowStatus.MODEL_ERROR, reason=UNSENT_REASON)


def output_name(column: str) -> str:
    """An input column's name in the output; one that clashes with a result column gets an ``input_`` prefix."""
    return f"input_{column}" if column in _RESERVED else column


def output_columns(layout: OutputLayout, labelled: bool) -> list[str]:
    columns = ["id", *(output_name(c) for c in layout.columns), *RESULT_COLUMNS]
    if labelled:
        columns.append(CORRECT_COLUMN)
    return columns


def output_row(record: CanonicalRecord, verdict: Verdict | None, layout: OutputLayout) -> dict[str, Any]:
    """The output row of one input row. ``verdict`` is None only for rows that never reached the model."""
    row: dict[str, Any] = {"id": record.id}
    for column in layout.columns:
        value = record.text if column == layout.text_column else record.carry.get(column)
        row[output_name(column)] = value
    if record.status is RowStatus.INVALID_INPUT or verdict is None:
        row["status"] = record.status.value
        row[NEEDS_REVIEW_COLUMN] = False
        row["reason"] = record.reason
    else:
        row.update(
            {
                "class": verdict.category,
                "rationale": verdict.rationale,
                "status": verdict.status.value,
                NEEDS_REVIEW_COLUMN: verdict.needs_review,
                CONFIDENCE_COLUMN: verdict.confidence,
                "reason": verdict.reason,
                "match": verdict.match.value if verdict.match else None,
                "model_answer": verdict.answer,
            }
        )
    row["truncated"] = record.truncated
    if record.label is not None:
        row[CORRECT_COLUMN] = row.get("class") == record.label
    return row


@dataclass
class SummaryBuilder:
    """Counts output rows by status, class and match method, and pairs ground truth with predictions."""

    categories: list[str]
    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_class: Counter[str] = field(default_factory=Counter)
    by_match: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    labelled: bool = False
    needs_review: int = 0

    def add(self, record: CanonicalRecord, row: dict[str, Any]) -> None:
        self.rows += 1
        self.by_status[row["status"]] += 1
        if row.get("class"):
            self.by_class[row["class"]] += 1
        if row.get("match"):
            self.by_match[row["match"]] += 1
        if row.get(NEEDS_REVIEW_COLUMN):
            self.needs_review += 1
        if record.label is not None:
            self.labelled = True
        self.pairs[(record.label, row.get("class"))] += 1

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "rows": self.rows,
            "by_status": {s.value: self.by_status.get(s.value, 0) for s in RowStatus if s is not RowStatus.PENDING},
            "by_class": {c: self.by_class.get(c, 0) for c in self.categories},
            "by_match": dict(sorted(self.by_match.items())),
            NEEDS_REVIEW_COLUMN: self.needs_review,
        }
        if self.labelled:
            pairs = ((truth, predicted) for (truth, predicted), n in self.pairs.items() for _ in range(n))
            summary["evaluation"] = evaluate(pairs, self.categories).to_dict()
        return summary


def cost_summary(
    tokens: dict[str, dict[str, int]], model_id: str, prices: PriceTable, source: str | None = None
) -> dict[str, Any]:
    """Tokens by kind (``batch``, ``on_demand``) and what they cost at the model's batch and on-demand prices."""
    batch, on_demand = tokens["batch"], tokens["on_demand"]
    batch_usd = prices.cost(model_id, batch["input"], batch["output"], "batch")
    on_demand_usd = prices.cost(model_id, on_demand["input"], on_demand["output"], "on_demand")
    totals: dict[str, Any] = {
        "input": batch["input"] + on_demand["input"],
        "output": batch["output"] + on_demand["output"],
        "batch": batch,
        "on_demand": on_demand,
    }
    if source:
        totals["source"] = source
    return {
        "tokens": totals,
        "cost_usd": round(batch_usd + on_demand_usd, 6),
        "cost": {"batch_usd": round(batch_usd, 6), "on_demand_usd": round(on_demand_usd, 6)},
    }
