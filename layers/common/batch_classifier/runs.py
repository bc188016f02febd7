"""The steps of a run in the cloud: what each Lambda function does, on S3 and the status table.

Each function here is one state of the workflow (docs/workflow.md) and takes its clients as arguments, so
the handlers stay thin and the tests drive these with moto. They build on the same pieces as the local
``prepare``/``collect`` pipeline: readers and mapping, the batch line encoder and shard writer, output parsing,
verdicts and the record-ordered join.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from .cost import PriceTable
from .errors import TaskError
from .formats import FileFormat
from .labels import LabelMatcher
from .mapping import OutputLayout, duplicate_id_examples
from .outputs import MANIFEST_NAME, BadLine, ModelResult, parse_manifest, read_output_lines
from .pipeline import convert_file, distinct_texts, estimate_job_bytes
from .records import BatchLineEncoder, CanonicalRecord, RowStatus, record_index
from .results import (
    JudgedOutputs,
    SummaryBuilder,
    cost_summary,
    join_verdicts,
    judge_missing,
    judge_results,
    merge_verdicts,
    output_columns,
    output_row,
    read_verdicts,
)
from .settings import Settings
from .sharding import Shard, ShardKind, plan_shards, write_shards
from .status import RunStatus, ShardStatus, StatusStore
from .storage import (
    TASKS_PREFIX,
    RunFiles,
    UploadFile,
    analytics_key,
    list_keys,
    open_object,
    output_prefix,
    put_bytes,
    read_bytes,
)
from .tasks import Task, bundled_task_names, load_task, parse_task
from .workflow import ObjectCreated, Poll, RunRef, Sharding, ShardRef, run_id_for
from .writers import write_table

_INPUT_PREFIX = "input_data/"


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
    """Record the run of an upload; a second event for the same upload comes back ``duplicate``."""
    key = event.object_key
    run = RunRef(
        run_id=run_id_of(event),
        task=task_name_for(key, settings.default_task),
        bucket=event.bucket,
        key=key,
        etag=event.etag.strip('"'),
        size=event.size,
    )
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
    return task.model_copy(update=update)


def convert_input(run: RunRef, s3: Any, store: StatusStore, settings: Settings) -> dict[str, Any]:
    """Stream the upload into canonical records, distinct texts and rejects in the internal bucket."""
    task = load_run_task(s3, settings, run.task)
    files = RunFiles(run.run_id)
    bucket = settings.internal_bucket
    source = open_object(s3, run.bucket, run.key)
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
            source, task, records_out, texts_out, rejects_out, name=PurePosixPath(run.key).name
        )
    if stats.duplicate_id_hashes:
        with open_object(s3, bucket, files.records) as lines:
            ids = (CanonicalRecord.from_json(line).id for line in lines)
            stats.duplicate_id_examples = duplicate_id_examples(ids, stats.duplicate_id_hashes)
    put_bytes(s3, bucket, files.shared, json.dumps(sorted(stats.shared)).encode(), "application/json")
    put_bytes(s3, bucket, files.task, task.to_yaml().encode(), "application/yaml")
    plan = {
        "source": run.key,
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
    store.update_run(run.run_id, counts=counts, model_id=task.model_id)
    return counts


def _load_plan(s3: Any, settings: Settings, files: RunFiles) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(read_bytes(s3, settings.internal_bucket, files.plan))
    return plan


def _load_task(s3: Any, settings: Settings, files: RunFiles) -> Task:
    return parse_task(read_bytes(s3, settings.internal_bucket, files.task).decode("utf-8"), origin=files.task)


# --- ShardRecords ---------------------------------------------------------------------------------------


def shard_records(run: RunRef, s3: Any, store: StatusStore, settings: Settings) -> tuple[Sharding, Poll]:
    """Cut the distinct texts into batch job inputs (and an on-demand remainder) and queue them."""
    files = RunFiles(run.run_id)
    plan = _load_plan(s3, settings, files)
    task = _load_task(s3, settings, files)
    encoder = BatchLineEncoder(task)
    job_bytes = estimate_job_bytes(plan["distinct_texts"], plan["text_chars"], encoder)
    shard_plan = plan_shards(plan["distinct_texts"], task.batch, job_bytes)

    def open_shard(shard: Shard) -> UploadFile:
        key = files.job_input(shard.name) if shard.kind is ShardKind.BATCH else files.on_demand_input(shard.name)
        return UploadFile(s3, settings.internal_bucket, key)

    with open_object(s3, settings.internal_bucket, files.texts) as texts:
        shards = write_shards(distinct_texts(texts), shard_plan, encoder, task.batch, open_shard)
    refs = [ShardRef(name=s.name, kind=s.kind, records=s.records, round=0) for s in shards]
    for shard in shards:
        _save_shard_spec(s3, settings, files, shard, round_=0, members=None)
    store.add_shards(run.run_id, refs)
    store.update_run(run.run_id, shards=len(refs), batch_jobs=sum(1 for r in refs if r.kind is ShardKind.BATCH))
    sharding = Sharding(round=0, shards=refs, batch_shards=[r for r in refs if r.kind is ShardKind.BATCH])
    return sharding, Poll(wait_seconds=settings.poll_min_seconds)


def _save_shard_spec(
    s3: Any, settings: Settings, files: RunFiles, shard: Shard, round_: int, members: list[int] | None
) -> None:
    spec = {**shard.to_dict(), "round": round_, "members": members}
    put_bytes(s3, settings.internal_bucket, files.key(f"shards/{shard.name}.json"), json.dumps(spec).encode())


def _shard_members(s3: Any, settings: Settings, files: RunFiles, name: str) -> list[int]:
    spec = json.loads(read_bytes(s3, settings.internal_bucket, files.key(f"shards/{name}.json")))
    if spec.get("members") is not None:
        return list(spec["members"])
    if not spec.get("first_record_id"):
        return []
    return list(range(record_index(spec["first_record_id"]), record_index(spec["last_record_id"]) + 1))


# --- ProcessResults -------------------------------------------------------------------------------------


def results_key(files: RunFiles, shard: ShardRef) -> str:
    """Results files sort by round, so a retry's verdicts come after (and can replace) the first attempt's."""
    return files.key(f"results/round-{shard.round:02d}/{shard.name}.jsonl")


def retries_key(files: RunFiles, shard: ShardRef) -> str:
    return files.key(f"retries/round-{shard.round:02d}/{shard.name}.json")


def process_shard(
    run: RunRef,
    shard: ShardRef,
    s3: Any,
    runtime: Any,
    store: StatusStore,
    settings: Settings,
) -> dict[str, Any]:
    """Judge one shard's results (a batch job's output, or on-demand calls) and list its retryable records."""
    files = RunFiles(run.run_id)
    task = _load_task(s3, settings, files)
    matcher = LabelMatcher(task)
    members = _shard_members(s3, settings, files, shard.name)
    member_set = set(members)
    bad: list[BadLine] = []
    manifest_tokens: tuple[int, int] | None = None
    if shard.kind is ShardKind.BATCH:
        results, manifest_tokens = _batch_results(s3, settings, files, shard, bad)
    else:
        from .bedrock import invoke_on_demand  # noqa: PLC0415 - only the on-demand path needs it

        with open_object(s3, settings.internal_bucket, files.on_demand_input(shard.name)) as lines:
            results = list(invoke_on_demand(runtime, task.model_id, task.invocation_type.value, lines))
    judged = judge_results(results, matcher, task, known=member_set.__contains__)
    for index in members:
        if index not in judged.verdicts:
            judged.verdicts[index] = judge_missing()
    retry = sorted(i for i, v in judged.verdicts.items() if v.status is RowStatus.MODEL_ERROR and v.retryable)
    _write_lines(s3, settings.internal_bucket, results_key(files, shard), judged.sorted_lines())
    put_bytes(s3, settings.internal_bucket, retries_key(files, shard), json.dumps(retry).encode())
    tokens_in, tokens_out = manifest_tokens or (judged.input_tokens, judged.output_tokens)
    by_status = _count_statuses(judged)
    store.set_shard_status(
        run.run_id,
        shard.name,
        ShardStatus.PROCESSED,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        by_status=by_status,
        retryable=len(retry),
        unreadable_lines=len(bad),
    )
    return {"shard": shard.name, "records": len(members), "by_status": by_status, "retryable": len(retry)}


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


def plan_retries(run: RunRef, sharding: Sharding, s3: Any, store: StatusStore, settings: Settings) -> Sharding:
    """Send the round's retryable records again (a batch job when enough, else on-demand), within
    ``max_retry_rounds``; otherwise their errors stand and the run moves on."""
    files = RunFiles(run.run_id)
    retry: list[int] = []
    for shard in sharding.shards:
        retry.extend(json.loads(read_bytes(s3, settings.internal_bucket, retries_key(files, shard))))
    next_round = sharding.round + 1
    if not retry or next_round > settings.max_retry_rounds:
        return Sharding(round=sharding.round, retry=False)
    retry.sort()
    task = _load_task(s3, settings, files)
    encoder = BatchLineEncoder(task)
    shard_plan = plan_shards(len(retry), task.batch)
    wanted = set(retry)

    def open_shard(shard: Shard) -> UploadFile:
        key = files.job_input(shard.name) if shard.kind is ShardKind.BATCH else files.on_demand_input(shard.name)
        return UploadFile(s3, settings.internal_bucket, key)

    with open_object(s3, settings.internal_bucket, files.texts) as texts:
        items = ((rid, text) for rid, text in distinct_texts(texts) if record_index(rid) in wanted)
        shards = write_shards(items, shard_plan, encoder, task.batch, open_shard, prefix=f"retry{next_round}-")
    refs = []
    start = 0
    for written in shards:
        members = retry[start : start + written.records]
        start += written.records
        _save_shard_spec(s3, settings, files, written, round_=next_round, members=members)
        refs.append(ShardRef(name=written.name, kind=written.kind, records=written.records, round=next_round))
    store.add_shards(run.run_id, refs)
    return Sharding(
        round=next_round,
        shards=refs,
        batch_shards=[r for r in refs if r.kind is ShardKind.BATCH],
        retry=True,
    )


# --- FinalizeRun ----------------------------------------------------------------------------------------


def finalize_run(
    run: RunRef, s3: Any, store: StatusStore, settings: Settings, prices: PriceTable | None = None
) -> dict[str, Any]:
    """Merge every shard's verdicts in input order; write the results, summary, rejects and analytics."""
    files = RunFiles(run.run_id)
    plan = _load_plan(s3, settings, files)
    task = _load_task(s3, settings, files)
    layout = OutputLayout.from_dict(plan["output_layout"])
    shared = set(json.loads(read_bytes(s3, settings.internal_bucket, files.shared)))
    labelled = plan.get("labelled", 0) > 0
    columns = output_columns(layout, labelled)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    prefix = output_prefix(run.key, run.run_id, day)
    stem = PurePosixPath(run.key).stem
    summary = SummaryBuilder(categories=task.category_names)
    outputs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="finalize-") as scratch:
        rows_file, analytics_file = Path(scratch) / "rows.jsonl", Path(scratch) / "analytics.jsonl"
        _join_run(s3, settings, files, layout, shared, summary, rows_file, analytics_file, run, task)
        for fmt in settings.output_formats:
            local = Path(scratch) / f"{stem}.{fmt.value}"
            with rows_file.open("rb") as rows:
                write_table(local, columns, (json.loads(line) for line in rows), fmt)
            key = f"{prefix}{local.name}"
            s3.upload_file(str(local), run.bucket, key)
            outputs.append(key)
            local.unlink()
        _write_analytics(s3, settings, analytics_file, analytics_key(day, run.run_id))
    tokens = _run_tokens(store, run.run_id)
    result = summary.to_dict()
    result.update(cost_summary(tokens, task.model_id, prices or PriceTable.load()))
    result.update({"run_id": run.run_id, "task": task.name, "model_id": task.model_id, "source": run.key})
    if plan.get("invalid"):
        rejects_key = f"{prefix}rejects.csv"
        _write_rejects(s3, settings, files, run.bucket, rejects_key)
        outputs.append(rejects_key)
    summary_key = f"{prefix}summary.json"
    result["outputs"] = outputs
    put_bytes(
        s3, run.bucket, summary_key, json.dumps(result, indent=2, ensure_ascii=False).encode(), "application/json"
    )
    store.finish_run(
        run.run_id,
        RunStatus.SUCCEEDED,
        output_prefix=prefix,
        by_status=result["by_status"],
        tokens={"input": result["tokens"]["input"], "output": result["tokens"]["output"]},
        cost_usd=result["cost_usd"],
        accuracy=result.get("evaluation", {}).get("accuracy"),
    )
    return {
        "run_id": run.run_id,
        "status": RunStatus.SUCCEEDED.value,
        "rows": result["rows"],
        "by_status": result["by_status"],
        "outputs": [f"s3://{run.bucket}/{k}" for k in outputs],
        "summary": f"s3://{run.bucket}/{summary_key}",
    }


