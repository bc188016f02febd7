"""Benchmark: throughput and peak memory of ``prepare``, reading and ``collect`` against floors measured in the same
run, with the bundled ``travel`` task as it ships (6 texts a request). Each measurement runs in a fresh process,
so peak memory is the step's own, after the previous step's writes have reached the disk. In order:

1. packed requests: conversations as long as the travel call centre's (about 1,700 characters, 400 tokens,
   beside a prompt of about 2,100 tokens) are prepared at 6 texts a request and at 1, every job line is answered
   by the local model as the local Bedrock answers it, and ``collect`` must find every text classified; job-file
   bytes and billed input tokens per text at each, against the target (at most a third at 6);
2. collect to CSV and XLSX at 100k rows against their floors and targets (``bench_writing.py``);
3. reading alone (the readers, then the readers and the mapping into records) for CSV and a JSON array at 1M
   rows and XLSX at 100k, against the plain tools' parse and the targets;
4. for each size (rows) and format (CSV, JSONL, Parquet, and XLSX up to 100k rows):
   - parse:   the floor: the same file parsed with the plain tools (csv.reader, json.loads per line, pyarrow,
              python-calamine);
   - write:   as many bytes as prepare writes (its batch job files, records and distinct texts), written in large
              blocks (every request repeats the task's prompt, so writing them is the other floor prepare cannot go
              below);
   - prepare: the full prepare (read, map, dedup, canonical records, batch job files), against the targets at
              1M rows (280k rows/s, at most 300 MB) and, from XLSX, at 100k rows (100k rows/s);
   - collect: Bedrock-shaped outputs for every job (``modelInput`` echoed, as Bedrock does) joined and written
              as CSV.

A figure that misses its target is printed as ``missing``. Run with ``make bench`` or, for a quick look,
``python tests/bench/bench_pipeline.py --sizes 10000 --reading-rows 10000 --writing-rows 10000``. This is a
benchmark, not a test: it never fails CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PREPARE_TARGET = 280_000  # rows/s of the whole prepare at 1M rows (ten times the sample this product replaces)
TARGET_RSS_MB = 300
TARGET_ROWS = 1_000_000
FORMATS = ("csv", "jsonl", "parquet", "xlsx")
XLSX_PREPARE_TARGET = 100_000  # rows/s of the whole prepare from XLSX, at XLSX_ROWS
XLSX_ROWS = 100_000  # the largest XLSX prepared (a sheet holds at most 1,048,575 rows)
PACKING_TARGET = 1 / 3  # packed job-file bytes and billed input tokens per text, as a share of one text a request's

_OPENERS = [
    "Hi, I'm calling about",
    "Hello, I need help with",
    "Good morning, I have a question about",
    "Hey, I wanted to ask about",
]
_TOPICS = [
    ("my booking to {city} next {month}", "Booking Inquiry"),
    ("changing the dates of my trip to {city}", "Reservation Change"),
    ("cancelling my hotel in {city}", "Cancellation Request"),
    ("a refund for the flight to {city} that never came", "Refund Issues"),
    ("visa rules for {city}", "Travel Information"),
    ("the terrible service I got in {city}", "Complaint"),
    ("my card being declined for the {city} package", "Payment Problem"),
    ("missing miles from my {city} flight", "Loyalty Program"),
    ("wheelchair assistance at the {city} airport", "Special Accommodation"),
    ("the app crashing when I open my {city} itinerary", "Technical Support"),
]
_CITIES = ["Paris", "Lisbon", "Tokyo", "Denver", "Cairo", "Lima", "Oslo", "Hanoi", "Perth", "Quito", "Seoul", "Rome"]
_MONTHS = ["January", "March", "May", "July", "September", "November"]
_FILLER = [
    "Agent: Thank you for calling, may I have your booking reference?",
    "User: Sure, it's {ref}.",
    "Agent: I can see your reservation here, let me check the details for you.",
    "User: I've been waiting for an answer for {days} days now.",
    "Agent: I understand, and I'm sorry about the wait.",
    "User: Can you also tell me what happens with my seat selection?",
    "Agent: Your seat {seat} stays the same unless you ask to change it.",
    "Agent: Is there anything else I can help you with today?",
    "User: No, that's everything, thank you.",
]


def conversation(rng: random.Random, i: int) -> tuple[str, str]:
    topic, label = rng.choice(_TOPICS)
    lines = [f"User: {rng.choice(_OPENERS)} {topic.format(city=rng.choice(_CITIES), month=rng.choice(_MONTHS))}."]
    for line in rng.sample(_FILLER, k=rng.randint(4, 8)):
        lines.append(
            line.format(ref=f"BK{i:07d}", days=rng.randint(2, 30), seat=f"{rng.randint(1, 40)}{'ABCDEF'[i % 6]}")
        )
    return "\n".join(lines), label


def long_conversation(rng: random.Random, i: int) -> tuple[str, str]:
    """A conversation as long as the travel call centre's (900 to 2,600 characters, about 1,700 on average)."""
    text, label = conversation(rng, i)
    target = rng.randint(900, 2600)
    lines = [text]
    while sum(len(line) + 1 for line in lines) < target:
        lines.append(
            rng.choice(_FILLER).format(ref=f"BK{i:07d}", days=rng.randint(2, 30), seat=f"{rng.randint(1, 40)}C")
        )
    return "\n".join(lines), label


