"""Packed requests: which texts travel together in one model request, and which texts a request carried.

A task's ``texts_per_request`` (k) says how many distinct texts one request may carry. The texts of a shard are
taken in order, k at a time: a request is one batch record (one line of the job input, one on-demand call) whose
record id is ``P`` + the index of its first text, or ``R`` + the text's index when it carries one text only (the last
of a shard, or a text sent alone). Nothing is stored to map a request back to its texts: they are found again from the
shard, by the same grouping, when its results are judged (:class:`Requests`).

In a retry round's keyed texts file, a text whose id starts with ``S`` (:func:`alone_id`) is sent alone: a packed
reply left it unanswered, or answered it twice, or a request of several texts failed in a way the texts alone may
not. The other texts of a retry round are packed again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from .records import BatchLineEncoder, is_pack_id, is_text_id, record_id, record_index, request_id, request_ids

T = TypeVar("T")

#: The first letter of a keyed text id that is sent alone in its retry round.
ALONE_PREFIX = "S"


def alone_id(index: int) -> str:
    """The id of the ``index``-th text in a keyed texts file when it must be sent alone."""
    return ALONE_PREFIX + record_id(index)[1:]


def goes_alone(text_id: str) -> bool:
    return text_id[:1] == ALONE_PREFIX


@dataclass(frozen=True, slots=True)
class Request:
    """One model request: its batch record id and the indexes of the texts it carries, in their numbered order."""

    record_id: str
    indexes: tuple[int, ...]


def group_texts(items: Iterable[tuple[str, T]], per_request: int) -> Iterator[tuple[Request, list[T]]]:
    """Requests of up to ``per_request`` consecutive items ``(text id, payload)``, with their payloads, in order.

    A text whose id marks it to go alone (:func:`goes_alone`) ends the request being filled and is a request of its
    own. The grouping depends only on the order of the items, so whoever reads a shard's texts again finds the same
    requests.
    """
    indexes: list[int] = []
    payloads: list[T] = []
    for text_id, payload in items:
        index = record_index(text_id)
        if goes_alone(text_id):
            if indexes:
                yield _request(indexes), payloads
                indexes, payloads = [], []
            yield Request(record_id(index), (index,)), [payload]
            continue
        indexes.append(index)
        payloads.append(payload)
        if len(indexes) >= per_request:
            yield _request(indexes), payloads
            indexes, payloads = [], []
    if indexes:
        yield _request(indexes), payloads


def consecutive_requests(
    payloads: Iterable[T], first_index: int, per_request: int
) -> Iterator[tuple[Request, list[T]]]:
    """:func:`group_texts` of the payloads of the consecutive texts ``first_index``, ``first_index + 1``, ..., none of
    them sent alone (a round-0 shard), without a text id made and read again for each."""
    payloads = iter(payloads)
    index = first_index
    while chunk := list(islice(payloads, per_request)):
        count = len(chunk)
        yield Request(request_id(index, count), tuple(range(index, index + count))), chunk
        index += count


@dataclass(frozen=True, slots=True)
class LineBatch:
    """The batch input lines of consecutive requests, in pieces to be written one after the other: the line of the
    ``n``-th request is ``pieces[n * stride:(n + 1) * stride]``, ``sizes[n]`` bytes long. Each request carries
    ``texts`` texts, from index ``firsts[n]`` to ``lasts[n]``."""

    pieces: list[bytes]
    stride: int
    sizes: list[int]
    firsts: Sequence[int]
    lasts: Sequence[int]
    texts: int

    def __len__(self) -> int:
        return len(self.sizes)

    def lines(self, start: int, end: int) -> list[bytes]:
        """The pieces of the lines of requests ``start`` to ``end`` (excluded)."""
        return self.pieces[start * self.stride : end * self.stride]


def request_batches(
    requests: Iterable[tuple[Request, Sequence[bytes]]], encoder: BatchLineEncoder
) -> Iterator[LineBatch]:
    """A batch of one line for each request with its escaped texts (as :func:`group_texts` makes them)."""
    for request, texts in requests:
        line = encoder.encode_request(request.record_id, texts)
        yield LineBatch([line], 1, [len(line)], request.indexes[:1], request.indexes[-1:], len(request.indexes))


def consecutive_batches(
    chunks: Iterable[list[bytes]], first_index: int, per_request: int, encoder: BatchLineEncoder
) -> Iterator[LineBatch]:
    """The lines of the requests of consecutive escaped texts from ``first_index`` (a round-0 shard, a run's texts
    file), given a list of texts at a time: the requests :func:`consecutive_requests` makes, one batch for the whole
    requests a list completes. Each batch is put together from slices of lists, with nothing done in Python for each
    request or text, and written as it is (its pieces are joined by the writer)."""
    k = per_request
    fixed = encoder.request_pieces(k)
    stride = 2 * k + 3  # the k + 2 fixed pieces, the record id and the k texts
    overhead = encoder.request_overhead(k) + len(request_id(first_index, k))
    index, carry = first_index, list[bytes]()
    for chunk in chunks:
        texts = carry + chunk if carry else chunk
        count = len(texts) // k
        carry = texts[count * k :]
        if not count:
            continue
        pieces: list[bytes] = [b""] * (count * stride)
        pieces[1::stride] = request_ids(index, k, count)
        for n, piece in enumerate(fixed):
            pieces[2 * n :: stride] = [piece] * count
        for n in range(k):
            pieces[2 * n + 3 :: stride] = texts[n : count * k : k]
        lengths = map(len, texts[: count * k])
        sizes = list(map(overhead.__add__, map(sum, zip(*[lengths] * k, strict=True))))
        starts = range(index, index + count * k, k)
        yield LineBatch(pieces, stride, sizes, starts, range(index + k - 1, index + count * k, k), k)
        index += count * k
    if carry:
        yield from request_batches([(_request(list(range(index, index + len(carry)))), carry)], encoder)


def _request(indexes: list[int]) -> Request:
    return Request(request_id(indexes[0], len(indexes)), tuple(indexes))


def requests_in_range(first: int, last: int, per_request: int) -> Iterator[Request]:
    """The requests of the consecutive texts ``first``..``last`` (a round-0 shard), as :func:`group_texts` groups
    them."""
    for start in range(first, last + 1, per_request):
        end = min(start + per_request - 1, last)
        yield Request(request_id(start, end - start + 1), tuple(range(start, end + 1)))


class Requests:
    """The texts each request of a set of shards carried: ``texts_of(record id)``.

    Built from shards of consecutive texts (``add_range``, arithmetic, nothing stored per request) or from the
    requests a keyed shard's texts make (``add``)."""

    def __init__(self, per_request: int) -> None:
        self.per_request = per_request
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._listed: dict[str, tuple[int, ...]] = {}

    def add_range(self, first: int, last: int) -> None:
        """A shard of the consecutive texts ``first``..``last``, grouped from ``first``."""
        at = bisect.bisect_left(self._starts, first)
        self._starts.insert(at, first)
        self._ends.insert(at, last)

    def add(self, request: Request) -> None:
        if len(request.indexes) > 1:
            self._listed[request.record_id] = request.indexes

    def texts_of(self, rid: str) -> tuple[int, ...] | None:
        """The indexes of the texts the request ``rid`` carried; None when ``rid`` is not one of these requests'."""
        if is_text_id(rid):
            return (record_index(rid),)
        if not is_pack_id(rid):
            return None
        listed = self._listed.get(rid)
        if listed is not None:
            return listed
        first = record_index(rid)
        at = bisect.bisect_right(self._starts, first) - 1
        if at < 0 or first > self._ends[at] or (first - self._starts[at]) % self.per_request:
            return None
        end = min(first + self.per_request - 1, self._ends[at])
        return tuple(range(first, end + 1)) if end > first else None
