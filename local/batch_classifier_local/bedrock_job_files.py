"""A local Bedrock batch job's files: its input read from S3, its output lines until they are written, its output.

A job's memory does not grow with its records (beyond a few bytes each): validation (:func:`read_input`) copies
each input file from S3 to a local temporary file a chunk at a time and checks it line by line, keeping one byte
per record (can it be answered); the job reads the copies again, line by line, to answer them
(:func:`stream_records`); the output lines wait in local temporary files, with where each ends (:class:`Spool`);
and each output file is uploaded from there in a shuffled order (:func:`write_output`) as a multipart upload whose
parts are read from those files as boto3 sends them (moto, in the process of the local runtime, holds a whole PUT's
body in memory; the runtime's patches make it join parts and serve GETs from disk).

The output layout is Bedrock's: ``<output uri>/<job id>/<input file name>.out`` and
``<output uri>/<job id>/manifest.json.out``.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import random
import shutil
import tempfile
from array import array
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from boto3.s3.transfer import TransferConfig

from .bedrock_api import split_uri

MANIFEST_NAME = "manifest.json.out"
# Outputs go up in 8 MiB parts, one at a time: the process that serves S3 is this one.
_UPLOAD = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, use_threads=False)
# Bytes read at a time from an input body and from the local copy of an input file.
_READ_BYTES = 256 * 1024
# Bytes of output lines a spool gathers before it writes them: a job adds its lines one by one, and each write to a
# file lets the other threads of the process (moto's server, the interpreter) take the interpreter for a while.
_SPOOL_BUFFER = 256 * 1024


class JobFailure(Exception):
    """A reason for a job to end Failed."""


@dataclass
class Record:
    file: str  # the output file name of its input file, without ``.out``
    record_id: str
    model_input: Any  # None when the line was not JSON
    problem: str | None = None  # why the line cannot be answered (written as a 400 error)


@dataclass(frozen=True)
class InputFile:
    name: str  # its output file name, without ``.out``
    copy: IO[bytes]  # the file as validation read it from S3 (the job answers this version)


@dataclass
class JobInput:
    """What validation keeps of a job's input: local copies of its files, and enough to plan the job's faults."""

    files: list[InputFile] = field(default_factory=list)
    answerable: bytearray = field(default_factory=bytearray)  # per record in input order: 1 unless a 400 error

    def __enter__(self) -> JobInput:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, name: str) -> IO[bytes]:
        """A new local copy, empty, for the input file whose output file is ``name``."""
        copy = local_file()
        self.files.append(InputFile(name, copy))
        return copy

    def close(self) -> None:
        """Delete the copies."""
        for file in self.files:
            file.copy.close()


class Spool:
    """A job's output lines until they are written: each output file's lines (JSON text and a newline) appended to
    a local temporary file (a few hundred KB at a time), with where each line ends. Close it to delete the files."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[IO[bytes], array[int]]] = {}
        self._pending: dict[str, bytearray] = {}  # lines not written yet, by file

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, name: str, line: bytes) -> None:
        entry = self._files.get(name)
        if entry is None:
            entry = self._files[name] = (local_file(), array("Q"))
            self._pending[name] = bytearray()
        ends = entry[1]
        pending = self._pending[name]
        pending += line
        if len(pending) >= _SPOOL_BUFFER:
            self._write(name)
        ends.append((ends[-1] if ends else 0) + len(line))

    def _write(self, name: str) -> None:
        """Write the lines added since the last write (a job adds its lines one by one)."""
        pending = self._pending[name]
        if pending:
            self._files[name][0].write(pending)
            pending.clear()

    def names(self) -> list[str]:
        """The output files that have lines, sorted."""
        return sorted(self._files)

    def count(self, name: str) -> int:
        return len(self._files[name][1])

    def reader(self, name: str, order: Sequence[int]) -> _LinesInOrder:
        """A file object of a file's lines in the given order (line numbers, in the order they were added)."""
        self._write(name)
        file, ends = self._files[name]
        file.flush()
        return _LinesInOrder(file, ends, order)

    def close(self) -> None:
        files, self._files, self._pending = self._files, {}, {}
        for file, _ in files.values():
            file.close()


class _LinesInOrder:
    """A read-only, seekable file object of a spool file's lines in another order, read from the spool file as it is
    read (boto3 reads an upload body more than once: for its checksums, then to send it)."""

    def __init__(self, file: IO[bytes], ends: array[int], order: Sequence[int]) -> None:
        self._file = file
        self._ends = ends
        self._order = order
        self._stops = array("Q")  # where each line ends in this file
        size = 0
        for number in order:
            size += ends[number] - (ends[number - 1] if number else 0)
            self._stops.append(size)
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the spool owns the file (s3transfer closes what it uploaded)."""

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = max(self._size - self._position, 0)
        wanted = left if size is None or size < 0 else min(size, left)
        pieces: list[bytes] = []
        while wanted > 0:
            at = bisect.bisect_right(self._stops, self._position)  # the line the position is in
            number = self._order[at]
            start = self._ends[number - 1] if number else 0
            inside = self._position - (self._stops[at] - (self._ends[number] - start))
            count = min(wanted, self._ends[number] - start - inside)
            self._file.seek(start + inside)
            piece = self._file.read(count)
            if len(piece) != count:
                raise OSError("a spool file is shorter than its lines.")
            pieces.append(piece)
            self._position += count
            wanted -= count
        return b"".join(pieces)


def local_file() -> IO[bytes]:
    """A local temporary file for a job's input copy or output lines (deleted when closed)."""
    return tempfile.TemporaryFile(prefix="local-bedrock-")


