"""ConvertInput and ShardRecords: the upload read and converted to records, the records cut into shards, and the
request lines each shard sends. Re-exported by :mod:`.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import PurePosixPath
from typing import IO, Any

from botocore.exceptions import ClientError

from .controls import control_key, dumps_controls, read_controls
from .cost import PriceTable
from .errors import (
    ControlFileError,
    InputChangedError,
    InputNotFoundError,
    InputTooLargeError,
    PriceNotFoundError,
    TaskError,
)
from .mapping import duplicate_id_examples
from .packing import Request, consecutive_requests, group_texts
from .pipeline import convert_file, escaped_texts, estimate_job_bytes, request_count, text_lines
from .records import BatchLineEncoder, CanonicalRecord, record_id, record_index
from .settings import Settings
from .sharding import Shard, ShardKind, cut_shards, plan_shards
from .spending import enforce, preflight
from .status import StatusStore
from .storage import (
    TASKS_PREFIX,
    RunFiles,
    UploadFile,
    open_object,
    open_range,
    put_bytes,
    read_bytes,
)
from .tasks import Task, bundled_task_names, load_task, parse_task
from .workflow import RoundPlan, RunRef, ShardRef, dump, key_candidates
from .write_behind import WriteBehind

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
    controls = bucket_controls(s3, settings, task, run.run_id)  # before the upload: a missing file fails at once
    files = RunFiles(run.run_id)
    bucket = settings.internal_bucket
    source, key = _open_upload(s3, run)
    # Each upload goes on from a thread of its own while the next rows are converted (a part upload waits on S3).
    records = WriteBehind(UploadFile(s3, bucket, files.records))
    texts = WriteBehind(UploadFile(s3, bucket, files.texts))
    rejects = WriteBehind(UploadFile(s3, bucket, files.rejects))
    with source, records as records_out, texts as texts_out, rejects as rejects_out:
        stats, layout = convert_file(
            source,
            task,
            records_out,
            texts_out,
            rejects_out,
            name=PurePosixPath(key).name,
            progress=partial(_refuse_beyond, run, settings.max_rows_per_run),
            controls=controls,
            controls_seed=run.run_id,
            size=run.size,
        )
    if controls:
        put_bytes(s3, bucket, files.controls, dumps_controls(controls), "application/x-ndjson")
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


def bucket_controls(s3: Any, settings: Settings, task: Task, run_id: str) -> list[CanonicalRecord]:
    """The control rows of a run (none when its task has no controls): ``controls.rows`` rows of the task's control
    file in the customer bucket, drawn with the run id as seed; :class:`ControlFileError` when it cannot be read."""
    if task.controls is None:
        return []
    key = control_key(task)
    try:
        stream = open_object(s3, settings.customer_bucket, key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        missing = "is not there" if code in {"NoSuchKey", "404"} else f"cannot be read ({code})"
        raise ControlFileError(
            f"task {task.name!r} mixes in control rows from s3://{settings.customer_bucket}/{key}, which {missing}; "
            "upload the control file there (or remove controls from the task) and upload the input again."
        ) from None
    with stream:
        return read_controls(
            stream, task, run_id, origin=f"s3://{settings.customer_bucket}/{key}", name=PurePosixPath(key).name
        )


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


def _refuse_beyond(run: RunRef, limit: int, stage: str, rows: int, total: int | None = None) -> None:
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
    for request, texts in _shard_requests(s3, settings, shard, task.texts_per_request):
        yield encoder.encode_request(request.record_id, texts)


def _shard_requests(
    s3: Any, settings: Settings, shard: ShardRef, per_request: int
) -> Iterator[tuple[Request, list[bytes]]]:
    """The requests of a shard with their escaped texts. A round-0 shard's texts are consecutive, so its requests are
    made without a text id for each (:func:`.packing.consecutive_requests`); a retry round's keyed texts are grouped by
    their ids, which say which go alone."""
    if shard.keyed:
        yield from group_texts(shard_texts(s3, settings, shard), per_request)
    elif shard.records:
        first = record_index(shard.first_record_id) if shard.first_record_id else 1
        with open_range(s3, settings.internal_bucket, shard.texts_key, shard.start, shard.end) as texts:
            yield from consecutive_requests(escaped_texts(texts), first, per_request)
