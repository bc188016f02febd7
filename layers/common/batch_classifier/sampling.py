"""A reproducible random sample of an input file's rows, plain or stratified by a column.

The labelling loop starts from a small sample (about 150 rows) that a subject-matter expert reviews. The sample is
drawn in one streaming pass with reservoir sampling (memory holds the sample, never the file), from a
``random.Random(seed)``, so the same file, size and seed always give the same rows. Stratified, it first counts
the rows of each value of the column (a first pass), gives each value a share of ``n`` in proportion to its rows
(largest remainders; every value gets at least one row when ``n`` allows, so rare classes are reviewed too),
then draws each value's share in a second pass. Rows keep their file order in the sample.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import BatchClassifierError, MissingColumnError
from .readers import Row, open_table

BLANK = "(blank)"  # the stratum of rows whose column is empty


class SampleError(BatchClassifierError):
    """A sample that cannot be drawn as asked (a size below 1)."""


@dataclass
class Sample:
    """The rows drawn (in file order), the file's columns, and how many rows it has, in all and per stratum."""

    columns: list[str]
    rows: list[Row]
    total: int
    strata: dict[str, tuple[int, int]] = field(default_factory=dict)  # value → (rows in the file, rows drawn)


def draw_sample(
    path: str | os.PathLike[str], n: int, *, seed: int = 1, stratify: str | None = None, **open_options: Any
) -> Sample:
    """Draw ``n`` rows of ``path`` (all of them when it has no more), stratified by the column ``stratify``."""
    if n < 1:
        raise SampleError(f"a sample needs at least 1 row, not {n}.")
    rng = random.Random(seed)
    if stratify is None:
        with open_table(path, **open_options) as table:
            columns = list(table.columns)
            kept, total = _reservoir(table.rows(), n, rng)
        return Sample(columns, sorted(kept, key=lambda row: row.number), total)
    with open_table(path, **open_options) as table:
        columns = list(table.columns)
        if stratify not in columns:
            raise MissingColumnError(
                f"{table.name!r} has no column {stratify!r} to stratify by; its columns are: "
                f"{', '.join(repr(c) for c in columns)}."
            )
        counts = Counter(_stratum(row, stratify) for row in table.rows())
    shares = allocate(counts, n)
    reservoirs: dict[str, list[Row]] = {value: [] for value in counts}
    seen: Counter[str] = Counter()
    with open_table(path, **open_options) as table:
        for row in table.rows():
            value = _stratum(row, stratify)
            _offer(reservoirs[value], row, seen[value], shares[value], rng)
            seen[value] += 1
    kept = sorted((row for rows in reservoirs.values() for row in rows), key=lambda row: row.number)
    strata = {
        value: (counts[value], len(reservoirs[value])) for value in sorted(counts, key=counts.__getitem__, reverse=True)
    }
    return Sample(columns, kept, sum(counts.values()), strata)


def allocate(counts: Counter[str], n: int) -> dict[str, int]:
    """Each stratum's share of ``n``: proportional to its rows by largest remainders, at least one each when ``n``
    is at least the number of strata, never more than the stratum has."""
    total = sum(counts.values())
    if n >= total:
        return dict(counts)
    floor = 1 if n >= len(counts) else 0
    shares = {value: max(floor, n * rows // total) for value, rows in counts.items()}
    order = sorted(counts, key=lambda value: (-(n * counts[value] % total), value))
    while sum(shares.values()) < n:
        for value in order:
            if sum(shares.values()) >= n:
                break
            if shares[value] < counts[value]:
                shares[value] += 1
    while sum(shares.values()) > n:  # the floor of one each can overshoot: take back from the largest
        largest = max(shares, key=lambda value: (shares[value], value))
        shares[largest] -= 1
    return shares


def _reservoir(rows: Iterator[Row], n: int, rng: random.Random) -> tuple[list[Row], int]:
    kept: list[Row] = []
    seen = 0
    for row in rows:
        _offer(kept, row, seen, n, rng)
        seen += 1
    return kept, seen


def _offer(kept: list[Row], row: Row, seen: int, n: int, rng: random.Random) -> None:
    """Algorithm R: the ``seen``-th row (0-based) replaces a kept one with probability ``n / (seen + 1)``."""
    if len(kept) < n:
        kept.append(row)
        return
    slot = rng.randrange(seen + 1)
    if slot < n:
        kept[slot] = row


def _stratum(row: Row, column: str) -> str:
    value = row.values.get(column)
    text = "" if value is None else str(value).strip()
    return text or BLANK
