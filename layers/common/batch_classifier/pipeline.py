"""The two halves of a run on local files: prepare (input → batch job files) and collect (outputs → results).

The workflow's Lambda functions run the same steps against S3; this module is the manual workflow users
follow today (prepare the JSONL, submit it by hand, collect and analyse the output), and the reference
for what each step produces. A prepared folder holds:

- ``records.jsonl``: one canonical record per input row, in input order;
- ``texts.jsonl``: each distinct text once, as a JSON string, in record-id order;
- ``rejects.jsonl``: the rows that cannot be classified, with the reason;
- ``jobs/*.jsonl``: one Bedrock batch input file per job, exactly as it would be uploaded (a record is a request
  of one text, or of up to the task's ``texts_per_request`` texts, see :mod:`.packing`);
- ``on-demand/*.jsonl``: records too few for a job, in the same line format, for direct model calls;
- ``shared.json``: the record ids (as numbers) of texts that more than one row carries;
- ``task.yaml`` and ``plan.json``: the task as used and the plan (counts, shards, estimate).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Protocol

from .controls import (
    CONTROLS_NAME,
    ControlTally,
    controls_from_plan,
    load_controls,
    local_controls,
    mix_controls,
    write_controls,
)
from .cost import CostEstimate, PriceTable, estimate_cost, tokens_for_chars
from .errors import BatchClassifierError, EmptyInputError
from .labels import LabelMatcher
from .mapping import Converter, ConvertStats, OutputLayout, RecordMapper, duplicate_id_examples
from .outputs import MANIFEST_NAME, BadLine, Manifest, parse_manifest, read_output_lines
from .packing import Requests, consecutive_batches
from .prompts import PackedPrompt, render_packed_prompt, render_prompt
from .readers import Table, open_table
from .readers.table import Block
from .records import BatchLineEncoder, CanonicalRecord, record_id, record_index
from .results import (
    JudgedOutputs,
    SummaryBuilder,
    cost_summary,
    join_verdicts,
    judge_results,
    merge_verdicts,
    output_columns,
    output_row,
    read_verdicts,
    unpack_results,
)
from .sharding import Shard, ShardKind, plan_shards, write_shards
from .tasks import SUGGESTED_TEXTS_PER_REQUEST, Task, parse_task
from .write_behind import WriteBehind
from .writers import write_table

RECORDS = "records.jsonl"
TEXTS = "texts.jsonl"
REJECTS = "rejects.jsonl"
PLAN = "plan.json"
TASK = "task.yaml"
JOBS_DIR = "jobs"
ON_DEMAND_DIR = "on-demand"
SUMMARY = "summary.json"
SHARED = "shared.json"

# Verdicts collect keeps in memory before it spills them to scratch files (about 40 MB).
HELD_VERDICTS = 200_000
# Tokens a reply takes: a label and a sentence or two of explanation.
ESTIMATED_OUTPUT_TOKENS = 60


class Progress(Protocol):
    """A progress callback: ``done`` units of ``stage``, of ``total`` when known (or estimated)."""

    def __call__(self, stage: str, done: int, total: int | None = None, /) -> None: ...


class Writable(Protocol):
    """Where lines go: a file opened for binary writing, an S3 upload, a :class:`.write_behind.WriteBehind`."""

    def write(self, data: bytes, /) -> int: ...


class RowWriter(Protocol):
    """Writes a results file's rows: the output ``columns``, then the rows (dicts by column) as they are joined."""

    def __call__(self, columns: list[str], rows: Iterator[dict[str, Any]], /) -> object: ...


def _quiet(stage: str, done: int, total: int | None = None) -> None:
    """The default progress callback: says nothing."""


def expected_rows(table: Table, rows: int) -> int | None:
    """The rows a table will give, estimated from the part of the input ``rows`` rows took; None when unknown."""
    fraction = table.fraction_read()
    return round(rows / fraction) if fraction and rows else None


class PreparedRunError(BatchClassifierError):
    """A prepared folder is incomplete or from an incompatible version."""


@dataclass
class InputOptions:
    """How to read the input file (all optional: detected when not given)."""

    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    records_key: str | None = None

    def open(
        self, source: str | os.PathLike[str] | IO[bytes], name: str | None = None, size: int | None = None
    ) -> Table:
        """``source`` opened for reading with these options (:func:`.readers.open_table`)."""
        return open_table(
            source,
            name=name,
            size=size,
            encoding=self.encoding,
            delimiter=self.delimiter,
            sheet=self.sheet,
            records_key=self.records_key,
        )


