"""The steps of a run in the cloud: what each Lambda function does, on S3 and the status table.

Each function here is one state of the workflow (docs/workflow.md) and takes its clients as arguments, so
the handlers stay thin and the tests drive these with moto. They build on the same pieces as the local
``prepare``/``collect`` pipeline: readers and mapping, the batch line encoder and shard planning, output parsing
and verdicts. FinalizeRun, the record-ordered join and the outputs, is :mod:`.finalize`.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePosixPath
from typing import IO, Any

from botocore.exceptions import ClientError

from .bedrock import CallBudget, Submission, invoke_on_demand, submit_shard
from .cost import PriceTable
from .errors import InputChangedError, InputNotFoundError, InputTooLargeError, PriceNotFoundError, TaskError
from .labels import LabelMatcher
from .mapping import duplicate_id_examples
from .outputs import MANIFEST_NAME, BadLine, ModelResult, parse_manifest, read_output_lines
from .packing import Requests, alone_id, goes_alone, group_texts
from .pipeline import convert_file, estimate_job_bytes, keyed_text_line, request_count, text_lines
from .records import BatchLineEncoder, CanonicalRecord, RowStatus, record_id, record_index
from .results import (
    NOT_SENT,
    JudgedOutputs,
    judge_missing,
    judge_results,
    judge_unsent,
    unpack_results,
)
from .settings import Settings
from .sharding import Shard, ShardKind, cut_shards, plan_shards
from .spending import enforce, preflight
from .status import ShardStatus, StatusStore
from .storage import (
    TASKS_PREFIX,
    RunFiles,
    UploadFile,
    list_keys,
    open_object,
    open_range,
    put_bytes,
    read_bytes,
)
from .tasks import Task, bundled_task_names, load_task, parse_task
from .workflow import JobCheck, ObjectCreated, RoundPlan, RunRef, ShardRef, dump, key_candidates, run_id_for

_INPUT_PREFIX = "input_data/"

#: Rounds after ``max_retry_rounds`` in which records an on-demand shard's time budget left unsent may still be sent:
#: they were never tried, so they have used none of their retries. Each such round means a whole invocation's time
#: did not get through a shard of fewer records than a batch job's minimum; past this many, Bedrock is not serving
#: the account, and the records end ``model_error`` ("not answered before the time budget ran out").
UNSENT_EXTRA_ROUNDS = 3


def last_round(settings: Settings) -> int:
    """The last round a run can have: ``max_retry_rounds`` of retries, then rounds for unsent records only."""
    return settings.max_retry_rounds + UNSENT_EXTRA_ROUNDS


# --- RegisterRun ----------------------------------------------------------------------------------------


def task_name_for(key: str, default: str) -> str:
    """``input_data/<task>/<file>`` names its task; a file directly under ``input_data/`` gets the default."""
    parts = PurePosixPath(key.removeprefix(_INPUT_PREFIX)).parts
    return parts[0] if len(parts) > 1 else default


def run_id_of(event: ObjectCreated) -> str:
    """The run id of an upload event (the execution input): the same upload always gives the same run."""
    # The ETag tells one upload of a key from the next; without one, the event id still tells a redelivery.
    version = event.etag.strip('"') or f"event:{event.event_id or event.event_time or ''}"
    return run_id_for(event.bucket, event.object_key, version)


def register_run(event: ObjectCreated, store: StatusStore, settings: Settings, execution: str | None = None) -> RunRef:
    """Record the run of an upload; a second event for the same upload comes back ``duplicate``. A "folder" (a key
    ending in ``/``, as the S3 console makes them) is not a file: it comes back ``ignored``, with no run."""
    key = event.object_key
    run = RunRef(
        run_id=run_id_of(event),
        task=task_name_for(key, settings.default_task),
        bucket=event.bucket,
        key=key,
        etag=event.etag.strip('"'),
        version_id=event.object_version,
        size=event.size,
    )
    if key.endswith("/"):
        return run.model_copy(update={"ignored": f"{key} is a folder, not a file: there is nothing to classify."})
    if not store.register_run(run, execution):
        return run.model_copy(update={"duplicate": True})
    return run


# --- ConvertInput ---------------------------------------------------------------------------------------


def load_run_task(s3: Any, settings: Settings, name: str) -> Task:
    """A user's task from ``config/tasks/<name>.yaml`` in the customer bucket, else a bundled one; the stack's
    model id (when set) and batch limits apply to it."""
    try:
        text = read_bytes(s3, settings.customer_bucket, f"{TASKS_PREFIX}/{name}.yaml").decode("utf-8")
        task = parse_task(text, origin=f"s3://{settings.customer_bucket}/{TASKS_PREFIX}/{name}.yaml")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"NoSuchKey", "404"}:
            raise
        if name not in bundled_task_names():
            raise TaskError(
                f"unknown task {name!r}: put {TASKS_PREFIX}/{name}.yaml in the bucket, or upload under "
                f"input_data/<task>/ with one of {', '.join(bundled_task_names())}."
            ) from None
        task = load_task(name)
    update: dict[str, Any] = {"batch": settings.limits}
    if settings.model_id:
        update["model_id"] = settings.model_id
    task = task.model_copy(update=update)
    try:  # a model the cost accounting cannot price is refused before anything is spent on it
        PriceTable.load().price(task.model_id)
    except PriceNotFoundError as exc:
        raise TaskError(
            f"task {name!r} runs the model {task.model_id!r}, which this product cannot price: {exc}"
        ) from None
    return task


def convert_input(run: RunRef, s3: Any, store: StatusStore, settings: Settings) -> dict[str, Any]:
    """Stream the upload into canonical records, distinct texts and rejects in the internal bucket.

    An upload above ``max_upload_bytes``, or of more than ``max_rows_per_run`` rows, is refused with
    :class:`InputTooLargeError` before anything is paid for: one run's steps must each fit a 15-minute invocation.
    """
    if run.size > settings.max_upload_bytes:
        raise InputTooLargeError(
            f"{run.key} is {run.size:,} bytes, above the {settings.max_upload_bytes:,} bytes one run reads "
            "(MaxUploadBytes); split it into several files and upload each."
        )
    task = load_run_task(s3, settings, run.task)
    files = RunFiles(run.run_id)
    bucket = settings.internal_bucket
    source, key = _open_upload(s3, run)
    records = io.BufferedWriter(UploadFile(s3, bucket, files.records))
    texts = io.BufferedWriter(UploadFile(s3, bucket, files.texts))
    rejects = io.BufferedWriter(UploadFile(s3, bucket, files.rejects))
    with (
        source,
        io.TextIOWrapper(records, encoding="utf-8") as records_out,
        io.TextIOWrapper(texts, encoding="utf-8") as texts_out,
        io.TextIOWrapper(rejects, encoding="utf-8") as rejects_out,
    ):
        stats, layout = convert_file(
            source,
            task,
            records_out,
            texts_out,
            rejects_out,
            name=PurePosixPath(key).name,
            progress=partial(_refuse_beyond, run, settings.max_rows_per_run),
        )
    if stats.duplicate_id_hashes:
        with open_object(s3, bucket, files.records) as lines:
            ids = (CanonicalRecord.from_json(line).id for line in lines)
            stats.duplicate_id_examples = duplicate_id_examples(ids, stats.duplicate_id_hashes)
    put_bytes(s3, bucket, files.shared, json.dumps(sorted(stats.shared)).encode(), "application/json")
    put_bytes(s3, bucket, files.task, task.to_yaml().encode(), "application/yaml")
    plan = {
        "source": key,
        "task": task.name,
        "model_id": task.model_id,
        "invocation_type": task.invocation_type.value,
        **stats.to_dict(),
        "text_chars": stats.text_chars,
        "label_column": layout.label_column,
        "output_layout": layout.to_dict(),
    }
    put_bytes(s3, bucket, files.plan, json.dumps(plan, ensure_ascii=False).encode(), "application/json")
    counts = {k: plan[k] for k in ("rows", "invalid", "distinct_texts", "duplicate_texts", "truncated", "labelled")}
    store.update_run(run.run_id, counts=counts, model_id=task.model_id, task_version=task.version_id)
    return counts


def _open_upload(s3: Any, run: RunRef) -> tuple[IO[bytes], str]:
    """The upload as it was uploaded, and the key it is stored under: its version when the bucket keeps versions,
    and only while its ETag is the event's, so a run never classifies a later upload of the same key (that one has
    a run of its own). The event's key is tried as given, then decoded (:func:`key_candidates`)."""
    for key in key_candidates(run.key):
        try:
            return open_object(s3, run.bucket, key, version_id=run.version_id, if_match=run.etag or None), key
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchKey", "NoSuchVersion", "404"}:
                continue
            if code in {"PreconditionFailed", "412"}:
                raise InputChangedError(
                    f"s3://{run.bucket}/{key} was replaced by a newer upload before this one could be read; the "
                    "newer upload has a run of its own, so upload this file again under another name to classify it."
                ) from None
            raise
    raise InputNotFoundError(
        f"s3://{run.bucket}/{run.key} is not there any more (deleted before it could be read); upload it again."
    )


