"""Progress of long work on standard error: a bar with percentage and ETA on a terminal (drawn by tqdm), plain
lines every so often otherwise (CI logs, pipes), with no escape codes.

A stage's total may be unknown (rows of an input being read): the bar then shows a count and a rate, and the
percentage and ETA appear once a total is given.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from tqdm import tqdm

#: Seconds between two plain lines when the output is not a terminal (a line also marks each tenth of a total).
PLAIN_INTERVAL = 10.0
#: Seconds between two redraws of an unchanged bar, so that its elapsed time and ETA keep moving.
REDRAW_INTERVAL = 0.5


class ProgressLine:
    """Call with ``(stage, count)`` as work advances (the shared package's progress callback), or ``update`` with a
    total; ``write`` prints a line above the bar; ``done()`` clears the bar.

    ``unit`` is written as given after a count and before ``/s`` (`` rows``: "20000 rows", "5000.00 rows/s";
    ``shard``: "2.50shard/s", or "12.00s/shard" when slow). ``totals`` gives the total of a stage known in advance
    (``{"writing results": 1_000}``). ``tty`` forces the terminal (``True``) or plain (``False``) output, which
    otherwise follows ``stream.isatty()``."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        unit: str = " rows",
        totals: Mapping[str, int] | None = None,
        interval: float = PLAIN_INTERVAL,
        tty: bool | None = None,
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._unit = unit
        self._totals = dict(totals or {})
        self._interval = interval
        self._bar: Any = None  # tqdm's bar of the current stage, on a terminal
        self._stage: str | None = None
        self._count = 0
        self._total: int | None = None
        self._started = time.monotonic()
        self._last_line = self._started
        self._last_tenth = 0
        self._last_draw = 0.0

    def __call__(self, stage: str, count: int, total: int | None = None) -> None:
        self.update(stage, count, total)

    def update(self, stage: str, count: int, total: int | None = None, note: str | None = None) -> None:
        """``count`` of ``total`` done in ``stage`` (a new stage starts its own bar and clock); ``note`` names the
        bar instead of the stage (what is going on now, such as the state a workflow is in)."""
        total = total if total is not None else self._totals.get(stage)
        if total is not None and (total <= 0 or count > total):
            total = None  # a total that does not hold would show a wrong percentage: show the count alone
        if stage != self._stage:
            self._start(stage)
        label = note or stage
        if self._tty:
            self._draw(label, count, total)
        else:
            self._plain(label, count, total)
        self._count, self._total = count, total

    def write(self, line: str, file: TextIO | None = None) -> None:
        """Print ``line`` (to standard output unless ``file`` says otherwise) above the bar, which stays below it."""
        out = file or sys.stdout
        if self._bar is not None:
            tqdm.write(line, file=out)
            out.flush()
        else:
            print(line, file=out, flush=True)

    def done(self) -> None:
        """End the current stage: its bar is cleared from the terminal."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stage = None

    # --- inside -------------------------------------------------------------------------------------------

    def _start(self, stage: str) -> None:
        self.done()
        self._stage = stage
        self._count, self._total = 0, None
        self._started = self._last_line = time.monotonic()
        self._last_tenth = 0

    def _draw(self, label: str, count: int, total: int | None) -> None:
        now = time.monotonic()
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                initial=count,  # drawn at once, with what is already done
                desc=label,
                unit=self._unit,
                file=self._stream,
                leave=False,
                dynamic_ncols=True,
                mininterval=0.2,
            )
            self._last_draw = now
        bar = self._bar
        if total != bar.total or label != bar.desc:
            bar.total = total
            bar.set_description_str(label, refresh=False)
            bar.refresh()
            self._last_draw = now
        if count != bar.n:
            bar.update(count - bar.n)
        elif now - self._last_draw >= REDRAW_INTERVAL:
            bar.refresh()  # nothing moved, but the elapsed time and the ETA did
            self._last_draw = now

    def _plain(self, label: str, count: int, total: int | None) -> None:
        now = time.monotonic()
        tenth = count * 10 // total if total else 0
        if now - self._last_line < self._interval and tenth <= self._last_tenth:
            return
        self._last_line, self._last_tenth = now, tenth
        line = tqdm.format_meter(count, total, now - self._started, ncols=0, prefix=label, unit=self._unit)
        self._stream.write(line.strip() + "\n")
        self._stream.flush()