def convert_file(
    source: str | os.PathLike[str] | IO[bytes],
    task: Task,
    records_out: Writable,
    texts_out: Writable,
    rejects_out: Writable,
    *,
    name: str | None = None,
    options: InputOptions | None = None,
    progress: Progress = _quiet,
    controls: Sequence[CanonicalRecord] = (),
    controls_seed: str = "",
    size: int | None = None,
) -> tuple[ConvertStats, OutputLayout]:
    """Read an input file and write canonical records, distinct texts and rejects (the ConvertInput step).

    ``controls``: control records to mix in (:mod:`.controls`; seeded by ``controls_seed``), their texts written
    among the input's; they get their record ids here and are not written to ``records_out``. ``size``: the bytes of
    a ``source`` stream, to tell how much of it was read."""
    options = options or InputOptions()
    stats = ConvertStats()
    with options.open(source, name, size) as table:
        converter = Converter(RecordMapper(task.input, table.columns, source=repr(table.name)), stats)
        items: Iterable[Block | CanonicalRecord] = (
            mix_controls(table.blocks(), controls, table.fraction_read, controls_seed) if controls else table.blocks()
        )
        for item in items:
            if isinstance(item, CanonicalRecord):
                texts_out.write(converter.control(item))
                continue
            before = stats.rows
            lines = converter.block(item)
            records_out.write(b"".join(lines.records))
            texts_out.write(b"".join(lines.texts))
            if lines.rejects:
                rejects_out.write(b"".join(lines.rejects))
            if stats.rows // 10_000 != before // 10_000:
                progress("reading rows", stats.rows, expected_rows(table, stats.rows))
        converter.finish()
        if stats.rows == 0:
            raise EmptyInputError(f"{table.name!r} has a header but no rows; there is nothing to classify.")
        progress("reading rows", stats.rows, expected_rows(table, stats.rows))
    return stats, converter.mapper.layout


def escaped_texts(texts: IO[bytes]) -> Iterator[bytes]:
    """The JSON-escaped texts of a texts file, in order (line k holds the text of record id k)."""
    return chain.from_iterable(escaped_text_lists(texts))


def escaped_text_lists(texts: IO[bytes]) -> Iterator[list[bytes]]:
    """:func:`escaped_texts` a list at a time: the file is split a megabyte at a time (``"\\n"`` occurs only between
    two of its lines, as a JSON string escapes quotes and line ends)."""
    while chunk := texts.read(_READ_AHEAD):
        if not chunk.endswith(b"\n"):
            chunk += texts.readline()
        yield chunk[1:-2].split(b'"\n"')


_READ_AHEAD = 1 << 20


def text_lines(texts: IO[bytes], *, keyed: bool, first_index: int = 1) -> Iterator[tuple[str, bytes, int]]:
    """``(record id, JSON-escaped text, bytes of the line)`` from a texts file or a range of one.

    A run's ``texts.jsonl`` holds one JSON string a line, the text of record ``first_index`` first; a keyed
    file (a retry round's texts) starts each line with the record id and a tab.
    """
    for index, line in enumerate(texts, start=first_index):
        if keyed:
            rid, _, text = line.partition(b"\t")
            yield rid.decode("ascii"), text.rstrip(b"\r\n")[1:-1], len(line)
        else:
            yield record_id(index), line.rstrip(b"\r\n")[1:-1], len(line)


def keyed_text_line(rid: str, escaped: bytes) -> bytes:
    """A line of a keyed texts file (see :func:`text_lines`)."""
    return b"".join((rid.encode("ascii"), b'\t"', escaped, b'"\n'))


def request_count(distinct: int, texts_per_request: int) -> int:
    """Records (model requests) that ``distinct`` texts make, ``texts_per_request`` to a request."""
    return math.ceil(distinct / texts_per_request)


def _request_sizes(distinct: int, texts_per_request: int) -> list[tuple[int, int]]:
    """``(texts in a request, how many such requests)`` for ``distinct`` texts, ``texts_per_request`` at a time."""
    full, rest = divmod(distinct, texts_per_request)
    return [(texts_per_request, full)] + ([(rest, 1)] if rest else [])