def _refuse_beyond(run: RunRef, limit: int, stage: str, rows: int) -> None:
    """ConvertInput's progress: stop reading as soon as the upload has more rows than one run handles."""
    if rows > limit:
        raise InputTooLargeError(
            f"{run.key} has more than {limit:,} rows, the most one run handles (MaxRowsPerRun); split it into "
            "several files and upload each."
        )


def run_plan(s3: Any, settings: Settings, files: RunFiles) -> dict[str, Any]:
    """What ConvertInput learnt of the run's input (counts, label column, output layout)."""
    plan: dict[str, Any] = json.loads(read_bytes(s3, settings.internal_bucket, files.plan))
    return plan


def run_task(s3: Any, settings: Settings, files: RunFiles) -> Task:
    """The task snapshot ConvertInput kept for the run (the same task for every later step)."""
    return parse_task(read_bytes(s3, settings.internal_bucket, files.task).decode("utf-8"), origin=files.task)


# --- ShardRecords ---------------------------------------------------------------------------------------


def shard_records(run: RunRef, s3: Any, store: StatusStore, settings: Settings) -> RoundPlan:
    """Plan the distinct texts into batch jobs (and an on-demand remainder) and list them in S3 for ProcessShards.

    Only the plan is written here: each shard's job input is written by its own SubmitJob, so the work of one
    invocation does not grow with the upload.
    """
    files = RunFiles(run.run_id)
    plan = run_plan(s3, settings, files)
    task = run_task(s3, settings, files)
    encoder = BatchLineEncoder(task)
    k = task.texts_per_request
    job_bytes = estimate_job_bytes(plan["distinct_texts"], plan["text_chars"], encoder, k)
    shard_plan = plan_shards(request_count(plan["distinct_texts"], k), task.batch, job_bytes)
    with open_object(s3, settings.internal_bucket, files.texts) as texts:
        sizes = ((rid, len(text), size) for rid, text, size in text_lines(texts, keyed=False))
        shards = cut_shards(_request_items(sizes, encoder, k), shard_plan, task.batch)
    requests = sum(shard.records for shard in shards) or 1
    on_demand = sum(shard.records for shard in shards if shard.kind is ShardKind.ON_DEMAND)
    found = preflight(task, plan, on_demand / requests, settings.max_run_cost_usd)
    store.update_run(run.run_id, preflight=found.to_dict())
    enforce(found, task.model_id)  # above the cap: nothing is listed, so nothing is submitted
    refs = [_shard_ref(shard, 0, files.texts, keyed=False) for shard in shards]
    round_plan = _publish_round(s3, store, settings, run, 0, refs)
    store.update_run(run.run_id, shards=round_plan.shards, batch_jobs=round_plan.batch_jobs)
    return round_plan


