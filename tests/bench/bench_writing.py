"""Benchmark: ``batch-classifier collect`` writing CSV and XLSX at 100k rows, against the plain tools' floor.

Run from bench_pipeline.py (``--writing-rows``; its ``--worker`` runs each measurement in a fresh process): it
prepares ``rows`` travel-like conversations, one a request, fakes a Bedrock answer for every one (so every row is
classified, with a class and a rationale), then measures, each in its own process:

- floor:   every output line and prepared record parsed whole by orjson, one row a record (id, text, label, reply)
           written by csv.writer / openpyxl's write-only workbook: the plain tools, nothing judged or counted;
- collect: ``batch-classifier collect`` to ``results.csv`` / ``results.xlsx`` (with its summary and confusion sheets).

It prints wall-clock and CPU rows per second and peak RSS beside the targets (``WRITING_TARGETS``), and "missing"
for a target missed. A benchmark, not a test: it never fails CI.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

WRITING_TARGETS = {"csv": 50_000, "xlsx": 20_000}  # rows per second of ``batch-classifier collect`` at 100k rows


def work_writing(step: str, folder: Path) -> dict[str, float]:
    """One measurement of collect's writing half, in this process (``folder``: the prepared run, ``outputs`` beside it).

    ``writing-collect-csv`` / ``-xlsx``: ``batch-classifier collect`` writing ``results.csv`` / ``.xlsx`` (with the
    summary and confusion sheets). ``writing-floor-csv`` / ``-xlsx``: the floor it is set against, the plain tools
    alone: every output line parsed whole by orjson and every prepared record by orjson, one row each (the record's
    columns and the reply) written by csv.writer / openpyxl's write-only workbook.
    """
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    from bench_pipeline import _peak_rss_mb  # noqa: PLC0415
    from openpyxl import Workbook  # noqa: PLC0415

    from batch_classifier_cli.main import main as cli  # noqa: PLC0415

    fmt = step.rsplit("-", 1)[1]
    out = folder.parent / "results" / f"results.{fmt}"
    out.parent.mkdir(exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    if step.startswith("writing-collect-"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli(["collect", str(folder), "--outputs", str(folder.parent / "outputs"), "--out", str(out)])
        rows = json.loads((out.parent / "summary.json").read_text())["rows"]
    else:
        replies: dict[str, str] = {}
        for path in sorted((folder.parent / "outputs").rglob("*.out")):
            with path.open("rb", buffering=1 << 20) as stream:
                for line in stream:
                    doc = orjson.loads(line)
                    replies[doc["recordId"]] = doc["modelOutput"]["content"][0]["text"]
        rows = 0
        with (folder / "records.jsonl").open("rb") as records:
            table = (
                [record["id"], record["text"], record.get("label"), replies.get(record.get("rid") or "")]
                for record in map(orjson.loads, records)
            )
            if fmt == "csv":
                with out.open("w", newline="", encoding="utf-8-sig") as stream:
                    writer = csv.writer(stream)
                    for row in table:
                        writer.writerow(row)
                        rows += 1
            else:
                book = Workbook(write_only=True)
                sheet = book.create_sheet("results")
                for row in table:
                    sheet.append(row)
                    rows += 1
                book.save(out)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rows": rows, "peak_mb": _peak_rss_mb()}


def report_writing(workdir: Path, rows: int) -> None:
    """``batch-classifier collect`` of ``rows`` travel-like conversations, each answered (one a request), to CSV and
    XLSX: rows per second and peak memory beside the floor's and the target's."""
    from bench_pipeline import fake_outputs, generate, measure  # noqa: PLC0415

    from batch_classifier.pipeline import prepare  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415

    folder = workdir / "writing"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = folder / "input.csv"
    generate(source, rows, "csv")
    task = load_task("travel")
    # One text a request, as the outputs faked here answer: every row is classified, with a class and a rationale.
    task = task.model_copy(update={"texts_per_request": 1, "input": task.input.with_overrides(label_column="class")})
    prepare(source, folder / "prepared", task)
    fake_outputs(folder / "prepared", folder / "outputs")
    print(f"collect's writing, {rows:,} rows (batch-classifier collect, every row classified)")
    print(f"{'format':<7} {'step':<8} {'seconds':>8} {'rows/s':>10} {'cpu s':>6} {'rows/cpu-s':>10}", end="")
    print(f" {'peak MB':>8}  target")
    for fmt, target in WRITING_TARGETS.items():
        for step in ("floor", "collect"):
            m = measure(f"writing-{step}-{fmt}", source, folder / "prepared")
            speed = m["rows"] / m["seconds"]
            verdict = f">= {target:,} rows/s {'met' if speed >= target else 'missing'}" if step == "collect" else ""
            print(
                f"{fmt:<7} {step:<8} {m['seconds']:>8.2f} {speed:>10,.0f} {m['cpu']:>6.2f}"
                f" {m['rows'] / m['cpu']:>10,.0f} {m['peak_mb']:>8.0f}  {verdict}",
                flush=True,
            )
    print("floor: every output line and prepared record parsed whole by orjson, a row a record (id, text, label,")
    print("reply) written by csv.writer / openpyxl's write-only workbook: the plain tools, nothing judged or counted.")
    print("rows/cpu-s: rows per second of the process's own CPU time, steadier than rows/s on a busy machine.")
    print()
    shutil.rmtree(folder, ignore_errors=True)
