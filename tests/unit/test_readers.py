"""Tests of the streaming input readers: every format, encodings, delimiters, content checks, memory."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from batch_classifier.errors import (
    EmptyInputError,
    InputEncodingError,
    InputFormatError,
    MalformedInputError,
)
from batch_classifier.formats import FileFormat
from batch_classifier.readers import Row, Table, detect_format, json_reader, open_table, parquet_reader


class OneWayStream(io.RawIOBase):
    """A binary stream that cannot seek and returns short reads, like a network body."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self._piece]
        return self._data.readinto(view)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read_all(source: Any, **options: Any) -> tuple[Table, list[Row]]:
    with open_table(source, **options) as table:
        return table, list(table.rows())


def values(rows: list[Row]) -> list[dict[str, Any]]:
    return [row.values for row in rows]


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, table in sheets.items():
        sheet = book.create_sheet(title)
        for line in table:
            sheet.append(line)
    book.save(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Row
# ---------------------------------------------------------------------------------------------------------


def test_row_where_names_row_and_sheet() -> None:
    assert Row(12, {}).where() == "row 12"
    assert Row(12, {}, "Sheet1").where() == "sheet 'Sheet1', row 12"
    assert Row(40, {}, "Second", _sheet_row=3).where() == "sheet 'Second', row 3"


def test_row_is_frozen_and_compares_by_value() -> None:
    row = Row(1, {"a": "x"})
    assert row == Row(1, {"a": "x"})
    assert row != Row(2, {"a": "x"})
    assert row.sheet is None
    with pytest.raises(AttributeError):
        row.number = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------


def test_csv_rows_columns_and_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "tickets.csv", "id,text,label\n1,hello,a\n2,,b\n")
    table, rows = read_all(path)
    assert table.name == "tickets.csv"
    assert table.format is FileFormat.CSV
    assert table.columns == ["id", "text", "label"]
    assert values(rows) == [{"id": "1", "text": "hello", "label": "a"}, {"id": "2", "text": "", "label": "b"}]
    assert [row.number for row in rows] == [1, 2]
    assert [row.sheet for row in rows] == [None, None]
    assert rows[1].where() == "row 2"


def test_csv_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfconversation_id,conversation\r\n7,hi\r\n")
    table, rows = read_all(path)
    assert table.columns == ["conversation_id", "conversation"]
    assert values(rows) == [{"conversation_id": "7", "conversation": "hi"}]


def test_csv_falls_back_to_cp1252(tmp_path: Path) -> None:
    path = write(tmp_path, "legacy.csv", "id,text\n1,café – “quoted”\n".encode("cp1252"))
    _, rows = read_all(path)
    assert rows[0].values["text"] == "café – “quoted”"


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("koi8_r", "привет, мир"), ("utf-16", "naïve ☃ text"), ("latin-1", "señor")],
)
def test_csv_explicit_encoding(tmp_path: Path, encoding: str, text: str) -> None:
    path = write(tmp_path, "coded.csv", f'id,text\r\n1,"{text}"\r\n2,plain\r\n'.encode(encoding))
    table, rows = read_all(path, encoding=encoding)
    assert table.columns == ["id", "text"]
    assert values(rows) == [{"id": "1", "text": text}, {"id": "2", "text": "plain"}]


def test_csv_utf16_with_bom_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "excel.txt", "id\ttext\r\n1\tnaïve\r\n".encode("utf-16"))
    table, rows = read_all(path)
    assert table.columns == ["id", "text"]
    assert values(rows) == [{"id": "1", "text": "naïve"}]


def test_csv_unknown_encoding_is_an_encoding_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "id\n1\n")
    with pytest.raises(InputEncodingError, match="not-a-codec"):
        open_table(path, encoding="not-a-codec")


def test_csv_decoding_error_late_in_the_file_names_the_row(tmp_path: Path) -> None:
    lines = [f"{i},{'x' * 40}\n".encode() for i in range(1, 3001)]  # ~130 KiB of valid UTF-8 first
    data = b"id,text\n" + b"".join(lines) + b"3001,caf\xe9\n3002,ok\n"
    path = write(tmp_path, "late.csv", data)
    with open_table(path) as table:
        rows = table.rows()
        with pytest.raises(InputEncodingError) as caught:
            for _ in rows:
                pass
    message = str(caught.value)
    assert "'late.csv'" in message
    assert "row 3001" in message
    assert "encoding" in message