def _join_run(
    s3: Any,
    settings: Settings,
    files: RunFiles,
    layout: OutputLayout,
    shared: set[int],
    summary: SummaryBuilder,
    rows_file: Path,
    analytics_file: Path,
    run: RunRef,
    task: Task,
) -> None:
    """One pass over the records and the merged verdicts: the output rows and the analytics rows, spilled to
    local JSON Lines (so every output format is written from them without reading S3 again), and the summary."""
    bucket = settings.internal_bucket
    keys = sorted(k for k in list_keys(s3, bucket, files.results_prefix) if k.endswith(".jsonl"))
    processed_at = datetime.now(UTC).isoformat(timespec="seconds")
    with ExitStack() as stack:
        streams = [stack.enter_context(open_object(s3, bucket, key)) for key in keys]
        records_stream = stack.enter_context(open_object(s3, bucket, files.records))
        rows_out = stack.enter_context(rows_file.open("w", encoding="utf-8"))
        analytics_out = stack.enter_context(analytics_file.open("w", encoding="utf-8"))
        records = (CanonicalRecord.from_json(line) for line in records_stream)
        verdicts = merge_verdicts(read_verdicts(stream) for stream in streams)
        for record, verdict in join_verdicts(records, verdicts, shared):
            row = output_row(record, verdict, layout)
            summary.add(record, row)
            rows_out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            analytics = _analytics_row(run, task, record, row, processed_at)
            analytics_out.write(json.dumps(analytics, ensure_ascii=False, default=str) + "\n")


