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

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import count, filterfalse
from typing import Any

import orjson
from xxhash import xxh3_128_digest

from .errors import MissingColumnError
from .readers import Row
from .readers.table import Block
from .records import PENDING_LINE, CanonicalRecord, RowStatus, escaped, escaped_strings, record_id
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
        self._label = (self.label_column,) if self.label_column else ()
        ids = (mapping.id_column,) if mapping.id_column else ()
        self._needed = tuple(dict.fromkeys([*self._text_columns, *ids, *self._label, *self._carry]))

    def map(self, row: Row) -> CanonicalRecord:
        """One row as a canonical record (its status ``invalid_input`` with the reason when it cannot be classified)."""
        return self.map_block(Block.of([row], self._needed)).record(0)

    def map_block(self, block: Block) -> MappedBlock:
        """The rows of ``block``, column by column, as records are made of them (see :class:`MappedBlock`)."""
        columns, size = block.columns, block.size
        texts = self._texts(columns)
        id_column = self.mapping.id_column
        ids: list[str | None] = (
            _ids(columns[id_column]) if id_column else list(map(str, range(block.start, block.start + size)))
        )
        labels: list[str | None] = _labels(columns[self.label_column]) if self.label_column else [None] * size
        return MappedBlock(self, block, ids, texts, labels, [columns[c] for c in self._carry])

    def _texts(self, columns: dict[str, list[Any]]) -> list[str]:
        if len(self._text_columns) == 1:
            values = columns[self._text_columns[0]]
            return values if _all_text(values) else list(map(_as_text, values))
        parts = [list(map(_as_text, columns[c])) for c in self._text_columns]
        named = self._text_columns
        return [
            "\n".join(f"{column}: {value}" for column, value in zip(named, row, strict=True) if value.strip())
            for row in zip(*parts, strict=True)
        ]