def generate(path: Path, rows: int, fmt: str) -> None:
    """A file of ``rows`` conversations (about 1% repeated texts), with an id and a label column."""
    header = ["conversation_id", "conversation", "class"]
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            for chunk in _chunks(rows):
                writer.writerows(chunk)
    elif fmt == "jsonl":
        with path.open("w", encoding="utf-8") as stream:
            for chunk in _chunks(rows):
                stream.writelines(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in chunk)
    elif fmt == "xlsx":
        from openpyxl import Workbook  # noqa: PLC0415

        book = Workbook(write_only=True)
        sheet = book.create_sheet("conversations")
        sheet.append(header)
        for chunk in _chunks(rows):
            for row in chunk:
                sheet.append(list(row))
        book.save(path)
    else:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        writer = None
        for chunk in _chunks(rows):
            table = pa.table({name: [r[n] for r in chunk] for n, name in enumerate(header)})
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()


def _chunks(rows: int, size: int = 50_000) -> Iterator[list[tuple[str, str, str]]]:
    rng = random.Random(rows)
    seen: list[tuple[str, str]] = []
    chunk: list[tuple[str, str, str]] = []
    for i in range(1, rows + 1):
        if seen and rng.random() < 0.01:
            text, label = rng.choice(seen)
        else:
            text, label = conversation(rng, i)
            if len(seen) < 1000:
                seen.append((text, label))
        chunk.append((f"C{i:08d}", text, label))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fake_outputs(prepared: Path, outputs: Path) -> None:
    """Bedrock-shaped outputs for every job line: the input echoed, a reply (one numbered answer a text for a packed
    request), usage; order scrambled by block."""
    answers = [
        f"<classification>{label}</classification><explanation>The customer talks about it.</explanation>"
        for _, label in _TOPICS
    ]

    def reply(rid: int, texts: int) -> bytes:
        if texts:  # a packed request: <text number="1"> ... <text number="k">
            text = "".join(
                f'<answer number=\\"{n}\\">{answers[(rid + n) % len(answers)]}</answer>' for n in range(1, texts + 1)
            )
        else:
            text = answers[rid % len(answers)]
        usage = f'"usage":{{"input_tokens":{2300 + 500 * texts},"output_tokens":{25 * max(texts, 1)}}}'
        return (
            f'"modelOutput":{{"content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn",{usage}}}}}\n'
        ).encode()

    for number, job in enumerate(sorted((prepared / "jobs").glob("*.jsonl")), start=1):
        folder = outputs / f"job{number:05d}"
        folder.mkdir(parents=True)
        block: list[bytes] = []
        with job.open("rb") as source, (folder / f"{job.name}.out").open("wb") as out:
            for line in source:
                rid = int(line[14:24])  # {"recordId":"R0000000001",... (or "P..." for a packed request)
                texts = line.count(
                    b"<text number=", line.index(b'"messages"')
                )  # the system prompt names the element too
                block.append(line[:-2] + b"," + reply(rid, texts))
                if len(block) == 1000:
                    out.writelines(reversed(block))
                    block = []
            out.writelines(reversed(block))