ANALYTICS_COLUMNS = (
    "run_id",
    "task",
    "source_key",
    "row_id",
    "class",
    "rationale",
    "status",
    "match",
    "label",
    "correct",
    "truncated",
    "model_id",
    "processed_at",
)


def _analytics_row(
    run: RunRef, task: Task, record: CanonicalRecord, row: dict[str, Any], processed_at: str
) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "task": task.name,
        "source_key": run.key,
        "row_id": record.id,
        "class": row.get("class"),
        "rationale": row.get("rationale"),
        "status": row["status"],
        "match": row.get("match"),
        "label": record.label,
        "correct": row.get("correct"),
        "truncated": record.truncated,
        "model_id": task.model_id,
        "processed_at": processed_at,
    }


def _write_analytics(s3: Any, settings: Settings, rows_file: Path, key: str) -> None:
    parquet = rows_file.with_suffix(".parquet")
    with rows_file.open("rb") as lines:
        write_table(parquet, ANALYTICS_COLUMNS, (json.loads(line) for line in lines), FileFormat.PARQUET)
    s3.upload_file(str(parquet), settings.internal_bucket, key)
    os.unlink(parquet)


def _write_rejects(s3: Any, settings: Settings, files: RunFiles, bucket: str, key: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(["row", "id", "reason"])
    with open_object(s3, settings.internal_bucket, files.rejects) as rejects:
        for line in rejects:
            reject = json.loads(line)
            writer.writerow([reject["row"], reject["id"], reject["reason"]])
    put_bytes(s3, bucket, key, text.getvalue().encode("utf-8-sig"), "text/csv")


def _run_tokens(store: StatusStore, run_id: str) -> dict[str, dict[str, int]]:
    tokens = {kind.value: {"input": 0, "output": 0} for kind in ShardKind}
    for item in store.shards(run_id):
        kind = tokens[str(item.get("kind", ShardKind.BATCH.value))]
        kind["input"] += int(item.get("input_tokens", 0))
        kind["output"] += int(item.get("output_tokens", 0))
    return tokens