@dataclass(slots=True)
class MappedBlock:
    """A block of rows mapped column by column: each row's id (None when empty), text and label, and the values of the
    carried columns (in the order of the mapper's ``carry``)."""

    mapper: RecordMapper
    block: Block
    ids: list[str | None]
    texts: list[str]
    labels: list[str | None]
    carried: list[list[Any]]

    def unusual(self) -> set[int]:
        """The positions of the rows :meth:`record` does more with than copy their values: an empty id or text (the row
        is invalid), a text to truncate."""
        ids, texts, limit = self.ids, self.texts, self.mapper._max_chars
        lengths = list(map(len, texts))
        if None not in ids and min(lengths) > 0 and max(lengths) <= limit and not any(map(str.isspace, texts)):
            return set()
        return {
            position
            for position, (row_id, text, length) in enumerate(zip(ids, texts, lengths, strict=True))
            if not row_id or not length or length > limit or text.isspace()
        }

    def tails(self) -> list[bytes]:
        """The end of each row's record line, as :meth:`CanonicalRecord.to_line` writes it: the label and the carried
        columns (escaped by orjson all at once), the closing brace and a newline. ``TypeError`` or
        ``orjson.JSONEncodeError`` when a carried value is not text or empty, or a text is one orjson refuses: those are
        left to :meth:`CanonicalRecord.to_line`."""
        size = self.block.size
        labels = self.labels
        for name, column in zip(self.mapper._carry, self.carried, strict=True):
            if not set(map(type, column)) <= _TEXT_OR_NONE:
                raise TypeError(f"the carried column {name!r} holds values that are not text")
        unlabelled = labels.count(None)
        if unlabelled in (0, size) and not any(None in column for column in self.carried):
            # Every row alike (a label or none, every carried value a text): one format fills in each row's tail.
            columns: list[list[Any]] = [labels] if not unlabelled else []
            columns += self.carried
            if not columns:
                return [b"}\n"] * size
            return list(
                map(self._tail_format(bool(unlabelled)).__mod__, zip(*map(escaped_strings, columns), strict=True))
            )
        if unlabelled == size:
            tails = [b""] * size
        else:
            escaped_labels = escaped_strings([label or "" for label in labels])
            tails = [
                b',"label":"' + text + b'"' if label is not None else b""
                for label, text in zip(labels, escaped_labels, strict=True)
            ]
        if not self.carried:
            return [tail + b"}\n" for tail in tails]
        values = []
        for name, column in zip(self.mapper._carry, self.carried, strict=True):
            key = orjson.dumps(name) + b":"
            texts = escaped_strings([v or "" for v in column])
            values.append(
                [key + (b'"' + t + b'"' if v is not None else b"null") for v, t in zip(column, texts, strict=True)]
            )
        carries = map(b",".join, zip(*values, strict=True))
        return [tail + b',"carry":{' + carry + b"}}\n" for tail, carry in zip(tails, carries, strict=True)]

    def _tail_format(self, unlabelled: bool) -> bytes:
        """The end of a record line as a ``%`` format of its escaped label (unless ``unlabelled``) and carried values,
        every one of them a text (none missing)."""
        label = b"" if unlabelled else b',"label":"%b"'
        if not self.carried:
            return label + b"}\n"
        carried = (orjson.dumps(name).replace(b"%", b"%%") + b':"%b"' for name in self.mapper._carry)
        return label + b',"carry":{' + b",".join(carried) + b"}}\n"

    def record(self, position: int) -> CanonicalRecord:
        """The canonical record of the row at ``position``."""
        row_id, text = self.ids[position], self.texts[position]
        carry = {name: column[position] for name, column in zip(self.mapper._carry, self.carried, strict=True)}
        number = self.block.start + position
        record = CanonicalRecord(row=number, id=row_id or "", text=text, label=self.labels[position], carry=carry)
        mapper = self.mapper
        if not row_id:
            record.status = RowStatus.INVALID_INPUT
            record.reason = f"{self.block.where(position)}: the id column {mapper.mapping.id_column!r} is empty"
        elif not text.strip():
            record.status = RowStatus.INVALID_INPUT
            named = ", ".join(repr(c) for c in mapper._text_columns)
            record.reason = f"{self.block.where(position)}: no text in {named}"
        elif len(text) > mapper._max_chars:
            record.text = text[: mapper._max_chars]
            record.truncated = True
        return record


@dataclass(slots=True)
class TextIndex:
    """Gives each distinct text a record id; identical texts share the id of their first occurrence.

    ``ids``: the index of each text by the 128-bit XXH3 hash of its escaped form (:func:`.records.escaped`), a sixth
    of BLAKE2b's cost; two different texts among the 5M rows a run may hold share a hash with a chance below 10^-25
    (a hash made to collide on purpose can only merge the texts of the file that holds both). ``reserved``: the
    indexes given to control texts, which share theirs with no other."""

    ids: dict[bytes, int] = field(default_factory=dict)
    reserved: int = 0

    def assign(self, record: CanonicalRecord, text: bytes) -> int:
        """Set the record's id (and ``first``) from ``text``, its escaped text; returns its index, 0 for a record that
        is not sent."""
        if record.status is not RowStatus.PENDING:
            return 0
        key = xxh3_128_digest(text)
        index = self.ids.get(key)
        if index is None:
            index = len(self.ids) + self.reserved + 1
            self.ids[key] = index
            record.first = True
        record.rid = record_id(index)
        return index

    def reserve(self, record: CanonicalRecord) -> int:
        """Give a control row's text an index of its own (``first``), shared with no other row: a control row's
        verdict is never given to a user's row, nor a user's row's to it."""
        self.reserved += 1
        index = len(self.ids) + self.reserved
        record.first, record.rid = True, record_id(index)
        return index

    def __len__(self) -> int:
        return len(self.ids) + self.reserved


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