@pytest.mark.parametrize(
    ("name", "text", "columns"),
    [
        ("semi.csv", "id;text;label\n1;a,b;x\n", ["id", "text", "label"]),
        ("tabs.csv", "id\ttext\n1\ta;b,c\n", ["id", "text"]),
        ("quoted.csv", '"a,b,c";d\n1;2\n', ["a,b,c", "d"]),
        ("comma.csv", "id,text\n1,a;b\n", ["id", "text"]),
        ("single.csv", 'text\n"hello; world, again"\n', ["text"]),
    ],
)
def test_csv_delimiter_is_sniffed_from_the_header_outside_quotes(
    tmp_path: Path, name: str, text: str, columns: list[str]
) -> None:
    table, rows = read_all(write(tmp_path, name, text))
    assert table.columns == columns
    assert len(rows[0].values) == len(columns)


@pytest.mark.parametrize("delimiter", ["", ";;", '"'])
def test_unusable_delimiter_is_a_format_error(tmp_path: Path, delimiter: str) -> None:
    with pytest.raises(InputFormatError, match="delimiter"):
        open_table(write(tmp_path, "a.csv", "id\n1\n"), delimiter=delimiter)


def test_csv_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    table, rows = read_all(write(tmp_path, "lead.csv", "\r\n   \r\n\t\r\nid;text\r\n1;a\r\n"))
    assert table.columns == ["id", "text"]
    assert values(rows) == [{"id": "1", "text": "a"}]


def test_tsv_extension_means_tab_and_explicit_delimiter_wins(tmp_path: Path) -> None:
    tsv = write(tmp_path, "data.tsv", "id,x\ttext\n1,2\tb;c\n")
    table, rows = read_all(tsv)
    assert table.columns == ["id,x", "text"]
    assert values(rows) == [{"id,x": "1,2", "text": "b;c"}]
    csv_file = write(tmp_path, "pipes.csv", "id|text,more\n1|a,b\n")
    table, rows = read_all(csv_file, delimiter="|")
    assert table.columns == ["id", "text,more"]
    assert values(rows) == [{"id": "1", "text,more": "a,b"}]


def test_csv_quoted_field_spanning_lines_stays_intact(tmp_path: Path) -> None:
    data = 'id,text\r\n1,"line one\r\nline two, with ""quotes"""\r\n2,after\r\n'
    _, rows = read_all(write(tmp_path, "multi.csv", data))
    assert values(rows) == [
        {"id": "1", "text": 'line one\r\nline two, with "quotes"'},
        {"id": "2", "text": "after"},
    ]
    assert [row.number for row in rows] == [1, 2]


def test_csv_row_with_extra_fields_is_an_error_naming_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", "id,text\n1,a\n\n2,b,c\n")
    with open_table(path) as table, pytest.raises(MalformedInputError) as caught:
        list(table.rows())
    message = str(caught.value)
    assert "'ragged.csv' row 2 has 3 fields but the header has 2" in message


def test_csv_short_rows_are_padded_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "short.csv", "\n\nid,text,label\n1,a\n\n   \n2\n3,c,z\n")
    table, rows = read_all(path)
    assert table.columns == ["id", "text", "label"]
    assert values(rows) == [
        {"id": "1", "text": "a", "label": ""},
        {"id": "2", "text": "", "label": ""},
        {"id": "3", "text": "c", "label": "z"},
    ]
    assert [row.number for row in rows] == [1, 2, 3]


def test_csv_header_names_are_trimmed_named_and_deduplicated(tmp_path: Path) -> None:
    path = write(tmp_path, "names.csv", " id ,text,,text, id,text_2\n1,2,3,4,5,6\n")
    table, rows = read_all(path)
    assert table.columns == ["id", "text", "column_3", "text_2", "id_2", "text_2_2"]
    assert rows[0].values == dict(zip(table.columns, ["1", "2", "3", "4", "5", "6"], strict=True))