# --- workers: each measurement runs in its own process ---------------------------------------------------


def work(step: str, source: Path, folder: Path) -> dict[str, float]:
    """Run one step in this process; the clock starts after the imports, as the floor's does."""
    if step.startswith("writing-"):
        from bench_writing import work_writing  # noqa: PLC0415 - collect's CSV/XLSX figures (bench_writing.py)

        return work_writing(step, folder)
    import pyarrow.parquet  # noqa: F401, PLC0415 - the Parquet and XLSX floors need them; import them everywhere alike
    import python_calamine  # noqa: F401, PLC0415

    from batch_classifier.pipeline import collect, prepare  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415

    task = load_task("travel")
    task = task.model_copy(update={"input": task.input.with_overrides(label_column="class")})
    started = time.perf_counter()
    if step == "floor":
        rows = _floor(source)
    elif step == "write":
        rows = _write_floor(folder)
    elif step == "prepare":
        rows = prepare(source, folder, task).plan["rows"]
    else:
        rows = collect(folder, folder.parent / "outputs", folder.parent / "results" / "results.csv")["rows"]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_mb": _peak_rss_mb()}


def _write_floor(folder: Path) -> int:
    """Write as many bytes as prepare wrote (its job files, records and distinct texts), in 1 MiB blocks: the cost of
    the output alone."""
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    block = b"x" * (1 << 20)
    target = folder.parent / "write-floor.bin"
    with target.open("wb") as out:
        for _ in range(total >> 20):
            out.write(block)
        out.write(block[: total & ((1 << 20) - 1)])
    target.unlink()
    return json.loads((folder / "plan.json").read_text())["rows"]


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ru_maxrss would carry over the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _floor(source: Path) -> int:
    rows = 0
    if source.suffix == ".csv":
        with source.open(newline="", encoding="utf-8") as stream:
            for _ in csv.reader(stream):
                rows += 1
        return rows - 1
    if source.suffix == ".jsonl":
        with source.open("rb") as stream:
            for line in stream:
                json.loads(line)
                rows += 1
        return rows
    if source.suffix == ".xlsx":
        from python_calamine import CalamineWorkbook  # noqa: PLC0415

        return len(CalamineWorkbook.from_path(str(source)).get_sheet_by_index(0).to_python()) - 1
    import pyarrow.parquet as pq  # noqa: PLC0415

    for batch in pq.ParquetFile(source).iter_batches(batch_size=8192):
        rows += len(batch.to_pylist())
    return rows


