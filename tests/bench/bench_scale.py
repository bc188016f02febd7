"""Benchmark: a whole run at scale, end to end through ``batch-classifier run`` on the local runtime.

It generates a CSV of call-centre-like conversations (the generator of ``bench_pipeline.py``), runs
``batch-classifier run FILE`` in a fresh process with its own temporary folder, and samples the whole process
tree every half second (from /proc): the tree's peak resident memory, the largest single process (a function's
worker: the largest invocation), and how far the disk space in use where its temporary folder is grew (temporary
files, unlinked as they are made, count only there). It prints the
time from upload to summary (what ``batch-classifier run`` reports as "finished in", after the local runtime has
started) and the tree's peak against the targets of the row count (on a 2-core machine: 100k rows in 60 s and
2 GB, 1M rows in 15 minutes and 4 GB), each followed by "met" or "missing", the time of each state, and, for
planning only, what a 5M-row upload means for the deployed workflow: shards, the largest state payload, and the
largest number of rows one invocation handles.

Run with ``make bench-scale`` (1M rows) or ``python tests/bench/bench_scale.py --rows 100000``. It is a benchmark,
not a test: it never fails CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_pipeline import generate

# Targets by row count: (seconds from upload to summary, MB of the process tree's peak).
TARGETS = {100_000: (60, 2048), 1_000_000: (15 * 60, 4096)}
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _name(pid: int) -> str:
    """What a process of the tree is: the CLI (moto, local Bedrock, interpreter) or a function's worker."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = [w.decode(errors="replace") for w in words if w]
    functions = [w for w in text if w.endswith("/app.py")]
    return f"{Path(functions[0]).parent.name} worker" if functions else "batch-classifier run"


def _disk_used_mb(folder: Path) -> float:
    """Space in use on the file system that holds ``folder``: temporary files made unlinked (as Python's are) have
    no name to measure them by, but take space all the same."""
    stats = os.statvfs(folder)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize / 1024 / 1024


class Sampler(threading.Thread):
    """Peak memory of a process tree and of its largest process, and the peak growth of the disk space in use where
    ``folder`` (its temporary folder) is: its temporary files and everything else it writes there, as the local S3's
    objects and the results."""

    def __init__(self, pid: int, folder: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.folder = pid, folder
        self.tree_mb = self.process_mb = self.folder_mb = 0.0
        self._disk_before = _disk_used_mb(folder)
        self.process_name = ""
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            pids, queue = [], [self.pid]
            while queue:
                pid = queue.pop()
                pids.append(pid)
                queue += _children(pid)
            sizes = [_rss_mb(pid) for pid in pids]
            self.tree_mb = max(self.tree_mb, sum(sizes))
            largest = max(range(len(sizes)), key=sizes.__getitem__, default=None)
            if largest is not None and sizes[largest] > self.process_mb:
                self.process_mb, self.process_name = sizes[largest], _name(pids[largest])
            self.folder_mb = max(self.folder_mb, _disk_used_mb(self.folder) - self._disk_before)


def run_once(rows: int, work: Path) -> dict[str, Any]:
    source = work / f"scale-{rows}.csv"
    if not source.exists():
        generate(source, rows, "csv")
    scratch = work / "tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    command = [str(ROOT / ".venv" / "bin" / "batch-classifier"), "run", str(source), "--out", str(work / "results")]
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, text=True
    )
    sampler = Sampler(process.pid, scratch)
    sampler.start()
    output, _ = process.communicate()
    sampler.done.set()
    sampler.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        print(output[-3000:])
        raise SystemExit(f"batch-classifier run failed with exit code {process.returncode}")
    steps: dict[str, float] = {}
    for line in output.splitlines():
        found = re.match(r"\s*[\d.]+s\s+(\S+)\s+done in ([\d.]+)s", line)
        if found:
            steps[found[1]] = steps.get(found[1], 0.0) + float(found[2])
    print("steps: " + ", ".join(f"{name} {took:.1f} s" for name, took in steps.items() if took >= 0.05))
    finished = re.search(r"^finished in ([\d.]+)s", output, re.MULTILINE)
    return {
        "seconds": seconds,
        "run_seconds": float(finished[1]) if finished else seconds,
        "tree_mb": sampler.tree_mb,
        "process_mb": sampler.process_mb,
        "process_name": sampler.process_name,
        "tmp_mb": sampler.folder_mb,
        "input_mb": source.stat().st_size / 1024 / 1024,
    }