def test_csv_header_only_yields_no_rows(tmp_path: Path) -> None:
    table, rows = read_all(write(tmp_path, "header.csv", "id,text\r\n"))
    assert table.columns == ["id", "text"]
    assert rows == []


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n \n\t\n"])
def test_empty_csv_is_an_empty_input_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(EmptyInputError, match=r"'empty\.csv'"):
        open_table(write(tmp_path, "empty.csv", data))


def test_rows_can_be_read_only_once(tmp_path: Path) -> None:
    with open_table(write(tmp_path, "once.csv", "id\n1\n")) as table:
        assert len(list(table.rows())) == 1
        with pytest.raises(RuntimeError, match="already been read"):
            table.rows()


def test_csv_from_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    lines = "".join(f'{i},"text {i}\nsecond line"\r\n' for i in range(1, 5001))
    data = ("\ufeffid;text\r\n".replace(";", ",") + lines).encode("utf-8")
    stream = OneWayStream(data)
    table, rows = read_all(stream, name="upload.csv")
    assert table.name == "upload.csv"
    assert table.columns == ["id", "text"]
    assert len(rows) == 5000
    assert rows[4999].values == {"id": "5000", "text": "text 5000\nsecond line"}
    assert not stream.closed  # the caller's stream is the caller's to close


def test_seekable_stream_takes_its_name_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "named.csv", "id\n1\n")
    with path.open("rb") as handle:
        table, rows = read_all(handle)
        assert not handle.closed
    assert table.name == "named.csv"
    assert values(rows) == [{"id": "1"}]


# ---------------------------------------------------------------------------------------------------------
# XLSX
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    when = dt.datetime(2024, 5, 6, 7, 8, 9)
    return write_xlsx(
        tmp_path / "book.xlsx",
        {
            "Data": [
                ["id", " text ", "score", None, None],
                [1, "first\nline", 2.5, None],
                [2, None, 3, None],
                [None, None, None],
                [3, "third", when],
                [None, None, None],
                [None, None, None],
            ],
            "Empty": [],
            "More": [["id", "label"], [10, "x"], [11, "y"]],
        },
    )


def test_xlsx_named_sheet_keeps_types(workbook: Path) -> None:
    table, rows = read_all(workbook, sheet="Data")
    assert table.format is FileFormat.XLSX
    assert table.columns == ["id", "text", "score"]
    assert values(rows) == [
        {"id": 1, "text": "first\nline", "score": 2.5},
        {"id": 2, "text": None, "score": 3},
        {"id": 3, "text": "third", "score": dt.datetime(2024, 5, 6, 7, 8, 9)},
    ]
    assert [row.sheet for row in rows] == ["Data"] * 3
    assert rows[2].where() == "sheet 'Data', row 3"


def test_xlsx_all_sheets_union_columns_and_skip_empty_sheets(workbook: Path) -> None:
    table, rows = read_all(workbook)
    assert table.columns == ["id", "text", "score", "label"]
    assert [(row.number, row.sheet) for row in rows] == [
        (1, "Data"),
        (2, "Data"),
        (3, "Data"),
        (4, "More"),
        (5, "More"),
    ]
    assert rows[3].values == {"id": 10, "label": "x", "text": None, "score": None}
    assert rows[0].values["label"] is None
    assert rows[4].where() == "sheet 'More', row 2"


def test_xlsx_unknown_sheet_lists_the_sheets(workbook: Path) -> None:
    with pytest.raises(InputFormatError) as caught:
        open_table(workbook, sheet="Nope")
    message = str(caught.value)
    assert "'Nope'" in message
    assert "'Data', 'Empty', 'More'" in message


def test_xlsx_value_beyond_the_header_is_an_error(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "stray.xlsx", {"S": [["id", "text"], [1, "a"], [2, "b", "note"]]})
    with open_table(path) as table, pytest.raises(MalformedInputError, match=r"sheet 'S', row 2 .*column C"):
        list(table.rows())


def test_xlsx_without_rows_is_empty(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "blank.xlsx", {"A": [], "B": [[None, None]]})
    with pytest.raises(EmptyInputError, match=r"'blank\.xlsx'"):
        open_table(path)