def _request_items(
    sizes: Iterable[tuple[str, int, int]], encoder: BatchLineEncoder, texts_per_request: int
) -> Iterator[tuple[str, str, int, int, int]]:
    """The requests texts make, for :func:`cut_shards`, from ``(text id, bytes of its escaped text, bytes of its line
    in the texts file)``: ``(first text's record id, last's, texts, bytes of the batch line, bytes of the lines)``."""
    rid_bytes = len(record_id(1))
    overheads: dict[int, int] = {}
    grouped = group_texts(((rid, (text, line)) for rid, text, line in sizes), texts_per_request)
    for request, parts in grouped:
        count = len(request.indexes)
        if count not in overheads:
            overheads[count] = encoder.request_overhead(count) + rid_bytes
        yield (
            record_id(request.indexes[0]),
            record_id(request.indexes[-1]),
            count,
            overheads[count] + sum(text for text, _ in parts),
            sum(line for _, line in parts),
        )


def _shard_ref(shard: Shard, round_: int, texts_key: str, *, keyed: bool) -> ShardRef:
    return ShardRef(
        name=shard.name,
        kind=shard.kind,
        records=shard.records,
        round=round_,
        texts_key=texts_key,
        start=shard.start,
        end=shard.end,
        keyed=keyed,
        first_record_id=shard.first_record_id,
        last_record_id=shard.last_record_id,
    )