def measure(step: str, source: Path, folder: Path) -> dict[str, float]:
    os.sync()  # the previous step's writes reach the disk first, so that they do not slow this one
    done = subprocess.run(
        [sys.executable, __file__, "--worker", step, str(source), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{step} failed on {source.name}:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- packed requests: job-file bytes and billed input tokens per text ------------------------------------------


def measure_packing(workdir: Path, rows: int, texts_per_request: int) -> dict[str, float]:
    """Prepare ``rows`` travel conversations at ``texts_per_request``, answer every job line with the local model as the
    local Bedrock does, collect; job-file bytes and billed input tokens per text, and the texts classified."""
    from batch_classifier.pipeline import collect, prepare  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415
    from batch_classifier_local.answer import answer_prepared  # noqa: PLC0415
    from batch_classifier_local.models import OfflineClassifier  # noqa: PLC0415

    source = workdir / "travel-calls.csv"
    if not source.exists():
        rng = random.Random(9)
        with source.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["conversation_id", "conversation", "class"])
            writer.writerows((f"T{i:06d}", *long_conversation(rng, i)) for i in range(1, rows + 1))
    task = load_task("travel")
    task = task.model_copy(
        update={"texts_per_request": texts_per_request, "input": task.input.with_overrides(label_column="class")}
    )
    prepared, outputs = workdir / f"packed-{texts_per_request}", workdir / f"packed-{texts_per_request}-out"
    plan = prepare(source, prepared, task).plan
    answered = answer_prepared(prepared, outputs, OfflineClassifier())
    billed, job_bytes = answered.input_tokens, answered.job_bytes
    results = workdir / f"packed-{texts_per_request}.csv"
    summary = collect(prepared, outputs, results)
    texts = plan["distinct_texts"]
    with results.open(newline="", encoding="utf-8-sig") as stream:
        answers = {row["id"]: row["class"] for row in csv.DictReader(stream)}
    return {
        "texts": texts,
        "requests": sum(s["records"] for s in plan["shards"]),
        "bytes_per_text": job_bytes / texts,
        "tokens_per_text": billed / texts,
        "classified": summary["by_status"]["classified"],
        "answers": answers,
    }


def report_packing(workdir: Path, rows: int) -> None:
    from batch_classifier.tasks import DEFAULT_TEXTS_PER_REQUEST, SUGGESTED_TEXTS_PER_REQUEST  # noqa: PLC0415

    packed_k = SUGGESTED_TEXTS_PER_REQUEST
    print(
        f"packed requests, travel task, {rows:,} conversations of travel-call length "
        f"(the bundled tasks send {packed_k} a request; a task file that does not say, {DEFAULT_TEXTS_PER_REQUEST})"
    )
    header = ("texts/request", 13), ("requests", 9), ("bytes/text", 11), ("tokens/text", 12), ("classified", 16)
    print(" ".join(f"{name:>{width}}" for name, width in header))
    found: dict[int, dict[str, Any]] = {}
    for k in (packed_k, 1):
        m = found[k] = measure_packing(workdir, rows, k)
        print(
            f"{k:>13} {m['requests']:>9,} {m['bytes_per_text']:>11,.0f} {m['tokens_per_text']:>12,.0f} "
            f"{m['classified']:>7,} of {m['texts']:<,}",
            flush=True,
        )
    packed, single = found[packed_k], found[1]
    same = sum(packed["answers"][key] == answer for key, answer in single["answers"].items())
    print(f"the local model's answers at {packed_k} a request equal its answers one at a time for {same:,} of {rows:,}")
    bytes_share = packed["bytes_per_text"] / single["bytes_per_text"]
    tokens_share = packed["tokens_per_text"] / single["tokens_per_text"]
    met = bytes_share <= PACKING_TARGET and tokens_share <= PACKING_TARGET and packed["classified"] == packed["texts"]
    print(
        f"at {packed_k} texts a request: job-file bytes {bytes_share:.2f} and billed input tokens {tokens_share:.2f} "
        f"of one text a request's per text; target (at most {PACKING_TARGET:.2f}, every text classified) "
        f"{'met' if met else 'MISSED'}"
    )
    print()


# --- reading alone: the input readers' throughput and memory, against their floor and targets ---------------------

READ_TARGETS = {"csv": 280_000, "json": 280_000, "xlsx": 100_000}  # rows/s; CSV and JSON at 1M rows, XLSX at 100k
READ_RSS_MB = 300


def write_reading_input(path: Path, rows: int) -> None:
    """``rows`` conversations as CSV or an XLSX sheet (as ``generate`` writes them) or a JSON array (one record a
    line)."""
    fmt = path.suffix[1:]
    header = ["conversation_id", "conversation", "class"]
    if fmt != "json":
        generate(path, rows, fmt)
    else:
        with path.open("w", encoding="utf-8") as stream:
            stream.write("[\n")
            ending = ""
            for chunk in _chunks(rows):
                for row in chunk:
                    stream.write(ending + json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False))
                    ending = ",\n"
            stream.write("\n]\n")