def test_xlsx_from_a_stream_that_cannot_seek(workbook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the stream is copied to, to be read by its path
    upload: Any = OneWayStream(workbook.read_bytes())
    with open_table(upload, name="upload.xlsx", sheet="More") as table:
        assert len(list(tmp_path.glob("input-*"))) == 1
        rows = list(table.rows())
    assert table.columns == ["id", "label"]
    assert values(rows) == [{"id": 10, "label": "x"}, {"id": 11, "label": "y"}]
    assert list(tmp_path.glob("input-*")) == []  # the copy is gone once the table is closed


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InputFormatError, match=r"'archive\.xlsx' is a zip archive but not a readable Excel"):
        open_table(path)


# ---------------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------------


def test_json_array_of_objects(tmp_path: Path) -> None:
    records = [{"id": 1, "text": "a"}, {"id": 2, "text": "b", "extra": [1, 2]}, {"text": "c"}]
    table, rows = read_all(write(tmp_path, "data.json", json.dumps(records, indent=2)))
    assert table.format is FileFormat.JSON
    assert table.columns == ["id", "text"]
    assert values(rows) == records
    assert [row.number for row in rows] == [1, 2, 3]


def test_json_object_holding_the_list_is_found(tmp_path: Path) -> None:
    document = {
        "meta": {"source": "export", "list": [{"not": "this"}]},
        "count": 2,
        "tags": ["a", "b"],
        "nothing": [],
        "records": [{"id": 1}, {"id": 2}],
        "later": [{"id": 99}],
    }
    table, rows = read_all(write(tmp_path, "wrapped.json", json.dumps(document)))
    assert table.columns == ["id"]
    assert values(rows) == [{"id": 1}, {"id": 2}]


def test_json_records_key_chooses_the_list(tmp_path: Path) -> None:
    document = {"first": [{"a": 1}], "second": [{"b": 2}, {"b": 3}]}
    path = write(tmp_path, "two.json", json.dumps(document))
    _, rows = read_all(path, records_key="second")
    assert values(rows) == [{"b": 2}, {"b": 3}]
    with pytest.raises(MalformedInputError, match=r"no key 'third'.*'first', 'second'"):
        open_table(path, records_key="third")


def test_json_records_key_must_hold_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "scalar.json", json.dumps({"rows": 3}))
    with pytest.raises(MalformedInputError, match="number under the key 'rows'"):
        open_table(path, records_key="rows")


def test_json_object_without_a_list_of_objects_lists_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "flat.json", json.dumps({"id": 1, "tags": ["x"], "meta": {"a": 1}}))
    with pytest.raises(MalformedInputError, match=r"'flat.json'.*keys: 'id', 'tags', 'meta'"):
        open_table(path)


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "lines.json", '{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n')
    table, rows = read_all(path)
    assert table.format is FileFormat.JSONL
    assert values(rows) == [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]
    assert detect_format("lines.json", path.read_bytes()) is FileFormat.JSONL


def test_json_non_object_element_names_the_element(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.json", '[{"id": 1}, [1, 2], {"id": 3}]')
    with open_table(path) as table:
        rows = table.rows()
        assert next(rows).values == {"id": 1}
        with pytest.raises(MalformedInputError, match="element 2 of the top-level list is a JSON array"):
            next(rows)


@pytest.mark.parametrize("text", ["[]", " [ ] ", '{"records": []}'])
def test_json_without_records_is_empty(tmp_path: Path, text: str) -> None:
    with pytest.raises(EmptyInputError, match=r"'none\.json'"):
        open_table(write(tmp_path, "none.json", text))


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('[{"id": 1}, {"id": 2}', "expected ',' or ']'"),
        ('[{"id": 1} {"id": 2}]', "expected ',' or ']'"),
        ('[{"id": 1}, {"id": 2,}]', "trailing comma|Expecting property name"),
        ('[{"id": 1}, {"id": "open}]', "Unterminated string"),
    ],
)
def test_broken_json_is_malformed(tmp_path: Path, text: str, detail: str) -> None:
    path = write(tmp_path, "broken.json", text)
    with pytest.raises(MalformedInputError, match=detail), open_table(path) as table:
        list(table.rows())