def _publish_round(
    s3: Any, store: StatusStore, settings: Settings, run: RunRef, round_: int, refs: list[ShardRef]
) -> RoundPlan:
    """Queue a round's shards in the status table and list them in S3 as the ProcessShards map's items."""
    files = RunFiles(run.run_id)
    key = files.round_plan(round_)
    items = json.dumps([dump(ref) for ref in refs], separators=(",", ":"))
    put_bytes(s3, settings.internal_bucket, key, items.encode(), "application/json")
    store.add_shards(run.run_id, refs)
    return RoundPlan(
        round=round_,
        bucket=settings.internal_bucket,
        key=key,
        shards=len(refs),
        batch_jobs=sum(1 for ref in refs if ref.kind is ShardKind.BATCH),
        max_concurrency=settings.limits.max_concurrent_jobs,
        retry=round_ > 0,
    )


def _round_shards(s3: Any, plan: RoundPlan) -> list[ShardRef]:
    return [ShardRef.model_validate(item) for item in json.loads(read_bytes(s3, plan.bucket, plan.key))]


def shard_texts(s3: Any, settings: Settings, shard: ShardRef) -> Iterator[tuple[str, bytes]]:
    """``(record id, JSON-escaped text)`` of a shard, read from its range of its texts file (in a retry round, the id
    of a text sent alone starts with ``S``: :func:`.packing.alone_id`)."""
    if shard.records == 0:
        return
    first = record_index(shard.first_record_id) if shard.first_record_id else 1
    with open_range(s3, settings.internal_bucket, shard.texts_key, shard.start, shard.end) as texts:
        for rid, text, _ in text_lines(texts, keyed=shard.keyed, first_index=first):
            yield rid, text


def shard_lines(s3: Any, settings: Settings, task: Task, shard: ShardRef) -> Iterator[bytes]:
    """The batch input lines of a shard (its job input, or its on-demand requests): its texts in order, up to the
    task's ``texts_per_request`` in each request (:func:`.packing.group_texts`)."""
    encoder = BatchLineEncoder(task)
    for request, escaped in group_texts(shard_texts(s3, settings, shard), task.texts_per_request):
        yield encoder.encode_request(request.record_id, escaped)


# --- SubmitJob ------------------------------------------------------------------------------------------


def submit_job(run: RunRef, shard: ShardRef, s3: Any, bedrock: Any, store: StatusStore, settings: Settings) -> JobCheck:
    """Write a batch shard's job input and create its job, idempotently (a shard never gets a second job).

    A quota refusal leaves the shard queued: CheckJob submits it on a later turn of the wait/poll loop.
    """
    files = RunFiles(run.run_id)
    task = run_task(s3, settings, files)
    item = store.get_shard(run.run_id, shard.name) or {}
    if not item.get("job_arn"):
        with io.BufferedWriter(UploadFile(s3, settings.internal_bucket, files.job_input(shard.name))) as job_input:
            for line in shard_lines(s3, settings, task, shard):
                job_input.write(line)
    outcome = submit_shard(
        bedrock, store, settings, run, shard, settings.model_id or task.model_id, task.invocation_type.value
    )
    status = ShardStatus.QUEUED if outcome.outcome is Submission.QUEUED else ShardStatus.SUBMITTED
    return JobCheck(status=status.value, wait_seconds=settings.poll_min_seconds)


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