@dataclass(slots=True)
class ConvertedLines:
    """The lines (each ending in a newline) a block of rows gives ``records.jsonl``, ``texts.jsonl`` and
    ``rejects.jsonl``."""

    records: list[bytes] = field(default_factory=list)
    texts: list[bytes] = field(default_factory=list)
    rejects: list[bytes] = field(default_factory=list)


class Converter:
    """Maps, validates and indexes an input's rows a block at a time, counting them in ``stats``, and gives the lines
    of the canonical records, of the distinct texts and of the rejects (:meth:`block`).

    Control records mixed in (:func:`.controls.mix_controls`, already mapped) get a text index of their own and count
    as texts, not rows (:meth:`control`).

    Most rows are written without a :class:`CanonicalRecord` being made: a block's texts and ids are escaped at once,
    and a pending row's line is :data:`.records.PENDING_LINE` filled in. A row :meth:`MappedBlock.record` does more
    with (an invalid row, a text to truncate), and every row of a block whose values orjson would not write as the
    json module does, goes through :meth:`CanonicalRecord.to_line`; both give the same bytes.

    Duplicate ids are counted at the end (:meth:`finish`) from 8-byte hashes of the ids (a report, not a decision, so
    a hash collision costs nothing); :func:`duplicate_id_examples` finds example ids in a second look when needed.
    """

    def __init__(self, mapper: RecordMapper, stats: ConvertStats) -> None:
        self.mapper = mapper
        self.stats = stats
        self.index = TextIndex()
        self._id_hashes: array[int] | None = array("q") if mapper.mapping.id_column else None

    def block(self, block: Block) -> ConvertedLines:
        """The lines of the rows of ``block``."""
        mapped = self.mapper.map_block(block)
        stats, out = self.stats, ConvertedLines()
        stats.rows += block.size
        stats.labelled += block.size - mapped.labels.count(None)
        if self._id_hashes is not None:
            self._id_hashes.extend(map(hash, filter(None, mapped.ids)))
        try:
            texts = escaped_strings(mapped.texts)
            ids = escaped_strings([row_id or "" for row_id in mapped.ids])
            tails = mapped.tails()
        except (TypeError, orjson.JSONEncodeError):  # values orjson writes otherwise, or refuses: the slow way
            for position in range(block.size):
                self._unusual(mapped.record(position), out)
            return out
        # Runs of pending rows between the unusual ones (an invalid row, a text to truncate), each in row order.
        start = 0
        for position in [*sorted(mapped.unusual()), block.size]:
            if start < position:
                run = slice(start, position)
                first = block.start + start
                self._pending(first, mapped.texts[run], ids[run], texts[run], tails[run], out)
            if position < block.size:
                self._unusual(mapped.record(position), out)
            start = position + 1
        return out

    def _pending(
        self,
        first: int,
        raw: list[str],
        ids: list[bytes],
        texts: list[bytes],
        tails: list[bytes],
        out: ConvertedLines,
    ) -> None:
        """The lines of consecutive pending rows, from row number ``first``: their texts' indexes (a new text gets the
        next one), their record lines, and the new texts' lines. ``raw``: the texts; ``ids``, ``texts``: escaped;
        ``tails``: the ends of the record lines (:meth:`MappedBlock.tails`). Made by map, zip and the index's dict, a
        row at a time in C rather than in Python (a million rows and more a run)."""
        seen, size = self.index.ids, len(texts)
        keys = list(map(xxh3_128_digest, texts))
        new = list(filterfalse(seen.__contains__, dict.fromkeys(keys)))  # in order of their first row
        seen.update(zip(new, count(len(seen) + self.index.reserved + 1), strict=False))
        indexes = list(map(seen.__getitem__, keys))
        numbers = range(first, first + size)
        lines = list(map(_FIRST_LINE.__mod__, zip(numbers, ids, texts, indexes, tails, strict=True)))
        first_rows: Iterable[int] = range(size)
        if len(new) < size:  # rows whose text came earlier, in an earlier block or earlier in this one
            earliest = dict(zip(reversed(keys), reversed(range(size)), strict=True))
            first_rows = list(map(earliest.__getitem__, new))  # increasing, as new is in order of first rows
            for position in filterfalse(set(first_rows).__contains__, range(size)):
                row = (first + position, ids[position], texts[position], indexes[position], tails[position])
                lines[position] = _LATER_LINE % row
                self.stats.shared.add(indexes[position])
        out.records.extend(lines)
        if new:
            out.texts.append(_text_lines(list(map(texts.__getitem__, first_rows))))
        self.stats.distinct_texts += len(new)
        self.stats.duplicate_texts += size - len(new)
        self.stats.text_chars += sum(map(len, map(raw.__getitem__, first_rows)))

    def _unusual(self, record: CanonicalRecord, out: ConvertedLines) -> None:
        stats = self.stats
        text = escaped(record.text)
        text_index = self.index.assign(record, text)
        out.records.append(record.to_line(text) + b"\n")
        if record.status is RowStatus.INVALID_INPUT:
            stats.invalid += 1
            reason = escaped(record.reason or "")
            out.rejects.append(b'{"row":%d,"id":"%b","reason":"%b"}\n' % (record.row, escaped(record.id), reason))
        elif record.first:
            stats.distinct_texts += 1
            stats.text_chars += len(record.text)
            out.texts.append(b'"%b"\n' % text)
        else:
            stats.duplicate_texts += 1
            stats.shared.add(text_index)
        stats.truncated += record.truncated

    def control(self, record: CanonicalRecord) -> bytes:
        """Give a control record its own text index; the line of its text."""
        self.index.reserve(record)
        self.stats.controls += 1
        self.stats.distinct_texts += 1
        self.stats.text_chars += len(record.text)
        return b'"%b"\n' % escaped(record.text)

    def finish(self) -> None:
        """Count the duplicate ids, once every row is converted."""
        del self.index  # the text index is the largest thing held: let it go before counting ids
        if self._id_hashes is not None:
            self.stats.duplicate_ids, self.stats.duplicate_id_hashes = _repeated(self._id_hashes)