TRICKY_RECORDS: list[dict[str, Any]] = [
    {"id": 1, "text": "brackets ] [ } { and commas , , inside"},
    {"id": 22, "text": 'escaped \\"quotes\\" and \\\\ backslashes', "n": -12.5e3},
    {"id": 333, "text": "unicode é ☃ \U0001f600 and \\u00e9 escapes", "nested": {"a": [1, {"b": "]"}]}},
    {"id": 4444, "text": "x" * 300, "flag": True, "none": None},
    {"id": 55555, "text": "", "list": [[], {}, [[]]]},
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 16, 64])
@pytest.mark.parametrize("wrapped", [False, True])
def test_json_is_streamed_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, wrapped: bool
) -> None:
    monkeypatch.setattr(json_reader, "_CHUNK", chunk)
    document: Any = {"meta": {"x": [1, 2, "]"]}, "n": 12345, "items": TRICKY_RECORDS} if wrapped else TRICKY_RECORDS
    text = json.dumps(document, indent=1, ensure_ascii=False)
    table, rows = read_all(write(tmp_path, "tricky.json", text))
    assert table.columns == ["id", "text"]
    expected = json.loads(text)["items"] if wrapped else json.loads(text)
    assert values(rows) == expected
    assert [row.values["id"] for row in rows] == [1, 22, 333, 4444, 55555]


def test_json_value_that_never_ends_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_reader, "_CHUNK", 16)
    monkeypatch.setattr(json_reader, "_MAX_JSON_VALUE", 200)
    path = write(tmp_path, "endless.json", '[{"id": 1}, {"text": "' + "x" * 5000 + '"}]')
    with open_table(path) as table, pytest.raises(MalformedInputError, match="never ends"):
        list(table.rows())


def test_json_error_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "where.json", '[\n  {"id": 1},\n  {"id": 2 "text": "x"}\n]')
    with open_table(path) as table, pytest.raises(MalformedInputError, match="line 3, column 12"):
        list(table.rows())


def test_json_that_is_not_utf8_is_an_encoding_error(tmp_path: Path) -> None:
    data = b"[" + b",".join(b'{"id": %d}' % i for i in range(20_000)) + b', {"text": "caf\xe9"}]'
    path = write(tmp_path, "latin.json", data)
    with open_table(path) as table, pytest.raises(InputEncodingError, match=r"'latin\.json'.*encoding"):
        list(table.rows())
    _, rows = read_all(path, encoding="latin-1")
    assert rows[-1].values == {"text": "café"}


def test_json_from_a_stream_that_cannot_seek() -> None:
    data = json.dumps([{"id": i, "text": f"t{i}"} for i in range(3000)]).encode()
    table, rows = read_all(OneWayStream(b"\xef\xbb\xbf" + data, piece=777), name="upload.json")
    assert table.columns == ["id", "text"]
    assert len(rows) == 3000
    assert rows[-1].values == {"id": 2999, "text": "t2999"}


# ---------------------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------------------


def test_jsonl_rows_skip_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '\n{"id": 1, "text": "a"}\r\n\n  \n{"id": 2, "extra": true}\n')
    table, rows = read_all(path)
    assert table.format is FileFormat.JSONL
    assert table.columns == ["id", "text"]
    assert values(rows) == [{"id": 1, "text": "a"}, {"id": 2, "extra": True}]
    assert [row.number for row in rows] == [1, 2]


def test_jsonl_bad_line_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.ndjson", '{"id": 1}\n\n{"id": 2,,}\n{"id": 3}\n')
    with open_table(path) as table, pytest.raises(MalformedInputError) as caught:
        list(table.rows())
    message = str(caught.value)
    assert "'bad.ndjson' line 3 is not valid JSON" in message
    assert "column" in message


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "list.jsonl", '{"id": 1}\n[1, 2]\n')
    with open_table(path) as table, pytest.raises(MalformedInputError, match="line 2 is a JSON array"):
        list(table.rows())


def test_jsonl_encoding_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "enc.jsonl", b'{"id": 1}\n{"text": "caf\xe9"}\n')
    with open_table(path) as table, pytest.raises(InputEncodingError, match="line 2"):
        list(table.rows())


def test_jsonl_explicit_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "enc.jsonl", '{"text": "café"}\n'.encode("cp1252"))
    _, rows = read_all(path, encoding="cp1252")
    assert values(rows) == [{"text": "café"}]


