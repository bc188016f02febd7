"""Input mapping: from a file's rows to canonical records.

:class:`RecordMapper` checks the mapping against the file's columns once (a missing column is an error that
lists the columns the file has), then turns each row into a :class:`CanonicalRecord`: the id as a string
(from the id column, else the data row number), the text (one column, or several joined as ``name: value``
lines), the ground-truth label, and the carried columns. A row without text or without id becomes
``invalid_input`` with its reason; it is never dropped.

:class:`TextIndex` gives each distinct text one batch record id, so identical texts are paid for once and
their result is fanned back out to every row that carries them.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .errors import MissingColumnError
from .readers import Row
from .records import CanonicalRecord, RowStatus, record_id
from .tasks import InputMapping

_DUPLICATE_ID_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class OutputLayout:
    """Which input columns come back in the output file, in the file's order.

    ``text_column`` is set when the single text column is restored from the record's text rather than
    carried a second time (it is then absent from ``carry``).
    """

    columns: tuple[str, ...]
    text_column: str | None
    label_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "text_column": self.text_column, "label_column": self.label_column}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputLayout:
        return cls(
            columns=tuple(data["columns"]), text_column=data.get("text_column"), label_column=data.get("label_column")
        )


class RecordMapper:
    """Applies an :class:`InputMapping` to rows of a file whose columns are known."""

    def __init__(self, mapping: InputMapping, columns: Iterable[str], source: str = "the file") -> None:
        self.mapping = mapping
        available = list(columns)
        wanted = [*mapping.text_columns]
        if mapping.id_column:
            wanted.append(mapping.id_column)
        if mapping.label_column:
            wanted.append(mapping.label_column)
        self.label_column = mapping.label_column or _detect_label(available, mapping)
        if mapping.carry_columns:
            wanted.extend(mapping.carry_columns)
        missing = [c for c in dict.fromkeys(wanted) if c not in available]
        if missing:
            raise MissingColumnError(
                f"{source} has no column {', '.join(repr(c) for c in missing)}; "
                f"its columns are: {', '.join(repr(c) for c in available) or '(none)'}."
            )
        single_text = mapping.text_columns[0] if len(mapping.text_columns) == 1 else None
        if mapping.carry_columns is None:
            shown = tuple(c for c in available if c != mapping.id_column)
        else:
            label = [self.label_column] if self.label_column else []
            shown = tuple(dict.fromkeys([*mapping.carry_columns, *label]))
        restored = single_text if single_text in shown else None
        self.layout = OutputLayout(columns=shown, text_column=restored, label_column=self.label_column)
        self._carry = tuple(c for c in shown if c != restored)
        self._text_columns = mapping.text_columns
        self._max_chars = mapping.max_text_chars

    def map(self, row: Row) -> CanonicalRecord:
        values = row.values
        carry = {c: values.get(c) for c in self._carry}
        label = _as_label(values.get(self.label_column)) if self.label_column else None
        rid_source = self.mapping.id_column
        row_id = _as_id(values.get(rid_source)) if rid_source else str(row.number)
        text = self._text(values)
        record = CanonicalRecord(row=row.number, id=row_id or "", text=text, label=label, carry=carry)
        if not row_id:
            record.status = RowStatus.INVALID_INPUT
            record.reason = f"{row.where()}: the id column {rid_source!r} is empty"
        elif not text.strip():
            record.status = RowStatus.INVALID_INPUT
            named = ", ".join(repr(c) for c in self._text_columns)
            record.reason = f"{row.where()}: no text in {named}"
        elif len(text) > self._max_chars:
            record.text = text[: self._max_chars]
            record.truncated = True
        return record

    def _text(self, values: dict[str, Any]) -> str:
        if len(self._text_columns) == 1:
            return _as_text(values.get(self._text_columns[0]))
        parts = []
        for column in self._text_columns:
            value = _as_text(values.get(column))
            if value.strip():
                parts.append(f"{column}: {value}")
        return "\n".join(parts)


@dataclass(slots=True)
class TextIndex:
    """Gives each distinct text a record id; identical texts share the id of their first occurrence."""

    _ids: dict[bytes, int] = field(default_factory=dict)
    _reserved: int = 0

    def assign(self, record: CanonicalRecord) -> int:
        """Set the record's id (and ``first``); returns its index, 0 for a record that is not sent."""
        if record.status is not RowStatus.PENDING:
            return 0
        key = hashlib.blake2b(record.text.encode(), digest_size=16).digest()
        index = self._ids.get(key)
        if index is None:
            index = len(self._ids) + self._reserved + 1
            self._ids[key] = index
            record.first = True
        record.rid = record_id(index)
        return index

    def reserve(self, record: CanonicalRecord) -> int:
        """Give a control row's text an index of its own (``first``), shared with no other row: a control row's
        verdict is never given to a user's row, nor a user's row's to it."""
        self._reserved += 1
        index = len(self._ids) + self._reserved
        record.first, record.rid = True, record_id(index)
        return index

    def __len__(self) -> int:
        return len(self._ids) + self._reserved