def plan(rows: int) -> None:
    """Planning figures of the deployed workflow for an upload of ``rows`` distinct texts (defaults)."""
    from batch_classifier.bedrock import polls_for  # noqa: PLC0415
    from batch_classifier.pipeline import estimate_job_bytes, request_count  # noqa: PLC0415
    from batch_classifier.records import BatchLineEncoder  # noqa: PLC0415
    from batch_classifier.settings import Settings  # noqa: PLC0415
    from batch_classifier.sharding import ShardKind, plan_shards  # noqa: PLC0415
    from batch_classifier.tasks import BatchLimits, load_task  # noqa: PLC0415
    from batch_classifier.workflow import RoundPlan, RunRef, ShardRef  # noqa: PLC0415

    task = load_task("travel")
    limits = BatchLimits()
    encoder = BatchLineEncoder(task)
    k = task.texts_per_request
    # Conversations of about 900 characters, k a request (a job's quotas count requests, as Bedrock counts records).
    job_bytes = estimate_job_bytes(rows, rows * 900, encoder, k)
    shards = plan_shards(request_count(rows, k), limits, job_bytes)
    run = RunRef(run_id="0" * 20, task="travel", bucket="b" * 63, key="input_data/" + "k" * 200, etag="e" * 34)
    shard = ShardRef(
        name="retry2-shard-00001",
        kind=ShardKind.BATCH,
        records=max(shards.batch_sizes),
        round=2,
        texts_key=f"runs/{run.run_id}/rounds/round-02/texts.jsonl",
        start=10**12,
        end=10**12,
        keyed=True,
        first_record_id="R0000000001",
        last_record_id="R9999999999",
    )
    payload = len(json.dumps({"run": run.model_dump(), "shard": shard.model_dump(mode="json"), "job": {}})) + 200
    polls = polls_for(
        168 * 3600, Settings(runs_table="t", customer_bucket="c", internal_bucket="i", poll_max_seconds=1800)
    )
    state = len(json.dumps({"run": run.model_dump(), "plan": RoundPlan(bucket="b" * 63, key="k" * 80).model_dump()}))
    print(
        f"planning, {rows:,} distinct texts ({request_count(rows, k):,} requests of up to {k}, the bundled task's) "
        f"with the default quotas: {len(shards.batch_sizes)} batch jobs of "
        f"{min(shards.batch_sizes):,}-{max(shards.batch_sizes):,} records ({job_bytes / 1e9:.1f} GB of job input); "
        f"largest state payload about {max(payload, state):,} bytes (a child's, the same at any size); "
        f"per invocation: ConvertInput, ShardRecords (reads the texts only) and FinalizeRun {rows:,} rows, "
        f"SubmitJob and ProcessShard at most {max(shards.batch_sizes):,}. A 168 h job takes {polls} polls with the "
        f"default waits (60 s doubling to 30 min), about {9 * polls + 30:,} events in its child workflow."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--plan-rows", type=int, default=5_000_000)
    parser.add_argument(
        "--work", type=Path, default=None, help="where to keep the generated file (default: a temp dir)"
    )
    parser.add_argument("--plan-only", action="store_true", help="print the planning figures only")
    args = parser.parse_args()
    plan(args.plan_rows)
    if args.plan_only:
        return
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as default_work:
        work = args.work or Path(default_work)
        work.mkdir(parents=True, exist_ok=True)
        figures = run_once(args.rows, work)
    seconds_target, tree_target = TARGETS.get(args.rows, (None, None))
    print(
        f"run of {args.rows:,} rows ({figures['input_mb']:.0f} MB of CSV): "
        f"{figures['run_seconds']:.1f} s from upload to summary{_against(figures['run_seconds'], seconds_target, 's')}"
        f" ({figures['seconds']:.0f} s with the local runtime's start); process tree peak "
        f"{figures['tree_mb']:,.0f} MB{_against(figures['tree_mb'], tree_target, 'MB')}; largest process "
        f"{figures['process_mb']:,.0f} MB ({figures['process_name']}); disk in use grew by at most "
        f"{figures['tmp_mb']:,.0f} MB (temporary files, the local S3's objects, the results)"
    )


def _against(value: float, target: float | None, unit: str) -> str:
    """`` (target ≤60 s: met)``, or ``missing`` when the value is over it; nothing for a row count without one."""
    if target is None:
        return ""
    return f" (target ≤{target:,} {unit}: {'met' if value <= target else 'missing'})"


if __name__ == "__main__":
    main()
