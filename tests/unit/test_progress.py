"""Progress of prepare, collect and run: a bar with percentage and ETA on a terminal, plain lines in logs."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import termios
import time
from typing import Any

from batch_classifier_cli import run_command
from batch_classifier_cli.progress import ProgressLine

ESCAPES = re.compile(r"\x1b\[|\r")
DONE_LINE = re.compile(r"\s*[\d.]+s\s+(\S+)\s+done in ([\d.]+)s")  # what bench_scale.py reads from run's output


def test_plain_output_has_lines_at_each_tenth_of_a_total_and_no_escape_codes():
    out = io.StringIO()
    progress = ProgressLine(out, unit="shard", interval=3600)
    for count in range(0, 101):
        progress.update("ProcessShards", count, 100)
    progress.done()
    lines = out.getvalue().splitlines()
    assert not ESCAPES.search(out.getvalue())
    assert len(lines) == 10  # 10%, 20%, ... 100%
    assert lines[0].startswith("ProcessShards:  10% 10/100 [")
    assert lines[-1].startswith("ProcessShards: 100% 100/100 [")
    assert all("shard/s]" in line for line in lines)


def test_plain_output_without_a_total_gives_a_count_and_rate_every_interval():
    out = io.StringIO()
    progress = ProgressLine(out, interval=0)  # every call is a new interval
    progress("reading rows", 10_000)
    progress("reading rows", 20_000)
    progress("writing jobs", 500)
    lines = out.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "reading rows: 10000 rows",
        "reading rows: 20000 rows",
        "writing jobs: 500 rows",
    ]
    assert "%" not in out.getvalue()
    assert not ESCAPES.search(out.getvalue())

    quiet = io.StringIO()
    sparse = ProgressLine(quiet)  # the default interval: nothing within the first seconds
    sparse("reading rows", 10_000)
    assert quiet.getvalue() == ""


def test_a_total_that_does_not_hold_shows_the_count_alone():
    out = io.StringIO()
    progress = ProgressLine(out, interval=0, totals={"writing results": 10})
    progress("writing results", 5)
    progress("writing results", 20)
    first, second = out.getvalue().splitlines()
    assert first.startswith("writing results:  50% 5/10")
    assert second.startswith("writing results: 20 rows")


def test_a_terminal_shows_a_bar_with_percentage_and_eta_and_clears_it():
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        with os.fdopen(child, "w", encoding="utf-8", closefd=False) as terminal:
            assert terminal.isatty()
            progress = ProgressLine(terminal, unit="shard")
            progress.update("ProcessShards", 0, 10)
            time.sleep(0.3)  # past the bar's shortest redraw interval, so that it has a rate and an ETA
            progress.update("ProcessShards", 3, 10)
            progress.done()
        shown = _read_all(main)
    finally:
        os.close(main)
        os.close(child)
    assert "ProcessShards:   0%|" in shown
    assert re.search(r"ProcessShards:  30%\|[^|]*\| 3/10 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+shard/s\]", shown)
    assert shown.endswith("\r")  # cleared in place at the end


def test_forced_terminal_mode_draws_a_bar_on_any_stream():
    out = io.StringIO()
    progress = ProgressLine(out, tty=True, totals={"writing results": 4})
    progress("writing results", 1)
    progress.done()
    assert "writing results:  25%|" in out.getvalue()


class _History:
    """Step Functions as _follow sees it: a short run whose history grows by one step each look."""

    def __init__(self, plan_shards: int) -> None:
        run = {"run": {"run_id": "r1"}}
        planned = {**run, "plan": {"shards": plan_shards}}
        steps = [
            ("RegisterRun", run),
            ("ConvertInput", run),
            ("ShardRecords", planned),
            ("ProcessShards", planned),
            ("FinalizeRun", planned),
        ]
        self.events: list[dict[str, Any]] = []
        for name, output in steps:
            self.events.append({"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}})
            self.events.append(
                {"type": "TaskStateExited", "stateExitedEventDetails": {"name": name, "output": json.dumps(output)}}
            )
        self.looks = 0

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument name
        self.looks += 1
        return {"status": "RUNNING" if self.looks * 2 < len(self.events) + 4 else "SUCCEEDED"}

    def get_execution_history(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return {"events": self.events[: self.looks * 2 - 1]}


def test_follow_keeps_the_done_lines_and_counts_shards_out_of_the_plan(capsys, monkeypatch):
    monkeypatch.setattr(run_command.time, "sleep", lambda seconds: None)
    asked: list[str] = []

    def processed(run_id: str) -> int:
        asked.append(run_id)
        return 2

    described = run_command._follow(_History(plan_shards=4), "arn:x", 0.0, processed=processed)
    assert described["status"] == "SUCCEEDED"
    captured = capsys.readouterr()
    names = [m[1] for m in map(DONE_LINE.match, captured.out.splitlines()) if m]
    assert names == ["RegisterRun", "ConvertInput", "ShardRecords", "ProcessShards", "FinalizeRun"]
    assert asked and set(asked) == {"r1"}  # asked once the plan is known, about the run of the history
    assert not ESCAPES.search(captured.out + captured.err)  # not a terminal: no bar, no escape codes


def test_follow_shows_the_shards_bar_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(run_command.time, "sleep", lambda seconds: None)
    bars: list[ProgressLine] = []

    def on_terminal(*args: Any, **kwargs: Any) -> ProgressLine:
        bars.append(ProgressLine(io.StringIO(), tty=True, **kwargs))
        return bars[-1]

    monkeypatch.setattr(run_command, "ProgressLine", on_terminal)
    shown: list[str] = []
    real_update = ProgressLine.update

    def update(self: ProgressLine, stage: str, count: int, total: int | None = None, note: str | None = None) -> None:
        real_update(self, stage, count, total, note)
        if self._bar is not None:
            shown.append(str(self._bar))

    monkeypatch.setattr(ProgressLine, "update", update)
    run_command._follow(_History(plan_shards=4), "arn:x", 0.0, processed=lambda run_id: 2)
    assert any(line.startswith("ProcessShards:  50%|") and "2/4 [" in line for line in shown)
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if DONE_LINE.match(line)]) == 5


def _read_all(fd: int) -> str:
    """What a terminal was sent (a pseudo-terminal passes it on a moment later)."""
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_prepare_reading_a_file_shows_a_percentage_from_the_bytes_read(tmp_path):
    from test_pipeline import write_input  # noqa: PLC0415

    from batch_classifier.pipeline import prepare  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415

    source = tmp_path / "calls.csv"
    write_input(source, 40_000)
    out = io.StringIO()
    prepare(source, tmp_path / "prep", load_task("travel"), progress=ProgressLine(out, interval=0))
    reading = [line for line in out.getvalue().splitlines() if line.startswith("reading rows:")]
    # "reading rows:  49% 10000/20531 [...]": the total estimated from the bytes read (readers read ahead in blocks)
    assert len(reading) >= 2 and all("%" in line for line in reading), reading
    assert reading[-1].startswith("reading rows: 100% 40000/40000 ["), reading


def test_a_table_says_how_much_of_its_input_it_has_read(tmp_path):
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from batch_classifier.readers import open_table  # noqa: PLC0415

    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("id,text\n" + "".join(f"{i},text number {i}\n" for i in range(50_000)), encoding="utf-8")
    with open_table(csv_file) as table:
        rows = table.rows()
        next(rows)
        assert 0 < table.fraction_read() < 1
        assert sum(1 for _ in rows) == 49_999 and table.fraction_read() == 1.0
    with csv_file.open("rb") as stream, open_table(stream, name="calls.csv") as table:
        assert table.fraction_read() is None  # a stream's size is not known
    size = csv_file.stat().st_size
    with csv_file.open("rb") as stream, open_table(stream, name="calls.csv", size=size) as table:
        rows = table.rows()  # as an S3 body is read, its size given by the upload's event
        next(rows)
        assert 0 < table.fraction_read() < 1
        assert sum(1 for _ in rows) == 49_999 and table.fraction_read() == 1.0

    parquet_file = tmp_path / "calls.parquet"
    pq.write_table(pa.table({"id": list(range(1000)), "text": ["t"] * 1000}), parquet_file)
    with open_table(parquet_file) as table:
        assert table.fraction_read() == 0.0
        assert sum(1 for _ in table.rows()) == 1000 and table.fraction_read() == 1.0
