"""An input as the readers open it: its name, its first bytes peeked, then a forward stream over all of it or
random access to it (a temporary copy of a stream that cannot seek)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# How many bytes are peeked to recognise a file and its text encoding.
PEEK = 64 * 1024
_DEFAULT_NAME = "input"


def name_of(source: str | os.PathLike[str] | IO[bytes]) -> str:
    """The file name of a path or of a file object that knows one."""
    if isinstance(source, (str, os.PathLike)):
        return PurePath(os.fspath(source)).name
    known = getattr(source, "name", None)
    return PurePath(known).name if isinstance(known, str) and known else _DEFAULT_NAME


@dataclass(frozen=True, slots=True)
class Source:
    """An input whose first bytes were peeked: a path, or the caller's stream and where it started."""

    origin: str | IO[bytes]
    head: bytes
    start: int

    @classmethod
    def peek(cls, source: str | os.PathLike[str] | IO[bytes]) -> Source:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            with open(path, "rb") as handle:
                return cls(path, _read_head(handle), 0)
        start = source.tell() if _is_seekable(source) else 0
        return cls(source, _read_head(source), start)

    def forward(self, resources: ExitStack) -> tuple[IO[bytes], Callable[[], int]]:
        """A buffered binary stream over the whole input, read forwards only (no seeking needed), and how many of
        the input's bytes it has read so far."""
        if isinstance(self.origin, str):
            stream = resources.enter_context(open(self.origin, "rb"))  # noqa: SIM115 - the table closes it
            return stream, stream.tell
        raw = Prefixed(self.head, self.origin)
        return resources.enter_context(io.BufferedReader(raw, buffer_size=PEEK)), lambda: raw.count

    def size(self, given: int | None) -> int | None:
        """The input's size in bytes: a file's own, else ``given`` (a stream's, when its caller knows it)."""
        return os.path.getsize(self.origin) if isinstance(self.origin, str) else given

    def random_access(self, resources: ExitStack) -> str | IO[bytes]:
        """The path, the caller's stream rewound, or the path of a temporary copy of a stream that cannot seek (an
        upload's body; removed when ``resources`` close)."""
        if isinstance(self.origin, str):
            return self.origin
        if _is_seekable(self.origin):
            self.origin.seek(self.start)
            return self.origin
        spool = resources.enter_context(tempfile.NamedTemporaryFile(prefix="input-"))  # noqa: SIM115 - the table closes it
        spool.write(self.head)
        shutil.copyfileobj(self.origin, spool, 1024 * 1024)
        spool.flush()
        return spool.name


def _is_seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_head(stream: IO[bytes]) -> bytes:
    """Up to ``PEEK`` bytes from the stream (several reads if it returns short ones)."""
    parts: list[bytes] = []
    size = 0
    while size < PEEK:
        data = stream.read(PEEK - size)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


class Prefixed(io.RawIOBase):
    """The bytes already peeked from a stream, then the rest of that stream; never closes the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest
        self.count = 0  # bytes given out so far (the stream cannot tell its position)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if len(self._head):
            size = min(len(target), len(self._head))
            target[:size] = self._head[:size]
            self._head = self._head[size:]
            self.count += size
            return size
        data = self._rest.read(len(target)) or b""
        target[: len(data)] = data
        self.count += len(data)
        return len(data)