def read_work(step: str, source: Path) -> dict[str, float]:
    """In this process: the floor (the plain tool's parse), the readers alone (``open_table``, a block of rows at a
    time, as prepare reads), or the readers and the conversion into the lines of canonical records and distinct texts
    (prepare's reading stage, nothing written)."""
    # The libraries the readers load on first use are loaded before the clock starts, as the floor's are.
    import openpyxl  # noqa: F401, PLC0415
    import orjson  # noqa: F401, PLC0415
    import pyarrow.csv  # noqa: F401, PLC0415
    import python_calamine  # noqa: F401, PLC0415

    from batch_classifier.mapping import Converter, ConvertStats, RecordMapper  # noqa: PLC0415
    from batch_classifier.readers import open_table  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415

    task = load_task("travel")
    task = task.model_copy(update={"input": task.input.with_overrides(label_column="class")})
    started = time.perf_counter()
    rows = 0
    if step == "floor":
        rows = _read_floor(source)
    else:
        with open_table(source) as table:
            if step == "read":
                rows = sum(block.size for block in table.blocks())
            else:
                stats = ConvertStats()
                converter = Converter(RecordMapper(task.input, table.columns, source=repr(table.name)), stats)
                for block in table.blocks():
                    converter.block(block)
                converter.finish()
                rows = stats.rows
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mb": _peak_rss_mb()}


def _read_floor(source: Path) -> int:
    """csv.reader, json.loads a line at a time, openpyxl's read-only rows: the plain tools, values into Python."""
    rows = 0
    if source.suffix == ".csv":
        with source.open(newline="", encoding="utf-8") as stream:
            rows = sum(1 for _ in csv.reader(stream)) - 1
    elif source.suffix == ".json":
        with source.open("rb") as stream:
            for line in stream:
                body = line.rstrip(b",\r\n")
                if body not in (b"[", b"]"):
                    json.loads(body)
                    rows += 1
    else:
        from openpyxl import load_workbook  # noqa: PLC0415

        book = load_workbook(source, read_only=True)
        rows = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1
        book.close()
    return rows