def estimate_job_bytes(distinct: int, text_chars: int, encoder: BatchLineEncoder, texts_per_request: int = 1) -> int:
    """Bytes of all batch input lines, near enough to plan shards by (escaping adds a little)."""
    rid = len(record_id(1))
    lines = sum(n * (encoder.request_overhead(size) + rid) for size, n in _request_sizes(distinct, texts_per_request))
    return lines + text_chars


@dataclass
class PreparedRun:
    """A prepared folder: its task, plan and paths."""

    folder: Path
    task: Task
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout.from_dict(self.plan["output_layout"])

    @property
    def shards(self) -> list[Shard]:
        return [Shard.from_dict(s) for s in self.plan["shards"]]

    @classmethod
    def load(cls, folder: Path) -> PreparedRun:
        try:
            plan = json.loads((folder / PLAN).read_text(encoding="utf-8"))
            task = parse_task((folder / TASK).read_text(encoding="utf-8"), origin=f"{folder / TASK}")
        except FileNotFoundError as exc:
            raise PreparedRunError(
                f"{folder} is not a prepared folder ({Path(exc.filename).name} is missing); "
                "run `batch-classifier prepare` first."
            ) from None
        return cls(folder=folder, task=task, plan=plan)

    @property
    def shared(self) -> set[int]:
        """Indices of the texts more than one row carries."""
        return set(json.loads((self.folder / SHARED).read_text(encoding="utf-8")))

    def records(self) -> Iterator[CanonicalRecord]:
        with (self.folder / RECORDS).open("rb") as stream:
            for line in stream:
                yield CanonicalRecord.from_json(line)


def prepare(
    source: Path,
    folder: Path,
    task: Task,
    *,
    options: InputOptions | None = None,
    prices: PriceTable | None = None,
    progress: Progress = _quiet,
) -> PreparedRun:
    """Convert an input file and write its Bedrock batch job files into ``folder``."""
    # Control rows (the task's controls), drawn for this input file: seeded by its name, as a run is by its id.
    controls = local_controls(task, Path(source).name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONTROLS_NAME).unlink(missing_ok=True)
    for sub in (JOBS_DIR, ON_DEMAND_DIR):
        (folder / sub).mkdir(exist_ok=True)
        for stale in (folder / sub).glob("*.jsonl"):
            stale.unlink()
    with (
        WriteBehind((folder / RECORDS).open("wb")) as records_out,
        WriteBehind((folder / TEXTS).open("wb")) as texts_out,
        (folder / REJECTS).open("wb") as rejects_out,
    ):
        stats, layout = convert_file(
            source,
            task,
            records_out,
            texts_out,
            rejects_out,
            options=options,
            progress=progress,
            controls=controls,
            controls_seed=Path(source).name,
        )
    if controls:
        with (folder / CONTROLS_NAME).open("w", encoding="utf-8") as controls_out:
            write_controls(controls_out, controls)

    if stats.duplicate_id_hashes:
        with (folder / RECORDS).open("rb") as lines:
            ids = (CanonicalRecord.from_json(line).id for line in lines)
            stats.duplicate_id_examples = duplicate_id_examples(ids, stats.duplicate_id_hashes)
    encoder = BatchLineEncoder(task)
    k = task.texts_per_request
    shard_plan = plan_shards(
        request_count(stats.distinct_texts, k),
        task.batch,
        estimate_job_bytes(stats.distinct_texts, stats.text_chars, encoder, k),
    )

    def open_shard(shard: Shard) -> WriteBehind:
        sub = JOBS_DIR if shard.kind is ShardKind.BATCH else ON_DEMAND_DIR
        return WriteBehind((folder / sub / f"{shard.name}.jsonl").open("wb"))

    with (folder / TEXTS).open("rb") as texts:
        batches = consecutive_batches(escaped_text_lists(texts), 1, k, encoder)
        shards = write_shards(batches, shard_plan, task.batch, open_shard)
    progress("writing jobs", sum(s.records for s in shards))

    estimates = cost_estimates(task, stats.rows, stats.distinct_texts, stats.text_chars, prices or PriceTable.load())
    plan: dict[str, Any] = {
        "source": Path(source).name,
        "task": task.name,
        "model_id": task.model_id,
        "invocation_type": task.invocation_type.value,
        "texts_per_request": k,
        **stats.to_dict(),
        "label_column": layout.label_column,
        "output_layout": layout.to_dict(),
        "shards": [s.to_dict() for s in shards],
        "batch_jobs": sum(1 for s in shards if s.kind is ShardKind.BATCH),
        "on_demand_records": sum(s.records for s in shards if s.kind is ShardKind.ON_DEMAND),
        "job_bytes": sum(s.bytes for s in shards),
        "estimate": estimates[0].to_dict(),
        "estimates": [e.to_dict() for e in estimates],
    }
    (folder / TASK).write_text(task.to_yaml(), encoding="utf-8")
    (folder / SHARED).write_text(json.dumps(sorted(stats.shared)), encoding="utf-8")
    (folder / PLAN).write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return PreparedRun(folder=folder, task=task, plan=plan)