# --- reading the input ---------------------------------------------------------------------------------


def read_input(s3: Any, input_uri: str, output_uri: str, closed: Callable[[], bool]) -> JobInput:
    """Copy the input files from S3 and check them line by line: which records can be answered (the rest are
    400 errors). Raises JobFailure when the input cannot be read or holds no records, when the output bucket
    cannot be reached, and when ``closed()`` says the service is stopping."""
    bucket, key = split_uri(input_uri)
    source = JobInput()
    try:
        for file_key, name in _input_files(s3, input_uri, bucket, key):
            copy = source.add(name)
            try:
                body = s3.get_object(Bucket=bucket, Key=file_key)["Body"]
                with contextlib.closing(body):
                    shutil.copyfileobj(body, copy, _READ_BYTES)
            except Exception as exc:
                raise JobFailure(f"Could not read the input file s3://{bucket}/{file_key}: {exc}") from None
            copy.seek(0)
            for raw in lines(copy):
                if closed():
                    raise JobFailure("The service is stopping.")
                if raw.strip():
                    record = parse_input_line(raw, name, len(source.answerable))
                    source.answerable.append(record.problem is None)
        if not source.answerable:
            raise JobFailure(f"The input at {input_uri} holds no records.")
        out_bucket, _ = split_uri(output_uri)
        try:
            s3.head_bucket(Bucket=out_bucket)
        except Exception as exc:
            raise JobFailure(f"Could not access the output bucket {out_bucket}: {exc}") from None
    except BaseException:
        source.close()
        raise
    return source


def _input_files(s3: Any, input_uri: str, bucket: str, key: str) -> list[tuple[str, str]]:
    """(key, output name) of every input file: the object itself, or the ``.jsonl`` files under the prefix."""
    if key and not key.endswith("/"):
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except Exception:
            pass  # not an object: a prefix
        else:
            if not key.lower().endswith(".jsonl"):
                raise JobFailure(f"The input file {input_uri} is not a .jsonl file.")
            return [(key, key.rsplit("/", 1)[-1])]
    prefix = key if not key or key.endswith("/") else key + "/"
    found: list[tuple[str, str]] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"]
                if name.lower().endswith(".jsonl"):
                    found.append((name, name[len(prefix) :]))
    except Exception as exc:
        raise JobFailure(f"Could not list the input location {input_uri}: {exc}") from None
    if not found:
        raise JobFailure(f"No .jsonl input files were found at {input_uri}.")
    return sorted(found)


def stream_records(source: JobInput, limit: int) -> Generator[tuple[int, Record]]:
    """The first ``limit`` records of the input with their index, read again from the copies line by line."""
    index = 0
    for file in source.files:
        file.copy.seek(0)
        for raw in lines(file.copy):
            if not raw.strip():
                continue
            if index >= limit:
                return
            yield index, parse_input_line(raw, file.name, index)
            index += 1


def parse_input_line(raw: bytes, file: str, index: int) -> Record:
    generated = f"{index + 1:011d}"  # Bedrock adds a record id to lines without one
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Record(file, generated, None, f"The line is not a JSON object: {exc}")
    if not isinstance(doc, dict):
        return Record(file, generated, None, "The line is not a JSON object.")
    rid = doc.get("recordId", generated)
    if not isinstance(rid, str) or not rid:
        return Record(file, generated, doc.get("modelInput"), "recordId must be a non-empty string.")
    model_input = doc.get("modelInput")
    if not isinstance(model_input, dict):
        return Record(file, rid, model_input, "modelInput is required and must be a JSON object.")
    return Record(file, rid, model_input)


def lines(body: Any, size: int = _READ_BYTES) -> Iterator[bytes]:
    """The lines of a binary file object, read ``size`` bytes at a time, without their ends; split as
    ``bytes.splitlines()`` splits a whole body (at ``\\n``, ``\\r\\n`` and ``\\r``)."""
    start: list[bytes] = []  # the start of a line that runs on into the next chunk
    after_cr = False  # the last chunk ended with \r: a \n beginning the next one ends the same line
    while chunk := body.read(size):
        if after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        after_cr = False
        pieces = chunk.splitlines(keepends=True)
        for piece in pieces:
            if piece.endswith(b"\r\n"):
                text = piece[:-2]
            elif piece.endswith((b"\n", b"\r")):
                text = piece[:-1]
            else:  # the chunk ended inside this line
                start.append(piece)
                continue
            if start:
                start.append(text)
                text = b"".join(start)
                start.clear()
            yield text
        after_cr = bool(pieces) and pieces[-1].endswith(b"\r")
    if start:
        yield b"".join(start)


# --- writing the output --------------------------------------------------------------------------------


def write_output(s3: Any, output_uri: str, job_id: str, manifest: dict[str, int], spool: Spool) -> None:
    """Upload the spooled output files, each in a shuffled order (Bedrock does not keep the input order), then the
    manifest; JobFailure when S3 refuses."""
    bucket, key = split_uri(output_uri)
    prefix = f"{key.rstrip('/')}/{job_id}/" if key.strip("/") else f"{job_id}/"
    shuffle = random.Random(job_id)
    try:
        for name in spool.names():
            order = array("L", range(spool.count(name)))
            shuffle.shuffle(order)
            s3.upload_fileobj(spool.reader(name, order), bucket, f"{prefix}{name}.out", Config=_UPLOAD)
        s3.put_object(Bucket=bucket, Key=prefix + MANIFEST_NAME, Body=json.dumps(manifest).encode())
    except Exception as exc:
        raise JobFailure(f"Could not write the output to s3://{bucket}/{prefix}: {exc}") from None
