"""Writing a file on a thread of its own, so that making the next bytes and writing the last ones overlap.

``prepare`` writes several times its input's size (every request repeats the task's prompt): while a write copies
bytes into the operating system's cache it holds no interpreter lock, so a second thread keeps the writes going while
the first encodes the next lines, and both of a machine's cores are busy.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Sequence
from itertools import accumulate
from types import TracebackType
from typing import Protocol, Self


class Destination(Protocol):
    """What a :class:`WriteBehind` writes to: a file opened for binary writing, an :class:`.storage.UploadFile`."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


class WriteBehind:
    """A binary file (a local file, an S3 upload) written from a thread of its own.

    Small writes are gathered into pieces of about ``piece`` bytes, joined and written by the thread (a join of a
    megabyte and more copies without the interpreter lock); at most ``depth`` pieces wait, so memory stays at a few of
    them. :meth:`close` waits for the last write and closes the file; an error the writing thread met is
    raised by the next :meth:`write` or by :meth:`close`. Left by an exception, it aborts (:meth:`abort`): an upload
    then publishes nothing."""

    def __init__(self, out: Destination, *, piece: int = 1 << 20, depth: int = 4) -> None:
        self._out = out
        self._piece = piece
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        self.writelines((data,))
        return len(data)

    def writelines(self, pieces: Sequence[bytes]) -> None:
        """Write ``pieces`` one after the other. They are handed over about ``piece`` bytes at a time (a piece small
        enough to stay in the processor's cache between the join and the write), and joined by the writing thread."""
        if self._error is not None:
            raise self._error
        if not pieces:
            return
        # ends[i]: the bytes pending once pieces[:i] are added, counting those handed over since (``done``).
        ends = list(accumulate(map(len, pieces), initial=self._pending_bytes))
        start = done = 0
        while ends[-1] - done >= self._piece:
            cut = bisect.bisect_left(ends, done + self._piece, lo=start + 1)  # pieces[start:cut] fill a piece
            self._pending.extend(pieces[start:cut])
            self._hand_over()
            start, done = cut, ends[cut]
        self._pending.extend(pieces[start:])
        self._pending_bytes = ends[-1] - done

    def _hand_over(self) -> None:
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []
            self._pending_bytes = 0

    def _run(self) -> None:
        while (pieces := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._out.write(b"".join(pieces))
                except BaseException as error:
                    self._error = error

    def close(self) -> None:
        """Write what is left, wait for the thread and close the file (idempotent)."""
        if self._stop(keep=True):
            self._out.close()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop writing: wait for the thread, then drop the file (:meth:`.storage.Upload.abort` for an upload, which
        publishes nothing), or close it when it cannot be dropped (idempotent)."""
        if self._stop(keep=False):
            abort = getattr(self._out, "abort", None)
            if callable(abort):
                abort()
            else:
                self._out.close()

    def _stop(self, *, keep: bool) -> bool:
        """Hand over what is pending (``keep``) or drop it, then wait for the thread; False when already stopped."""
        if self._closed:
            return False
        self._closed = True
        try:
            if keep:
                self._hand_over()
            else:
                self._pending.clear()
        finally:  # the thread stops even when the hand-over fails
            self._queue.put(None)
            self._thread.join()
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.abort()
        else:
            self.close()
