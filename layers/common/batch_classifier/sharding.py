"""Shard planning: dividing the distinct texts of a run into Bedrock batch jobs.

Each job must hold between ``min_records_per_job`` and ``max_records_per_job`` records and its input file must
stay under ``max_bytes_per_file``. Shards are balanced (50,050 records with a 50,000 cap become two jobs of
25,025, not 50,000 and 50). Records that cannot fill a job of the minimum size go to one on-demand shard,
classified with direct model calls; nothing is ever padded with dummy records.

A record is one model request: one text, or up to the task's ``texts_per_request`` texts packed together
(:mod:`.packing`). Quotas count records, as Bedrock does; a shard also counts the texts its records carry, and its
record id range is that of its texts (shards always hold whole requests).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate
from typing import Any, Protocol

from .packing import LineBatch
from .records import record_id
from .tasks import BatchLimits

# Leave room under the byte cap for the estimate being an estimate.
_BYTES_HEADROOM = 0.9


class ShardKind(StrEnum):
    BATCH = "batch"
    ON_DEMAND = "on_demand"


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Planned record counts: one entry per batch job, then the on-demand remainder."""

    batch_sizes: tuple[int, ...]
    on_demand: int

    @property
    def total(self) -> int:
        return sum(self.batch_sizes) + self.on_demand


@dataclass(slots=True)
class Shard:
    """A written shard: its name, kind, record (request) count, text count, size and the record ids of its first and
    last texts."""

    name: str
    kind: ShardKind
    records: int = 0
    bytes: int = 0
    first_record_id: str | None = None
    last_record_id: str | None = None
    texts: int = 0
    # Where the shard's texts are in the file it was planned over (see :func:`cut_shards`).
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "records": self.records,
            "texts": self.texts,
            "bytes": self.bytes,
            "first_record_id": self.first_record_id,
            "last_record_id": self.last_record_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(
            name=data["name"],
            kind=ShardKind(data["kind"]),
            records=data["records"],
            bytes=data["bytes"],
            first_record_id=data.get("first_record_id"),
            last_record_id=data.get("last_record_id"),
            texts=data.get("texts", data["records"]),
        )