def estimated_input_tokens(task: Task, distinct: int, text_chars: int, texts_per_request: int | None = None) -> int:
    """Input tokens of a run: the prompt of every request (one per ``texts_per_request`` distinct texts; default:
    the task's), plus the texts themselves."""
    k = texts_per_request or task.texts_per_request
    return sum(n * tokens_for_chars(_request_prompt_chars(task, size)) for size, n in _request_sizes(distinct, k)) + (
        tokens_for_chars(text_chars)
    )


def _request_prompt_chars(task: Task, count: int) -> int:
    """Characters of a request of ``count`` texts beyond the texts: the system prompt and the message around them."""
    if count == 1:
        prompt = render_prompt(task)
        return len(prompt.system) + len(prompt.user_prefix) + len(prompt.user_suffix)
    packed = render_packed_prompt(task)
    numbered = sum(len(packed.text_open(n)) for n in range(1, count + 1)) + count * len(PackedPrompt.TEXT_CLOSE)
    return len(packed.system) + len(packed.intro(count)) + numbered


def cost_estimates(task: Task, rows: int, distinct: int, text_chars: int, prices: PriceTable) -> list[CostEstimate]:
    """The estimate at the task's ``texts_per_request``, then at one text a request to compare (or, for a task that
    sends one text a request, at the suggested :data:`~.tasks.SUGGESTED_TEXTS_PER_REQUEST`)."""
    chosen = task.texts_per_request
    other = 1 if chosen > 1 else SUGGESTED_TEXTS_PER_REQUEST
    return [
        estimate_cost(
            prices,
            task.model_id,
            input_tokens=estimated_input_tokens(task, distinct, text_chars, k),
            output_tokens=distinct * ESTIMATED_OUTPUT_TOKENS,
            records=rows,
            distinct_texts=distinct,
            texts_per_request=k,
            requests=request_count(distinct, k),
        )
        for k in (chosen, other)
    ]


# --- collect ---------------------------------------------------------------------------------------------