def report_reading(workdir: Path, rows: int, keep: bool) -> None:
    """Reading alone at ``rows`` rows for CSV and JSON and a tenth of that for XLSX: rows/s and peak RSS of the
    floor, the readers, and the readers with the mapping, against the targets (rows/s for the readers, memory at
    1M rows)."""
    folder = workdir / "reading"
    print(f"reading alone (CSV and JSON at {rows:,} rows, XLSX at {rows // 10:,}); targets for the readers")
    print(f"{'format':<7} {'rows':>9} {'step':<9} {'seconds':>8} {'rows/s':>10} {'peak MB':>8}  target")
    for fmt, target in READ_TARGETS.items():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        source = folder / f"input.{fmt}"
        write_reading_input(source, rows if fmt != "xlsx" else rows // 10)
        for step in ("floor", "read", "read+map"):
            done = subprocess.run(
                [sys.executable, __file__, "--read-worker", step, str(source)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"reading {step} failed on {source.name}:\n{done.stderr}")
            m = json.loads(done.stdout.strip().splitlines()[-1])
            rate = m["rows"] / m["seconds"]
            note = ""
            if step == "read":
                note = f"{'met' if rate >= target else 'missing'} (>= {target:,} rows/s)"
                if fmt != "xlsx" and m["rows"] >= TARGET_ROWS:
                    small = m["peak_mb"] <= READ_RSS_MB
                    note += f", memory {'met' if small else 'missing'} (<= {READ_RSS_MB} MB)"
            print(
                f"{fmt:<7} {m['rows']:>9,} {step:<9} {m['seconds']:>8.2f} {rate:>10,.0f} {m['peak_mb']:>8.0f}  {note}",
                flush=True,
            )
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    print("floor: csv.reader, json.loads a line at a time, openpyxl read-only; read: open_table's blocks of rows;")
    print("read+map: the rows converted into the lines of canonical records and texts (prepare's reading stage,")
    print("nothing written).")
    print()


def prepare_verdict(fmt: str, size: int, m: dict[str, float], io_floor: float, verdicts: list[bool]) -> str:
    """The note on a prepare at a size with targets (1M rows; XLSX at 100k), its verdict added to ``verdicts``."""
    if fmt == "xlsx":
        if size < XLSX_ROWS:
            return ""
        fast = m["rows"] / m["seconds"] >= XLSX_PREPARE_TARGET
        verdicts.append(fast)
        return f"speed {'met' if fast else 'missing'} (>= {XLSX_PREPARE_TARGET:,} rows/s)"
    if size < TARGET_ROWS:
        return ""
    fast = m["rows"] / m["seconds"] >= PREPARE_TARGET
    small = m["peak_mb"] <= TARGET_RSS_MB
    verdicts.append(fast and small)
    note = f"speed {'met' if fast else 'missing'} (>= {PREPARE_TARGET:,} rows/s), "
    note += f"memory {'met' if small else 'missing'} (<= {TARGET_RSS_MB} MB); "
    return note + f"parse + write alone {io_floor:.2f} s, the target allows {size / PREPARE_TARGET:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="100000,1000000", help='comma-separated row counts ("": the packing figures only)'
    )
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--workdir", default="bench-output", help="where generated files go (removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--packing-rows", type=int, default=2000, help="conversations of the packed-requests figures")
    parser.add_argument("--writing-rows", type=int, default=100_000, help="rows of collect's CSV/XLSX figures, 0: none")
    parser.add_argument("--worker", nargs=3, metavar=("STEP", "SOURCE", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--reading-rows", type=int, help="rows of the reading-alone figures (default: largest size)")
    parser.add_argument("--read-worker", nargs=2, metavar=("STEP", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        step, source, folder = args.worker
        print(json.dumps(work(step, Path(source), Path(folder))))
        return
    if args.read_worker:
        print(json.dumps(read_work(args.read_worker[0], Path(args.read_worker[1]))))
        return

    workdir = Path(args.workdir)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.packing_rows:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        report_packing(workdir, args.packing_rows)
        if not sizes and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.writing_rows:
        from bench_writing import report_writing  # noqa: PLC0415

        report_writing(workdir, args.writing_rows)
    reading_rows = args.reading_rows if args.reading_rows is not None else max(sizes, default=0)
    if reading_rows:
        report_reading(workdir, reading_rows, args.keep)
    if not sizes:
        return
    print(
        f"{'rows':>9} {'format':<8} {'step':<8} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} "
        f"{'x parse':>8} {'x p+w':>7}  prepare targets at {TARGET_ROWS:,} rows (XLSX: {XLSX_ROWS:,})"
    )
    verdicts: list[bool] = []
    for size in sizes:
        for fmt in args.formats.split(","):
            if fmt == "xlsx" and size > XLSX_ROWS:
                continue
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            source = workdir / f"input.{fmt}"
            generate(source, size, fmt)
            prepared = workdir / "prepared"
            floor = measure("floor", source, prepared)
            prep = measure("prepare", source, prepared)
            write = measure("write", source, prepared)
            fake_outputs(prepared, workdir / "outputs")
            coll = measure("collect", source, prepared)
            io_floor = floor["seconds"] + write["seconds"]
            for step, m in (("parse", floor), ("write", write), ("prepare", prep), ("collect", coll)):
                note = prepare_verdict(fmt, size, m, io_floor, verdicts) if step == "prepare" else ""
                ratios = (
                    ("", "")
                    if step in {"parse", "write"}
                    else (
                        f"{m['seconds'] / floor['seconds']:.2f}",
                        f"{m['seconds'] / io_floor:.2f}",
                    )
                )
                print(
                    f"{size:>9,} {fmt:<8} {step:<8} {m['seconds']:>8.2f} {m['rows'] / m['seconds']:>10,.0f} "
                    f"{m['peak_mb']:>8.0f} {ratios[0]:>8} {ratios[1]:>7}  {note}",
                    flush=True,
                )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"prepare met its targets in {sum(verdicts)} of {len(verdicts)} runs with targets")
    print("parse: the input parsed by csv/json/pyarrow/python-calamine alone; write: as many bytes as prepare writes,")
    print("written alone; x p+w: the step's time over parse + write, the two done one after the other; prepare writes")
    print("from threads of its own while it reads, so it can go below 1.")


if __name__ == "__main__":
    main()