def plan_shards(distinct: int, limits: BatchLimits, estimated_bytes: int = 0) -> ShardPlan:
    """Balanced batch job sizes for ``distinct`` records, and the remainder for the on-demand path."""
    low, high = limits.min_records_per_job, limits.max_records_per_job
    if distinct < low:
        return ShardPlan(batch_sizes=(), on_demand=distinct)
    by_count = math.ceil(distinct / high)
    by_bytes = math.ceil(estimated_bytes / (limits.max_bytes_per_file * _BYTES_HEADROOM))
    jobs = min(max(by_count, by_bytes), distinct // low)
    base, extra = divmod(distinct, jobs)
    if base + (1 if extra else 0) <= high:
        return ShardPlan(batch_sizes=tuple(base + (i < extra) for i in range(jobs)), on_demand=0)
    # The limits are too close together to balance (max < 2 * min): fill jobs, send what is left over
    # either to one more job or, below the minimum, to on-demand.
    full, rest = divmod(distinct, high)
    sizes = [high] * full
    if rest >= low:
        return ShardPlan(batch_sizes=(*sizes, rest), on_demand=0)
    return ShardPlan(batch_sizes=tuple(sizes), on_demand=rest)


class ShardSink(Protocol):
    """Where a shard's lines go: a local file, an S3 upload."""

    def writelines(self, pieces: Sequence[bytes], /) -> None: ...

    def close(self) -> None: ...


ShardOpener = Callable[[Shard], ShardSink]


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


class _Cutter:
    """Decides where shards start while lines are counted: ``plan`` gives each batch shard's target size, and a
    batch shard whose next line would pass the byte cap is closed early (the rest of its target moves on)."""

    def __init__(self, plan: ShardPlan, limits: BatchLimits, prefix: str) -> None:
        self._targets: deque[float] = deque(plan.batch_sizes)
        self._target: float = 0
        self._limits = limits
        self._prefix = prefix
        self.shards: list[Shard] = []

    @property
    def current(self) -> Shard:
        return self.shards[-1]

    def add(self, first: str, last: str, texts: int, line_bytes: int) -> bool:
        """Count one line of ``line_bytes``, a request of ``texts`` texts from record id ``first`` to ``last``; True
        when it starts a new shard (the previous one is complete)."""
        started = self._next_shard(first, line_bytes)
        shard = self.current
        shard.records += 1
        shard.texts += texts
        shard.bytes += line_bytes
        shard.last_record_id = last
        return started

    def add_batch(self, batch: LineBatch, start: int) -> tuple[int, bool]:
        """Count the lines of ``batch`` from its ``start``-th into the current shard, as :meth:`add` would one at a
        time, up to the first that starts the next shard: how many were counted, and whether the first of them
        started a new shard."""
        sizes = batch.sizes
        started = self._next_shard(record_id(batch.firsts[start]), sizes[start])
        shard = self.current
        end = len(sizes) if self._target == math.inf else min(len(sizes), start + int(self._target) - shard.records)
        added = sum(sizes[start:end])
        if shard.kind is ShardKind.BATCH and shard.bytes + added > self._limits.max_bytes_per_file:
            room = self._limits.max_bytes_per_file - shard.bytes
            # The lines that fit under the byte cap; the first always goes in (a new shard takes a line of any size).
            end = max(start + 1, start + bisect.bisect_right(list(accumulate(sizes[start:end])), room))
            added = sum(sizes[start:end])
        shard.records += end - start
        shard.texts += batch.texts * (end - start)
        shard.bytes += added
        shard.last_record_id = record_id(batch.lasts[end - 1])
        return end - start, started

    def _next_shard(self, first: str, line_bytes: int) -> bool:
        """Start a new shard at the request whose first record id is ``first`` when the current one cannot take a line
        of ``line_bytes`` (or there is none yet); True when one was started."""
        if self.shards and not _full(self.current, self._target, line_bytes, self._limits):
            return False
        if self.shards and self.current.records < self._target:
            self._targets.appendleft(self._target - self.current.records)
        kind = ShardKind.BATCH if self._targets else ShardKind.ON_DEMAND
        self._target = self._targets.popleft() if self._targets else math.inf
        name = self._prefix + shard_name(len(self.shards) + 1)
        self.shards.append(Shard(name=name, kind=kind, first_record_id=first))
        return True


def write_shards(
    batches: Iterable[LineBatch],
    plan: ShardPlan,
    limits: BatchLimits,
    open_shard: ShardOpener,
    prefix: str = "",
) -> list[Shard]:
    """Write the lines of requests (:func:`.packing.consecutive_batches`, or :func:`.packing.request_batches` of
    requests with their escaped texts) into shard files following ``plan`` (counted in requests); returns the shards
    written.

    ``open_shard`` opens the destination of a shard (a local file, an S3 upload); it is closed when the shard
    is full. The byte cap is enforced while writing: a batch shard that would exceed it is closed early and
    the rest of its planned records move to the next shard. Shard names are ``<prefix>shard-00001``, ...
    """
    cutter = _Cutter(plan, limits, prefix)
    out: ShardSink | None = None
    try:
        for batch in batches:
            start = 0
            while start < len(batch):
                added, started = cutter.add_batch(batch, start)
                if started:
                    if out is not None:
                        out.close()
                    out = open_shard(cutter.current)
                assert out is not None  # opened with the first line
                out.writelines(batch.lines(start, start + added))
                start += added
    finally:
        if out is not None:
            out.close()
    return cutter.shards


def cut_shards(
    items: Iterable[tuple[str, str, int, int, int]], plan: ShardPlan, limits: BatchLimits, prefix: str = ""
) -> list[Shard]:
    """Plan shards over a texts file without writing them: ``items`` are the requests its texts make, in order, as
    ``(record id of the first text, of the last, texts, bytes of the batch line, bytes of its texts' lines in the
    texts file)``; each shard gets the byte range ``[start, end)`` of its texts, so that its job input can be written
    later, by whoever handles that shard."""
    cutter = _Cutter(plan, limits, prefix)
    offset = 0
    for first, last, texts, line_bytes, source_bytes in items:
        if cutter.add(first, last, texts, line_bytes):
            cutter.current.start = offset
        offset += source_bytes
        cutter.current.end = offset
    return cutter.shards


def _full(shard: Shard, target: float, line_bytes: int, limits: BatchLimits) -> bool:
    if shard.records >= target:
        return True
    return shard.kind is ShardKind.BATCH and shard.bytes + line_bytes > limits.max_bytes_per_file