def test_jsonl_with_only_blank_lines_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "blank.jsonl", "\n\n")
    with pytest.raises(EmptyInputError):
        open_table(path)


def test_jsonl_from_a_stream_that_cannot_seek() -> None:
    data = "".join(json.dumps({"id": i, "text": f"line {i}"}) + "\n" for i in range(1, 4001)).encode()
    table, rows = read_all(OneWayStream(data, piece=333), name="upload.jsonl")
    assert table.columns == ["id", "text"]
    assert len(rows) == 4000
    assert rows[-1] == Row(4000, {"id": 4000, "text": "line 4000"})


# ---------------------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------------------


def test_parquet_rows_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet_reader, "_PARQUET_BATCH", 2)
    path = tmp_path / "data.parquet"
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4, 5], "text": ["a", None, "c", "d", "e"], "score": [0.5, 1.0, None, 2.0, 3.0]}),
        path,
    )
    table, rows = read_all(path)
    assert table.format is FileFormat.PARQUET
    assert table.columns == ["id", "text", "score"]
    assert [row.number for row in rows] == [1, 2, 3, 4, 5]
    assert rows[1].values == {"id": 2, "text": None, "score": 1.0}
    assert rows[4].values == {"id": 5, "text": "e", "score": 3.0}


def test_parquet_from_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), path)
    _, rows = read_all(OneWayStream(path.read_bytes()), name="upload.parquet")
    assert values(rows) == [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]


def test_parquet_without_rows_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), path)
    with pytest.raises(EmptyInputError, match=r"'none\.parquet'"):
        open_table(path)


def test_corrupt_parquet_is_malformed(tmp_path: Path) -> None:
    path = write(tmp_path, "cut.parquet", b"PAR1" + b"\x00" * 100)
    with pytest.raises(MalformedInputError, match=r"'cut\.parquet' starts like a Parquet file"):
        open_table(path)


# ---------------------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("a.csv", b"id,text\n", FileFormat.CSV),
        ("a.TSV", b"id\ttext\n", FileFormat.CSV),
        ("a.xlsx", b"PK\x03\x04rest", FileFormat.XLSX),
        ("a.parquet", b"PAR1rest", FileFormat.PARQUET),
        ("a.json", b'\xef\xbb\xbf \n [{"id": 1}]', FileFormat.JSON),
        ("a.json", b'{"records": [{"id": 1}]}', FileFormat.JSON),
        ("a.json", b'{"id": 1}\n{"id": 2}\n', FileFormat.JSONL),
        ("a.jsonl", b'{"id": 1}\n', FileFormat.JSONL),
    ],
)
def test_detect_format_confirms_the_extension(name: str, head: bytes, expected: FileFormat) -> None:
    assert detect_format(name, head) is expected


@pytest.mark.parametrize(
    ("name", "head", "says", "looks"),
    [
        ("data.csv", b"PK\x03\x04\x14\x00", "CSV", "zip archive"),
        ("data.csv", b"PAR1\x15\x04", "CSV", "Parquet"),
        ("data.xlsx", b"id,text\n1,a\n", "Excel", "plain text"),
        ("data.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1", "Excel", ".xls"),
        ("data.parquet", b'[{"id": 1}]', "Parquet", "JSON array"),
        ("data.json", b"id,text\n", "JSON", "plain text"),
        ("data.jsonl", b'[{"id": 1}]', "JSON Lines", "JSON array"),
    ],
)
def test_content_that_contradicts_the_extension(name: str, head: bytes, says: str, looks: str) -> None:
    with pytest.raises(InputFormatError) as caught:
        detect_format(name, head)
    message = str(caught.value)
    assert message.startswith(f"{name!r} is named as {says}")
    assert looks in message


def test_mismatch_when_opening_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match=r"'fake\.xlsx' is named as Excel"):
        open_table(write(tmp_path, "fake.xlsx", "id,text\n1,a\n"))


def test_unknown_extension_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="unsupported extension"):
        open_table(write(tmp_path, "data.bin", "id\n1\n"))


