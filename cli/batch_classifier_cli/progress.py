"""A progress line on standard error for long work: redrawn in place on a terminal, sparse otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Call with ``(stage, count)`` as work advances; ``done()`` ends the line."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval if interval is not None else (0.2 if self._tty else 10.0)
        self._started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def __call__(self, stage: str, count: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        rate = count / elapsed if elapsed > 0 else 0.0
        text = f"{stage}: {count:,} ({rate:,.0f}/s, {elapsed:.0f}s)"
        if self._tty:
            self._stream.write(f"\r\033[K{text}")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown and self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()