@dataclass(slots=True)
class ConvertStats:
    """What converting a file found, row by row."""

    rows: int = 0
    invalid: int = 0
    distinct_texts: int = 0
    duplicate_texts: int = 0
    truncated: int = 0
    text_chars: int = 0
    labelled: int = 0
    # Control rows mixed in (:mod:`.controls`): their texts are in distinct_texts and text_chars, in no row count.
    controls: int = 0
    duplicate_ids: int = 0
    duplicate_id_examples: list[str] = field(default_factory=list)
    duplicate_id_hashes: set[int] = field(default_factory=set)
    # Indices of the texts that more than one row carries: their verdicts are kept while results are joined.
    shared: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "invalid": self.invalid,
            "distinct_texts": self.distinct_texts,
            "duplicate_texts": self.duplicate_texts,
            "truncated": self.truncated,
            "labelled": self.labelled,
            "controls": self.controls,
            "duplicate_ids": self.duplicate_ids,
            "duplicate_id_examples": self.duplicate_id_examples,
        }


def convert_rows(
    rows: Iterable[Row | CanonicalRecord], mapper: RecordMapper, stats: ConvertStats
) -> Iterator[CanonicalRecord]:
    """Map, validate and index every row, counting as it goes; yields records in input order.

    Control records mixed in (:func:`.controls.mix_controls`, already mapped) get a text index of their own and count
    as texts, not rows.

    Duplicate ids are counted at the end from 8-byte hashes of the ids (a report, not a decision, so a hash
    collision costs nothing); :func:`duplicate_id_examples` finds example ids in a second look when needed.
    """
    index = TextIndex()
    id_hashes: array[int] | None = array("q") if mapper.mapping.id_column else None
    for row in rows:
        if isinstance(row, CanonicalRecord):
            index.reserve(row)
            stats.controls += 1
            stats.distinct_texts += 1
            stats.text_chars += len(row.text)
            yield row
            continue
        record = mapper.map(row)
        text_index = index.assign(record)
        stats.rows += 1
        if record.status is RowStatus.INVALID_INPUT:
            stats.invalid += 1
        elif record.first:
            stats.distinct_texts += 1
            stats.text_chars += len(record.text)
        else:
            stats.duplicate_texts += 1
            stats.shared.add(text_index)
        stats.truncated += record.truncated
        stats.labelled += record.label is not None
        if id_hashes is not None and record.id:
            id_hashes.append(hash(record.id))
        yield record
    del index  # the text index is the largest thing held: let it go before counting ids
    if id_hashes is not None:
        stats.duplicate_ids, stats.duplicate_id_hashes = _repeated(id_hashes)


def _repeated(hashes: array[int]) -> tuple[int, set[int]]:
    """How many values repeat an earlier one, and which values repeat (counted by pyarrow, off the heap)."""
    import pyarrow as pa  # noqa: PLC0415 - only ids need it, and CSV-only work should not pay for it up front
    import pyarrow.compute as pc  # noqa: PLC0415

    if not hashes:
        return 0, set()
    values = pa.Array.from_buffers(pa.int64(), len(hashes), [None, pa.py_buffer(hashes)])
    counted = pc.value_counts(values)
    repeated = counted.filter(pc.greater(counted.field("counts"), 1))
    extra = sum(count - 1 for count in repeated.field("counts").to_pylist())
    return extra, set(repeated.field("values").to_pylist())


def duplicate_id_examples(ids: Iterable[str], hashes: set[int], limit: int = _DUPLICATE_ID_EXAMPLES) -> list[str]:
    """The first ``limit`` distinct ids whose hash is among the repeated ones."""
    found: dict[str, None] = {}
    if hashes:
        for row_id in ids:
            if hash(row_id) in hashes:
                found[row_id] = None
                if len(found) == limit:
                    break
    return list(found)


def _detect_label(columns: list[str], mapping: InputMapping) -> str | None:
    """The one column named like a ground-truth label, if there is exactly one (and it is not the text or id)."""
    taken = {*mapping.text_columns, mapping.id_column}
    wanted = {c.casefold() for c in mapping.label_candidates}
    found = [c for c in columns if c.strip().casefold() in wanted and c not in taken]
    return found[0] if len(found) == 1 else None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _as_id(value) or ""


def _as_id(value: Any) -> str | None:
    """Ids of any type become strings: 12 and 12.0 (as spreadsheets store whole numbers) give "12"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _as_label(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