_FIRST_LINE = PENDING_LINE + b',"first":true%b'
_LATER_LINE = PENDING_LINE + b"%b"


def _text_lines(texts: list[bytes]) -> bytes:
    """The lines of ``texts.jsonl`` holding these escaped texts."""
    return b'"' + b'"\n"'.join(texts) + b'"\n'


def _repeated(hashes: array[int]) -> tuple[int, set[int]]:
    """How many values repeat an earlier one, and which values repeat (sorted by pyarrow, off the heap: a value equal
    to the one before it in sorted order repeats an earlier one; sorting takes less memory than counting in a hash
    table)."""
    import pyarrow as pa  # noqa: PLC0415 - only ids need it, and CSV-only work should not pay for it up front
    import pyarrow.compute as pc  # noqa: PLC0415

    if len(hashes) < 2:
        return 0, set()
    values = pa.Array.from_buffers(pa.int64(), len(hashes), [None, pa.py_buffer(hashes)])
    ordered = values.take(pc.sort_indices(values))
    again = pc.equal(ordered[1:], ordered[:-1])
    extra = pc.sum(again).as_py() or 0
    return extra, set(ordered[1:].filter(again).to_pylist()) if extra else set()


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


_TEXT_OR_NONE = {str, type(None)}


def _all_text(values: list[Any]) -> bool:
    return set(map(type, values)) == {str}


def _ids(values: list[Any]) -> list[str | None]:
    return _stripped(values) if _all_text(values) else list(map(_as_id, values))


def _labels(values: list[Any]) -> list[str | None]:
    return _stripped(values) if _all_text(values) else list(map(_as_label, values))


def _stripped(values: list[str]) -> list[str | None]:
    """The texts without surrounding whitespace, None for those left empty."""
    stripped: list[str | None] = list(map(str.strip, values))
    if "" in stripped:
        stripped = [value or None for value in stripped]
    return stripped


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