def test_explicit_format_skips_the_extension_but_is_confirmed(tmp_path: Path) -> None:
    path = write(tmp_path, "export.bin", "id,text\n1,a\n")
    table, rows = read_all(path, fmt=FileFormat.CSV)
    assert table.format is FileFormat.CSV
    assert values(rows) == [{"id": "1", "text": "a"}]
    with pytest.raises(InputFormatError, match=r"'export\.bin' was declared as Parquet"):
        open_table(path, fmt=FileFormat.PARQUET)


def test_empty_file_of_any_format_is_empty(tmp_path: Path) -> None:
    for name in ("a.xlsx", "a.parquet", "a.json", "a.jsonl"):
        with pytest.raises(EmptyInputError, match=rf"'{name}' is empty"):
            open_table(write(tmp_path, name, b""))


# ---------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------


def _peak_while_reading(path: Path) -> tuple[int, int]:
    """(rows read, tracemalloc peak in bytes) for one pass over the file."""
    tracemalloc.start()
    try:
        count = 0
        with open_table(path) as table:
            for _ in table.rows():
                count += 1
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _lines(count: int) -> Iterator[str]:
    for i in range(1, count + 1):
        yield f'{i},"conversation {i}: the customer asks about a refund, then about a new booking",label{i % 7}\n'


def test_reading_a_large_csv_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,text,label\n")
        handle.writelines(_lines(200_000))
    count, peak = _peak_while_reading(path)
    assert count == 200_000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_reading_a_large_json_array_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "large.json"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i in range(100_000):
            handle.write(("," if i else "") + json.dumps({"id": i, "text": f"conversation {i} " * 8}) + "\n")
        handle.write("]\n")
    count, peak = _peak_while_reading(path)
    assert count == 100_000
    assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------------------
# Seed data
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_seed_labeled_workbook(seed_data: Path) -> None:
    table, rows = read_all(seed_data / "travel_conversations_labeled.xlsx")
    assert table.format is FileFormat.XLSX
    assert table.columns == ["conversation_id", "conversation", "class"]
    assert len(rows) == 1190
    assert {row.sheet for row in rows} == {"Sheet1"}
    assert all(isinstance(row.values["conversation_id"], int) for row in rows)
    assert any("\n" in row.values["conversation"] for row in rows)


@pytest.mark.seed
def test_seed_csv(seed_data: Path) -> None:
    table, rows = read_all(seed_data / "travel_conversations.csv")
    assert table.format is FileFormat.CSV
    assert table.columns[0] == "conversation_id"
    assert table.columns == ["conversation_id", "conversation"]
    assert len(rows) == 840
    assert rows[-1].number == 840
    assert not any(row.values["conversation"].endswith("\r") for row in rows)


@pytest.mark.seed
def test_seed_json(seed_data: Path) -> None:
    table, rows = read_all(seed_data / "travel_conversations.json")
    assert table.format is FileFormat.JSON
    assert table.columns == ["conversation_id", "conversation"]
    assert len(rows) == 783
    assert all(set(row.values) == {"conversation_id", "conversation"} for row in rows)


def test_a_results_workbook_is_read_from_its_row_sheets_only(tmp_path):
    book = Workbook()
    book.active.title = "results"
    book["results"].append(["id", "text"])
    book["results"].append(["A1", "first"])
    book.create_sheet("results-2").append(["id", "text"])
    book["results-2"].append(["A2", "second"])
    book.create_sheet("summary").append(["figure", "value"])
    book["summary"].append(["rows", 2])
    book.create_sheet("confusion").append(["label", "predicted"])
    book.create_sheet("review-lists").append(["Refund Issues"])  # a review workbook's hidden drop-down list
    book.save(tmp_path / "results.xlsx")
    with open_table(tmp_path / "results.xlsx") as table:
        assert [row.values["id"] for row in table.rows()] == ["A1", "A2"]
    # Another sheet beside them: not a workbook of this product's, every sheet is read.
    book.create_sheet("notes").append(["id", "text"])
    book["notes"].append(["N1", "a note"])
    book.save(tmp_path / "mixed.xlsx")
    with open_table(tmp_path / "mixed.xlsx") as table:  # review-lists holds a header only: no row of it
        assert [row.sheet for row in table.rows()] == ["results", "results-2", "summary", "notes"]
