"""Benchmark: how long the local runtime takes to come up, and a small run end to end.

Each measurement is a fresh process, as a user's `batch-classifier run` or `serve` is: the time to import and
start the runtime (moto's server, the local Bedrock) and deploy `template.yaml`, against a floor measured in the
same run (a Python process that only imports moto's server); then `batch-classifier run` on the sample file, from
the command to the printed summary. The target for a start is 10 s on a 2-core machine. It is a benchmark, not a
test: it prints, and never fails CI.

Run with ``make bench`` (it runs this after the pipeline benchmark) or ``python tests/bench/bench_start.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_START_SECONDS = 10.0
RUNS = 3

_START = """
import tempfile, time
from pathlib import Path
from batch_classifier_local.runtime import LocalRuntime
runtime = LocalRuntime(root=Path({root!r}), state_dir=Path(tempfile.mkdtemp()))
runtime.start()
runtime.deploy()
runtime.stop()
"""
_FLOOR = "import moto.server"


def _seconds(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    python = sys.executable
    floor = statistics.median(_seconds([python, "-c", _FLOOR]) for _ in range(RUNS))
    start = statistics.median(_seconds([python, "-c", _START.format(root=str(ROOT))]) for _ in range(RUNS))
    verdict = "met" if start <= TARGET_START_SECONDS else "MISSED"
    print(
        f"local runtime start (import, start, deploy template.yaml), median of {RUNS} fresh processes: {start:.1f} s "
        f"(target {TARGET_START_SECONDS:.0f} s: {verdict}); floor, importing moto's server alone: {floor:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-start-") as out:
        cli = str(Path(python).parent / "batch-classifier")
        run = _seconds([cli, "run", "sample-data/travel_calls.csv", "--out", out])
    print(f"batch-classifier run sample-data/travel_calls.csv (223 rows), command to summary: {run:.1f} s")


if __name__ == "__main__":
    main()