def collect(
    folder: Path,
    outputs: Path,
    out_file: Path,
    *,
    prices: PriceTable | None = None,
    progress: Progress = _quiet,
    write_rows: RowWriter | None = None,
) -> dict[str, Any]:
    """Join batch outputs with a prepared run; write the results file and ``summary.json`` beside it.

    ``write_rows(columns, rows)`` writes the results file instead of :func:`.writers.write_table` (the CLI's, which
    also counts the rows for the report and fills the review queue as they go by).

    Each output file is judged on its own; its verdicts are kept, or spilled in record order to a scratch file once
    more than :data:`HELD_VERDICTS` are kept. The kept and spilled verdicts are then merged and joined with the records
    in one pass, so memory holds a bounded number of verdicts, not the run's.
    """
    run = PreparedRun.load(folder)
    if not outputs.is_dir():
        raise PreparedRunError(f"{outputs} is not a folder of batch outputs.")
    matcher = LabelMatcher(run.task)
    shards = run.shards
    requests = Requests(run.task.texts_per_request)
    for shard in shards:
        if shard.first_record_id and shard.last_record_id:
            requests.add_range(record_index(shard.first_record_id), record_index(shard.last_record_id))
    kind_of = _kind_by_record(shards)
    known = max((record_index(s.last_record_id) for s in shards if s.last_record_id), default=0)
    tokens = {kind.value: {"input": 0, "output": 0} for kind in ShardKind}
    manifests: list[Manifest] = []
    bad_lines: list[BadLine] = []
    unknown = files = lines = 0
    summary = SummaryBuilder(categories=run.task.category_names)
    tally = _control_tally(run)
    layout = run.layout
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collect-") as scratch:
        spilled: list[Path] = []
        held: list[JudgedOutputs] = []  # judged files kept in memory while they hold few verdicts, spilled after

        def spill(judged: JudgedOutputs) -> None:
            path = Path(scratch) / f"{len(spilled):05d}.jsonl"
            path.write_text("".join(line + "\n" for line in judged.sorted_lines()), encoding="utf-8")
            spilled.append(path)

        for path in sorted(outputs.rglob("*.out")):
            files += 1
            if path.name == MANIFEST_NAME:
                manifests.append(parse_manifest(path.read_bytes()))
                continue
            with path.open("rb") as stream:
                results = unpack_results(
                    read_output_lines(stream, str(path.relative_to(outputs)), bad_lines), requests.texts_of
                )
                judged = judge_results(results, matcher, run.task, lambda i: 0 < i <= known)
            unknown += judged.unknown_records
            lines += len(judged.verdicts)
            if judged.verdicts:
                kind = kind_of(min(judged.verdicts)).value
                tokens[kind]["input"] += judged.input_tokens
                tokens[kind]["output"] += judged.output_tokens
                held.append(judged)
                if sum(len(j.verdicts) for j in held) > HELD_VERDICTS:
                    for kept in held:
                        spill(kept)
                    held.clear()
            progress("reading outputs", lines)

        with ExitStack() as open_files:
            streams = [read_verdicts(open_files.enter_context(p.open("rb"))) for p in spilled]
            streams += [j.sorted_items() for j in held]
            verdicts = tally.tap(merge_verdicts(streams)) if tally else merge_verdicts(streams)
            joined = join_verdicts(run.records(), verdicts, run.shared)

            def rows() -> Iterator[dict[str, Any]]:
                for record, verdict in joined:
                    row = output_row(record, verdict, layout)
                    summary.add(record, row)
                    if summary.rows % 10_000 == 0:
                        progress("writing results", summary.rows)
                    yield row

            columns = output_columns(layout, labelled=run.plan.get("labelled", 0) > 0)
            if write_rows is None:
                write_table(out_file, columns, rows())
            else:
                write_rows(columns, rows())
            for _ in verdicts:  # the verdicts after the last user row's: control texts the join did not need
                pass
    progress("writing results", summary.rows)
    result = summary.to_dict()
    if tally:
        result["controls"] = tally.to_dict()
    result.update(_token_summary(tokens, manifests, run.task.model_id, prices or PriceTable.load()))
    result.update(
        {
            "source": run.plan["source"],
            "task": run.task.name,
            "model_id": run.task.model_id,
            "results_file": out_file.name,
            "output_files": files,
            "unreadable_lines": [vars(b) for b in bad_lines[:20]],
            "unreadable_line_count": len(bad_lines),
            "unknown_records": unknown,
        }
    )
    (out_file.parent / SUMMARY).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _control_tally(run: PreparedRun) -> ControlTally | None:
    """The tally of a prepared folder's control rows (None when it has none)."""
    if not controls_from_plan(run.plan):
        return None
    try:
        with (run.folder / CONTROLS_NAME).open("rb") as lines:
            controls = load_controls(lines)
    except FileNotFoundError:
        missing = f"{run.folder} mixed in control rows but has no {CONTROLS_NAME}; prepare it again."
        raise PreparedRunError(missing) from None
    minimum = run.task.controls.min_accuracy if run.task.controls else None
    return ControlTally(controls, run.task.category_names, minimum)


def _kind_by_record(shards: list[Shard]) -> Callable[[int], ShardKind]:
    on_demand = [
        (record_index(s.first_record_id), record_index(s.last_record_id))
        for s in shards
        if s.kind is ShardKind.ON_DEMAND and s.first_record_id and s.last_record_id
    ]

    def kind_of(index: int) -> ShardKind:
        return ShardKind.ON_DEMAND if any(lo <= index <= hi for lo, hi in on_demand) else ShardKind.BATCH

    return kind_of


def _token_summary(
    tokens: dict[str, dict[str, int]], manifests: list[Manifest], model_id: str, prices: PriceTable
) -> dict[str, Any]:
    if manifests:
        # Bedrock's own count of what each job processed is what it bills.
        tokens = {
            **tokens,
            ShardKind.BATCH.value: {
                "input": sum(m.input_tokens for m in manifests),
                "output": sum(m.output_tokens for m in manifests),
            },
        }
    summary = cost_summary(tokens, model_id, prices, source="manifest" if manifests else "output lines")
    summary["manifests"] = [m.to_dict() for m in manifests]
    return summary
