"""ProcessShard and PlanRetries: a shard's results judged and written, and the rounds of retries planned from
them. Re-exported by :mod:`.runs`.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .bedrock import CallBudget, invoke_on_demand
from .labels import LabelMatcher
from .outputs import MANIFEST_NAME, BadLine, ModelResult, parse_manifest, read_output_lines
from .packing import Requests, alone_id, goes_alone, group_texts
from .pipeline import keyed_text_line, text_lines
from .records import BatchLineEncoder, RowStatus, record_index
from .results import (
    NOT_SENT,
    JudgedOutputs,
    judge_missing,
    judge_results,
    judge_unsent,
    unpack_results,
)
from .run_intake import _publish_round, _request_items, _round_shards, _shard_ref, run_task, shard_lines, shard_texts
from .settings import Settings
from .sharding import ShardKind, cut_shards, plan_shards
from .status import ShardStatus, StatusStore
from .storage import (
    RunFiles,
    UploadFile,
    list_keys,
    open_object,
    put_bytes,
    read_bytes,
)
from .workflow import RoundPlan, RunRef, ShardRef

#: Rounds after ``max_retry_rounds`` in which records an on-demand shard's time budget left unsent may still be sent:
#: they were never tried, so they have used none of their retries. Each such round means a whole invocation's time
#: did not get through a shard of fewer records than a batch job's minimum; past this many, Bedrock is not serving
#: the account, and the records end ``model_error`` ("not answered before the time budget ran out").
UNSENT_EXTRA_ROUNDS = 3


def last_round(settings: Settings) -> int:
    """The last round a run can have: ``max_retry_rounds`` of retries, then rounds for unsent records only."""
    return settings.max_retry_rounds + UNSENT_EXTRA_ROUNDS


# --- ProcessShard ---------------------------------------------------------------------------------------


def results_key(files: RunFiles, shard: ShardRef) -> str:
    """Results files sort by round, so a retry's verdicts come after (and can replace) the first attempt's."""
    return files.key(f"results/round-{shard.round:02d}/{shard.name}.jsonl")


def retries_key(files: RunFiles, shard: ShardRef) -> str:
    return files.key(f"retries/round-{shard.round:02d}/{shard.name}.json")


@dataclass
class ShardRetries:
    """A shard's retries file: the records PlanRetries may send again, and the shard's counts.

    ``retry``: sent, and failed with a retryable error (each such round uses one of the record's retries);
    ``unsent``: never sent, because the invocation's time ran out first (they use none); ``alone``: the records of
    either to send alone, not packed (a packed reply did not answer them exactly once, or a request of several
    texts failed for good, or they were sent alone already). ProcessShard writes the
    file after the shard's results and before it marks the shard processed, with the counts of that mark, so an
    invocation run again after the file was written finishes from it instead of judging (and paying) again.
    """

    retry: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    counts: dict[str, Any] | None = None
    alone: list[int] = field(default_factory=list)

    def to_json(self) -> bytes:
        lists = {"retry": self.retry, "unsent": self.unsent, "alone": self.alone}
        return json.dumps({**lists, **(self.counts or {})}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ShardRetries:
        data = json.loads(raw)
        if isinstance(data, list):  # the list of retryable records that earlier versions wrote
            return cls(retry=[int(i) for i in data])
        counts = {k: v for k, v in data.items() if k not in {"retry", "unsent", "alone"}}
        return cls(
            retry=data.get("retry", []),
            unsent=data.get("unsent", []),
            counts=counts or None,
            alone=data.get("alone", []),
        )


def _read_retries(s3: Any, settings: Settings, files: RunFiles, shard: ShardRef) -> ShardRetries:
    return ShardRetries.from_json(read_bytes(s3, settings.internal_bucket, retries_key(files, shard)))


def _written_retries(s3: Any, settings: Settings, files: RunFiles, shard: ShardRef) -> ShardRetries | None:
    """The shard's retries file when an earlier invocation wrote it, else None."""
    try:
        return _read_retries(s3, settings, files, shard)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise


def _shard_members(s3: Any, settings: Settings, shard: ShardRef, requests: Requests) -> tuple[list[int], set[int]]:
    """The record indexes of a shard, and those sent alone: a range in round 0, the ids in its keyed texts in a retry
    round. The shard's requests are added to ``requests``, so that their results can be split by text."""
    if not shard.keyed:
        if not shard.first_record_id or not shard.last_record_id:
            return [], set()
        first, last = record_index(shard.first_record_id), record_index(shard.last_record_id)
        requests.add_range(first, last)
        return list(range(first, last + 1)), set()
    members: list[int] = []
    alone: set[int] = set()

    def ids() -> Iterator[tuple[str, None]]:
        for rid, _ in shard_texts(s3, settings, shard):
            if goes_alone(rid):
                alone.add(record_index(rid))
            yield rid, None

    for request, _ in group_texts(ids(), requests.per_request):
        requests.add(request)
        members.extend(request.indexes)
    return members, alone


def process_shard(
    run: RunRef,
    shard: ShardRef,
    s3: Any,
    runtime: Any,
    store: StatusStore,
    settings: Settings,
    remaining_ms: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Judge one shard's results (a batch job's output, or on-demand calls) and list its retryable records.

    An on-demand shard works to the invocation's time: ``remaining_ms`` (the Lambda context's
    ``get_remaining_time_in_millis``, read once on entry, then counted down on ``clock``) less a margin for the
    writes (:class:`CallBudget`). Every record answered in that time is kept; the records there was no time to
    send are listed ``unsent`` for PlanRetries to send in the next round or, in the run's :func:`last_round`, end
    ``model_error`` (not answered before the time budget ran out).

    A shard already processed (a redriven map reruns its children) is not judged, or paid for, again; nor is one
    whose retries file an earlier invocation wrote before it could mark the shard processed.
    """
    budget = CallBudget.for_invocation(remaining_ms, clock) if shard.kind is not ShardKind.BATCH else None
    files = RunFiles(run.run_id)
    done = store.get_shard(run.run_id, shard.name) or {}
    if done.get("shard_status") == ShardStatus.PROCESSED.value:
        by_status = {k: int(v) for k, v in (done.get("by_status") or {}).items()}
        return {
            "shard": shard.name,
            "records": shard.records,
            "by_status": by_status,
            "retryable": 0,
            "unsent": 0,
            "again": True,
        }
    written = _written_retries(s3, settings, files, shard)
    if written is not None and written.counts is not None:
        return _mark_processed(store, run, shard, written, written.counts)
    task = run_task(s3, settings, files)
    matcher = LabelMatcher(task)
    requests = Requests(task.texts_per_request)
    members, sent_alone = _shard_members(s3, settings, shard, requests)
    member_set = set(members)
    bad: list[BadLine] = []
    manifest_tokens: tuple[int, int] | None = None
    unsent: list[int] = []
    if shard.kind is ShardKind.BATCH:
        answered: Iterable[ModelResult]
        answered, manifest_tokens = _batch_results(s3, settings, files, shard, bad)
        results = unpack_results(answered, requests.texts_of)
    else:
        lines = shard_lines(s3, settings, task, shard)
        answers = invoke_on_demand(runtime, task.model_id, task.invocation_type.value, lines, budget=budget)
        results = _noting_unsent(unpack_results(answers, requests.texts_of), unsent)
    judged = judge_results(results, matcher, task, known=member_set.__contains__)
    for index in members:
        if index not in judged.verdicts:
            judged.verdicts[index] = judge_missing()
    unsent = sorted(i for i in set(unsent) & member_set if judged.verdicts[i].status is RowStatus.MODEL_ERROR)
    if shard.round >= last_round(settings):
        unsent = []  # no round is left to send them in: their verdict stands, not answered in time
    for index in unsent:
        judged.verdicts[index] = judge_unsent()
    retry = sorted(i for i, v in judged.verdicts.items() if v.status is RowStatus.MODEL_ERROR and v.retryable)
    # Texts a packed request failed, or already sent alone, go alone again; the others may be packed again.
    alone = sorted(i for i in {*retry, *unsent} if judged.verdicts[i].alone or i in sent_alone)
    _write_lines(s3, settings.internal_bucket, results_key(files, shard), judged.sorted_lines())
    tokens_in, tokens_out = manifest_tokens or (judged.input_tokens, judged.output_tokens)
    counts = {
        "by_status": _count_statuses(judged),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "unreadable_lines": len(bad),
        "records": len(members),
    }
    retries = ShardRetries(retry=retry, unsent=unsent, counts=counts, alone=alone)
    put_bytes(s3, settings.internal_bucket, retries_key(files, shard), retries.to_json(), "application/json")
    return _mark_processed(store, run, shard, retries, counts)


def _noting_unsent(results: Iterable[ModelResult], unsent: list[int]) -> Iterator[ModelResult]:
    """The results as they come, noting the records the time budget left unsent."""
    for result in results:
        if result.error_code == NOT_SENT and result.record_id[1:].isdigit():
            unsent.append(record_index(result.record_id))
        yield result


def _mark_processed(
    store: StatusStore, run: RunRef, shard: ShardRef, retries: ShardRetries, counts: dict[str, Any]
) -> dict[str, Any]:
    by_status = {k: int(v) for k, v in counts["by_status"].items()}
    store.set_shard_status(
        run.run_id,
        shard.name,
        ShardStatus.PROCESSED,
        input_tokens=int(counts["input_tokens"]),
        output_tokens=int(counts["output_tokens"]),
        by_status=by_status,
        retryable=len(retries.retry),
        unsent=len(retries.unsent),
        unreadable_lines=int(counts["unreadable_lines"]),
    )
    return {
        "shard": shard.name,
        "records": int(counts["records"]),
        "by_status": by_status,
        "retryable": len(retries.retry),
        "unsent": len(retries.unsent),
    }


def _batch_results(
    s3: Any, settings: Settings, files: RunFiles, shard: ShardRef, bad: list[BadLine]
) -> tuple[list[ModelResult], tuple[int, int] | None]:
    results: list[ModelResult] = []
    tokens: tuple[int, int] | None = None
    for key in list_keys(s3, settings.internal_bucket, files.batch_output_prefix(shard.name)):
        if key.endswith("/" + MANIFEST_NAME):
            manifest = parse_manifest(read_bytes(s3, settings.internal_bucket, key))
            previous = tokens or (0, 0)
            tokens = (previous[0] + manifest.input_tokens, previous[1] + manifest.output_tokens)
        elif key.endswith(".out"):
            with open_object(s3, settings.internal_bucket, key) as stream:
                results.extend(read_output_lines(stream, key, bad))
    return results, tokens


def _count_statuses(judged: JudgedOutputs) -> dict[str, int]:
    counts: dict[str, int] = {}
    for verdict in judged.verdicts.values():
        counts[verdict.status.value] = counts.get(verdict.status.value, 0) + 1
    return counts


def _write_lines(s3: Any, bucket: str, key: str, lines: Iterable[str]) -> None:
    with io.TextIOWrapper(io.BufferedWriter(UploadFile(s3, bucket, key)), encoding="utf-8") as out:
        for line in lines:
            out.write(line)
            out.write("\n")


# --- PlanRetries ----------------------------------------------------------------------------------------


def plan_retries(run: RunRef, plan: RoundPlan, s3: Any, store: StatusStore, settings: Settings) -> RoundPlan:
    """Send the round's retryable records again (a batch job when enough, else on-demand), within
    ``max_retry_rounds``; otherwise their errors stand and the run moves on (``retry: false``).

    Records an on-demand shard left unsent (its invocation's time ran out) go too, and use none of their retries:
    a record goes again while it has been sent and failed in at most ``max_retry_rounds`` rounds, and the run
    has rounds left (:func:`last_round`).
    """
    files = RunFiles(run.run_id)
    retry: set[int] = set()
    unsent: set[int] = set()
    alone: set[int] = set()
    for shard in _round_shards(s3, plan):
        found = _read_retries(s3, settings, files, shard)
        retry.update(found.retry)
        unsent.update(found.unsent)
        alone.update(found.alone)
    next_round = plan.round + 1
    if retry and next_round > settings.max_retry_rounds:
        retry = _with_retries_left(s3, settings, files, plan.round, retry)
    send = retry | unsent
    if not send or next_round > last_round(settings):
        return plan.model_copy(update={"retry": False})
    task = run_task(s3, settings, files)
    encoder = BatchLineEncoder(task)
    texts_key = files.round_texts(next_round)
    sizes: list[tuple[str, int, int]] = []
    # The round's texts go to a keyed file of their own, so each retry shard is again a byte range of one file. A text
    # to send alone is keyed as such (:func:`.packing.alone_id`); the others are packed again, as in round 0.
    with (
        open_object(s3, settings.internal_bucket, files.texts) as texts,
        io.BufferedWriter(UploadFile(s3, settings.internal_bucket, texts_key)) as out,
    ):
        for rid, text, _ in text_lines(texts, keyed=False):
            index = record_index(rid)
            if index in send:
                key = alone_id(index) if index in alone else rid
                line = keyed_text_line(key, text)
                out.write(line)
                sizes.append((key, len(text), len(line)))
    items = list(_request_items(sizes, encoder, task.texts_per_request))
    shard_plan = plan_shards(len(items), task.batch)
    shards = cut_shards(items, shard_plan, task.batch, prefix=f"retry{next_round}-")
    refs = [_shard_ref(shard, next_round, texts_key, keyed=True) for shard in shards]
    return _publish_round(s3, store, settings, run, next_round, refs)


def _with_retries_left(s3: Any, settings: Settings, files: RunFiles, last: int, retry: set[int]) -> set[int]:
    """The records of ``retry`` sent and failed in at most ``max_retry_rounds`` of the rounds up to ``last`` (a
    record sent in every round has used all its retries by then; one left unsent in some round has not)."""
    failed: Counter[int] = Counter()
    for round_ in range(last + 1):
        items = json.loads(read_bytes(s3, settings.internal_bucket, files.round_plan(round_)))
        for item in items:
            found = _read_retries(s3, settings, files, ShardRef.model_validate(item))
            failed.update(i for i in found.retry if i in retry)
    return {i for i in retry if failed[i] <= settings.max_retry_rounds}
