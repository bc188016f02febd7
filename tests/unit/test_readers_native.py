"""Tests of the readers' fast paths (pyarrow for CSV, orjson for JSON arrays, python-calamine for XLSX): on every
awkward file they give the records the plain paths (csv.reader, json's raw_decode scanner, openpyxl) give, and
bad input fails with the same named errors."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from test_readers import OneWayStream

from batch_classifier.errors import EmptyInputError, InputEncodingError, MalformedInputError
from batch_classifier.readers import csv_native, csv_reader, json_reader, open_table, xlsx_native, xlsx_reader

AWKWARD_TEXTS = [
    "hello",
    'multi\nline\r\nwith "quotes", commas; semicolons\tand tabs',
    "line\u2028separator and paragraph\u2029separator",
    "  spaces kept  ",
    "",
    "café ☃ \U0001f600",
]


def read(source: Any, **options: Any) -> tuple[list[str], list[tuple[int, dict[str, Any], str]]]:
    with open_table(source, **options) as table:
        return table.columns, [(row.number, row.values, row.where()) for row in table.rows()]


def outcome(source: Any, **options: Any) -> Any:
    """The columns and rows read, or the error's type and message."""
    try:
        return read(source, **options)
    except Exception as exc:  # the outcome compared is the error itself
        return type(exc).__name__, str(exc)


def typed(rows: list[tuple[int, dict[str, Any], str]]) -> list[list[tuple[str, type, Any]]]:
    """Rows with each value's type, so that 1 and 1.0 or a date and a datetime are told apart."""
    return [[(key, type(value), value) for key, value in values.items()] for _, values, _ in rows]


@pytest.fixture
def fast_csv_used(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, block by block, whether pyarrow took the block (True) or left it to csv.reader (False)."""
    taken: list[bool] = []
    parse = csv_native.NativeCsv._parse_block

    def spy(self: csv_native.NativeCsv, block: bytes, *, final: bool) -> Any:
        result = parse(self, block, final=final)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(csv_native.NativeCsv, "_parse_block", spy)
    return taken


def plain_csv(path: Any, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    """What csv.reader alone gives (the fast path switched off)."""
    with monkeypatch.context() as patch:
        patch.setattr(csv_reader, "FAST_DELIMITERS", ())
        return outcome(path, **options)


def csv_bytes(rows: list[list[str]], *, delimiter: str = ",", newline: str = "\r\n", encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return out.getvalue().encode(encoding)


AWKWARD_ROWS = [["id", "text"], *([str(n), text] for n, text in enumerate(AWKWARD_TEXTS, start=1))]


# --- CSV ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bom.csv", b"\xef\xbb\xbf" + csv_bytes(AWKWARD_ROWS)),
        ("lf.csv", csv_bytes(AWKWARD_ROWS, newline="\n")),
        ("semicolon.csv", csv_bytes(AWKWARD_ROWS, delimiter=";")),
        ("tab.csv", csv_bytes(AWKWARD_ROWS, delimiter="\t")),
        ("tab.tsv", csv_bytes(AWKWARD_ROWS, delimiter="\t", newline="\n")),
        ("no-final-newline.csv", csv_bytes(AWKWARD_ROWS).rstrip(b"\r\n")),
    ],
)
def test_csv_fast_path_gives_the_plain_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_csv_used: list[bool], name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    columns, rows = read(path)
    assert fast_csv_used and all(fast_csv_used)
    assert columns == ["id", "text"]
    assert [values["text"] for _, values, _ in rows] == AWKWARD_TEXTS
    assert (columns, rows) == plain_csv(path, monkeypatch)


def test_csv_in_cp1252_keeps_the_plain_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["id", "text"], ["1", "café – “quoted”"], ["2", "multi\nline"]]
    path = tmp_path / "windows.csv"
    path.write_bytes(csv_bytes(rows, encoding="cp1252"))
    columns, read_rows = read(path)
    assert [values["text"] for _, values, _ in read_rows] == ["café – “quoted”", "multi\nline"]
    assert (columns, read_rows) == plain_csv(path, monkeypatch)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # a row with too many fields: the named error, with its row number
        (
            "id,text\n1,a\n2,b,c\n3,d\n",
            (
                "MalformedInputError",
                "'bad.csv' row 2 has 3 fields but the header has 2; quote values that contain the delimiter ','.",
            ),
        ),
        # a carriage return that ends no line: csv.reader's error
        ("id,text\n1,a\r2,b\n", ("MalformedInputError", None)),
    ],
)
def test_csv_bad_rows_fail_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: str | bytes, expected: tuple[str, str | None]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    got = outcome(path)
    assert got == plain_csv(path, monkeypatch)
    assert got[0] == expected[0]
    if expected[1] is not None:
        assert got[1] == expected[1]


def test_csv_encoding_error_names_the_row_after_many_good_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # beyond the first 64 KiB, which decide the encoding (UTF-8 here)
    data = b"id,text\n" + b"".join(b"%d,fine\n" % n for n in range(1, 20000)) + b"20000,caf\xe9\n"
    path = tmp_path / "late.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csv_native, "BLOCK", 4096)
    got = outcome(path)
    assert got == ("InputEncodingError", f"{'late.csv'!r} is not valid utf-8 at row 20000; " + got[1].split("; ", 1)[1])
    assert got == plain_csv(path, monkeypatch)


def test_csv_odd_rows_are_read_by_csv_reader_and_every_row_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_csv_used: list[bool]
) -> None:
    # short rows are padded, blank and whitespace-only lines skipped, a quote inside an unquoted field is text
    data = 'id,text,x\n1,a,b\n2,only\n\n   \n3,"q",z\n,,\n4,5\'11" tall,y\n5,"multi\nline",w\n'
    path = tmp_path / "odd.csv"
    path.write_text(data, encoding="utf-8", newline="")
    columns, rows = read(path)
    assert False in fast_csv_used
    assert [values for _, values, _ in rows] == [
        {"id": "1", "text": "a", "x": "b"},
        {"id": "2", "text": "only", "x": ""},
        {"id": "3", "text": "q", "x": "z"},
        {"id": "", "text": "", "x": ""},
        {"id": "4", "text": "5'11\" tall", "x": "y"},
        {"id": "5", "text": "multi\nline", "x": "w"},
    ]
    assert [number for number, _, _ in rows] == [1, 2, 3, 4, 5, 6]
    assert (columns, rows) == plain_csv(path, monkeypatch)


def test_csv_cut_inside_a_quoted_field_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The literal quote on row 1 makes the quote count even inside row 2's quoted field: the block cut there must
    # not be taken as a row end.
    data = 'id,text\n1,5\'11" tall\n2,"first\nsecond\nthird"\n3,end\n'
    path = tmp_path / "literal.csv"
    path.write_text(data, encoding="utf-8", newline="")
    monkeypatch.setattr(csv_native, "BLOCK", 24)
    assert outcome(path) == plain_csv(path, monkeypatch)
    assert [values["text"] for _, values, _ in read(path)[1]] == ["5'11\" tall", "first\nsecond\nthird", "end"]


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_csv_random_files_read_the_same_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(csv_native, "BLOCK", block)
    monkeypatch.setattr(csv_native, "MAX_BLOCK", max(block, 256))
    rng = random.Random(block)
    alphabet = ["a", "b", ",", ";", "\t", '"', '""', "\n", "\r\n", "\r", " ", "é", "\u2028", "\x00"]
    for case in range(150):
        header = rng.choice(["id,text\n", "id;text;x\n", "one\n", "a\tb\n"])
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        path = tmp_path / f"random{case}.csv"
        path.write_bytes((header + body).encode())
        assert outcome(path) == plain_csv(path, monkeypatch), repr(header + body)


def test_csv_fast_path_reads_a_stream_that_cannot_seek(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["id", "text"]] + [[str(n), f"row {n}\nsecond line, with a comma"] for n in range(1, 3001)]
    data = csv_bytes(rows)
    monkeypatch.setattr(csv_native, "BLOCK", 5000)
    _, read_rows = read(OneWayStream(data), name="stream.csv")
    assert len(read_rows) == 3000 and read_rows[-1][1] == {"id": "3000", "text": "row 3000\nsecond line, with a comma"}
    # a bad row late in the stream: the fast path hands the rest to csv.reader, which names the row
    bad = data + b"3001,a,b\r\n"
    assert outcome(OneWayStream(bad), name="stream.csv") == (
        "MalformedInputError",
        "'stream.csv' row 3001 has 3 fields but the header has 2; quote values that contain the delimiter ','.",
    )


def test_csv_row_end_counts_quotes() -> None:
    assert csv_native.row_end(b'a,b\n"c\nd",e\n') == 12
    assert csv_native.row_end(b'a,b\n"c\nd') == 4
    assert csv_native.row_end(b'"a\nb') == -1


# --- JSON --------------------------------------------------------------------------------------------------------


RECORDS: list[dict[str, Any]] = [
    {"id": n, "text": text, "score": n / 3, "flag": n % 2 == 0, "none": None}
    for n, text in enumerate(AWKWARD_TEXTS, start=1)
]


def one_a_line(records: list[Any], *, bom: bool = False, newline: str = "\n", close: str = "\n]\n") -> bytes:
    text = "[" + newline + ("," + newline).join(json.dumps(r, ensure_ascii=False) for r in records) + close
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@pytest.mark.parametrize(
    "data",
    [
        one_a_line(RECORDS),
        one_a_line(RECORDS, bom=True, newline="\r\n", close="\r\n]"),
        one_a_line(RECORDS, close="]"),
        json.dumps(RECORDS, indent=2).encode(),
        json.dumps(RECORDS).encode(),
    ],
    ids=["one-a-line", "bom-crlf", "closed-on-last-line", "pretty", "one-line"],
)
def test_json_arrays_give_the_records(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "records.json"
    path.write_bytes(data)
    columns, rows = read(path)
    assert columns == list(RECORDS[0])
    assert [values for _, values, _ in rows] == RECORDS
    assert typed(rows) == [[(k, type(v), v) for k, v in r.items()] for r in RECORDS]


def test_json_line_path_leaves_what_orjson_reads_differently_to_the_scanner(tmp_path: Path) -> None:
    text = (
        "[\n"
        '{"id": 1, "big": 123456789012345678901234567890, "neg": -9223372036854775809},\n'
        '{"id": 2, "n": NaN, "inf": Infinity},\n'
        '{"id": 3, "nested": {"big": 18446744073709551616}, "u": "a\u2028b", "esc": "\\u2028\\ud800"},\n'
        "  {\n"
        '  "id": 4\n'
        "  }\n"
        ', {"id": 5, "id": 6}\n'
        "]\n"
    )
    path = tmp_path / "odd.json"
    path.write_text(text, encoding="utf-8")
    _, rows = read(path)
    got = [values for _, values, _ in rows]
    expected = json.loads(text)
    assert json.dumps(got) == json.dumps(expected)  # NaN compares unequal to itself; its JSON text does not
    assert got[0]["big"] == 123456789012345678901234567890 and type(got[0]["neg"]) is int
    assert got[2]["nested"]["big"] == 18446744073709551616 and got[2]["esc"] == "\u2028\ud800"
    assert [number for number, _, _ in rows] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            '[\n{"id": 1},\n{"id": 2 "x": 1},\n{"id": 3}\n]',
            MalformedInputError,
            "'bad.json' is not valid JSON: Expecting ',' delimiter at line 3, column 10.",
        ),
        (
            '[\n{"id": 1},\n[1, 2],\n{"id": 3}\n]',
            MalformedInputError,
            "'bad.json' element 2 of the top-level list is a JSON array, not an object; "
            "every record must be an object.",
        ),
        (
            '[\n{"id": 1},\n{"id": 2},\n]',
            MalformedInputError,
            "'bad.json' is not valid JSON: Expecting value at line 4, column 1.",
        ),
        (
            '[\n{"id": 1},\n{"id": 2},\n',
            MalformedInputError,
            "'bad.json' is not valid JSON: Expecting value at line 4, column 1.",
        ),
        (
            '[\n{"id": 1,\r"t": "a"},\n{"id": 2 "x"}\n]',
            MalformedInputError,
            "'bad.json' is not valid JSON: Expecting ',' delimiter at line 4, column 10.",
        ),
        ("[\n]\n", EmptyInputError, "'bad.json' has no records: the top-level list is empty."),
    ],
)
def test_json_bad_arrays_fail_as_before(tmp_path: Path, text: str, error: type[Exception], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(error) as caught:
        read(path)
    assert str(caught.value) == message


def test_json_not_utf8_on_a_line_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(b'[\n{"id": 1},\n{"id": 2, "t": "caf\xe9"},\n{"id": 3}\n]')
    with pytest.raises(InputEncodingError, match=r"'latin\.json' is not valid text in its encoding near line 3"):
        read(path)
    assert [values for _, values, _ in read(path, encoding="latin-1")[1]][1] == {"id": 2, "t": "café"}


def test_json_line_path_reads_a_stream_that_cannot_seek(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_reader, "_MAX_LINE", 64)  # long lines go to the scanner
    records = [{"id": n, "text": "x" * (n % 100)} for n in range(2000)]
    _, rows = read(OneWayStream(one_a_line(records)), name="stream.json")
    assert [values for _, values, _ in rows] == records


def test_jsonl_gives_json_values(tmp_path: Path) -> None:
    lines = [
        '{"id": 1, "big": 123456789012345678901234567890, "text": "a\\u2028b"}',
        "",
        "  ",
        '{"id": 2, "n": NaN, "nested": {"b": 18446744073709551616}}',
        '{"id": 3, "text": "caf\\u00e9 \\ud83d\\ude00 \u2028 raw", "f": 1.5, "none": null}',
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    _, rows = read(path)
    expected = [json.loads(line) for line in lines if line.strip()]
    got = [values for _, values, _ in rows]
    assert json.dumps(got) == json.dumps(expected)
    assert typed(rows[::2]) == typed([(0, record, "") for record in expected[::2]])
    assert got[1]["nested"]["b"] == 18446744073709551616


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            b'{"id": 1}\n{"id": 2 "x": 1}\n',
            MalformedInputError,
            "'bad.jsonl' line 2 is not valid JSON (Expecting ',' delimiter at column 10); "
            "each line must hold one JSON object.",
        ),
        (
            b'{"id": 1}\n[1]\n',
            MalformedInputError,
            "'bad.jsonl' line 2 is a JSON array, not an object; each line must hold one JSON object.",
        ),
        (
            b'{"id": 1}\n{"t": "caf\xe9"}\n',
            InputEncodingError,
            "'bad.jsonl' is not valid utf-8 at line 2; pass the file's encoding explicitly (for example cp1252).",
        ),
    ],
)
def test_jsonl_bad_lines_fail_as_before(tmp_path: Path, data: bytes, error: type[Exception], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    with pytest.raises(error) as caught:
        read(path)
    assert str(caught.value) == message


# --- XLSX --------------------------------------------------------------------------------------------------------


def awkward_workbook(path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "calls"
    # the table starts at B3; column A and rows 1-2 are empty, as are row 6 and cell D7
    for column, name in zip("BCDEFGH", ["id", "text", "when", "time", "span", "ok", "score"], strict=True):
        sheet[f"{column}3"] = name
    sheet.append([None, 1, "line\u2028separator", dt.datetime(2024, 1, 2), dt.time(10, 30), dt.timedelta(hours=5)])
    sheet["G4"], sheet["H4"] = True, 1.5
    sheet.append([None, 2.0, "  multi\nline  ", dt.datetime(2024, 1, 2, 3, 4, 5, 123000), None, None, False, 10**15])
    sheet.append([])
    sheet.append([None, 3, "=1+1", dt.date(2020, 2, 29), dt.time(0, 0), None, None, 1e-7])
    sheet["H8"] = 12345.0
    other = book.create_sheet("more")
    other.append(["id", "text", "extra"])
    other.append([4, "café ☃", "x"])
    other.append([None, None, None])
    other.append([5, "", 0.1])
    book.create_sheet("empty")
    book.save(path)


def openpyxl_only(path: Any, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(xlsx_reader, "native_workbook", lambda target, sheet=None: None)
        return outcome(path, **options)


def test_xlsx_calamine_gives_openpyxl_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "awkward.xlsx"
    awkward_workbook(path)
    assert xlsx_native.native_workbook(str(path)) is not None
    columns, rows = read(path)
    plain_columns, plain_rows = openpyxl_only(path, monkeypatch)
    assert columns == plain_columns == ["column_1", "id", "text", "when", "time", "span", "ok", "score", "extra"]
    assert rows == plain_rows
    assert typed(rows) == typed(plain_rows)
    assert rows[0][1]["text"] == "line\u2028separator" and rows[1][1]["id"] == 2 and type(rows[1][1]["id"]) is int
    assert [where for _, _, where in rows][-2:] == ["sheet 'more', row 1", "sheet 'more', row 2"]
    for sheet in ("calls", "more"):
        assert outcome(path, sheet=sheet) == openpyxl_only(path, monkeypatch, sheet=sheet)


def test_xlsx_from_a_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "awkward.xlsx"
    awkward_workbook(path)
    data = path.read_bytes()
    assert outcome(OneWayStream(data), name="up.xlsx") == openpyxl_only(io.BytesIO(data), monkeypatch, name="up.xlsx")
    assert outcome(io.BytesIO(data), name="up.xlsx") == outcome(path, name="up.xlsx")


def test_xlsx_value_without_a_header_fails_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "text"])
    sheet.append([1, "a", "stray"])
    path = tmp_path / "stray.xlsx"
    book.save(path)
    got = outcome(path)
    assert got == openpyxl_only(path, monkeypatch)
    assert got[0] == "MalformedInputError" and "row 1 has a value in column C" in got[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=NA()", "#N/A"), ("_x000D_ carriage return escape", None), (3, 3.0)],
)
def test_xlsx_values_calamine_reads_differently_go_to_openpyxl(tmp_path: Path, value: Any, expected: Any) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "text"])
    sheet.append([1, value])
    path = tmp_path / "different.xlsx"
    book.save(path)
    if value == "=NA()":  # an error cell as Excel saves it: the formula and its cached error value
        rewrite_sheet(path, b"<f>NA()</f><v />", b"<f>NA()</f><v>#N/A</v>")
        rewrite_sheet(path, b'<c r="B2">', b'<c r="B2" t="e">')
    elif value == 3:  # a whole number written as 3.0 (openpyxl reads a float)
        rewrite_sheet(path, b"<v>3</v>", b"<v>3.0</v>")
    assert xlsx_native.native_workbook(str(path)) is None
    got = read(path)[1][0][1]["text"]
    assert (got, type(got)) == ((value, str) if expected is None else (expected, type(expected)))


def rewrite_sheet(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` (which must be there) by ``new`` in the workbook's first sheet XML."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = "xl/worksheets/sheet1.xml"
    assert old in members[name]
    members[name] = members[name].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)


@pytest.mark.seed
def test_xlsx_sample_reads_the_same_both_ways(seed_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = seed_data / "travel_conversations_labeled.xlsx"
    assert xlsx_native.native_workbook(str(path)) is not None
    columns, rows = read(path)
    assert rows and (columns, rows) == openpyxl_only(path, monkeypatch)
    assert typed(rows) == typed(openpyxl_only(path, monkeypatch)[1])


# ---------------------------------------------------------------------------------------------------------
# Blocks of rows (what prepare reads): the rows themselves, value for value, numbers and places included
# ---------------------------------------------------------------------------------------------------------


def read_blocks(source: Any, **options: Any) -> Any:
    """``read``'s outcome, from the table's blocks (a value a row lacks is None, as a block holds it)."""
    try:
        with open_table(source, **options) as table:
            rows = [
                (block.start + i, {c: block.columns[c][i] for c in table.columns}, block.where(i))
                for block in table.blocks()
                for i in range(block.size)
            ]
            return table.columns, rows
    except Exception as exc:  # the outcome compared is the error itself
        return type(exc).__name__, str(exc)


def read_filled(source: Any, **options: Any) -> Any:
    got = outcome(source, **options)
    if isinstance(got[1], str):
        return got
    columns, rows = got
    return columns, [(number, {c: values.get(c) for c in columns}, where) for number, values, where in rows]


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_csv_blocks_are_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(csv_native, "BLOCK", block)
    monkeypatch.setattr(csv_native, "MAX_BLOCK", max(block, 256))
    rng = random.Random(block)
    alphabet = ["a", "b", ",", '"', '""', "\n", "\r\n", "\r", " ", "é", "\u2028", "\x00"]
    for case in range(60):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        path = tmp_path / f"random{case}.csv"
        path.write_bytes(("id,text\n" + body).encode())
        assert read_blocks(path) == read_filled(path), repr(body)


def test_parquet_jsonl_and_xlsx_blocks_are_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from batch_classifier.readers import parquet_reader  # noqa: PLC0415

    monkeypatch.setattr(parquet_reader, "_PARQUET_BATCH", 2)
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3, 4, 5], "text": ["a", None, "c", "d", "e"]}), parquet)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"id": 1, "text": "a"}\n\n{"id": 2}\n{"text": "only", "extra": [1, 2]}\n', encoding="utf-8")
    workbook = tmp_path / "awkward.xlsx"
    awkward_workbook(workbook)
    for path in (parquet, jsonl, workbook):
        got = read_blocks(path)
        assert got == read_filled(path)
        assert len(got[1]) >= 3


# Lines a JSON Lines file may hold: plain objects (the fast path), and each thing that sends a chunk line by line.
JSONL_LINES = [
    b'{"id": 1, "text": "a\\nb \\u2028 caf\\u00e9", "n": null, "ok": true}',
    '{"id": "x", "text": "café ☃ \u2028 raw"}'.encode(),
    b'{"text": "only", "extra": 7}',
    b"{}",
    b'{"id": 2, "text": "crlf"}\r',
    b"",
    b"  \t",
    b'{"id": 3, "f": 1.5}',
    b'{"id": 4, "big": 123456789012345678901234567890, "deep": {"b": [1, 2.5]}}',
    b'{"id": 5, "n": NaN}',
]
JSONL_BAD_LINES = [b'{"id": 6 "x": 1}', b"[1]", b'{"t": "caf\xe9"}', b'"just text"']


def assert_blocks_are_rows(path: Path, data: bytes) -> None:
    """``data`` read as blocks gives what it gives as rows (values or error), from a file and from a one-way stream."""
    path.write_bytes(data)
    got = read_blocks(path)
    assert got == read_filled(path), data
    assert read_blocks(OneWayStream(data, piece=7), name=path.name) == got


@pytest.mark.parametrize("chunk", [1, 40, 1 << 20])
def test_jsonl_blocks_are_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    from batch_classifier.readers import jsonl_reader  # noqa: PLC0415

    monkeypatch.setattr(jsonl_reader, "CHUNK", chunk)
    rng = random.Random(chunk)
    for case in range(80):
        lines = [rng.choice(JSONL_LINES[:4]), *rng.choices(JSONL_LINES, k=rng.randint(0, 30))]
        if case % 4 == 3:
            lines.insert(rng.randint(1, len(lines)), rng.choice(JSONL_BAD_LINES))
        assert_blocks_are_rows(tmp_path / f"random{case}.jsonl", b"\n".join(lines) + rng.choice([b"", b"\n"]))


def test_jsonl_blocks_decode_plain_chunks_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batch_classifier.readers import jsonl_reader  # noqa: PLC0415

    monkeypatch.setattr(jsonl_reader, "CHUNK", 100)
    lines = [json.dumps({"id": n, "text": f"text {n} \u2028 é"}) for n in range(1, 201)]
    path = tmp_path / "plain.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    by_line = []
    monkeypatch.setattr(jsonl_reader._JsonLines, "rows", spy(jsonl_reader._JsonLines.rows, by_line))
    with open_table(path) as table:
        blocks = list(table.blocks())
    assert len(by_line) == 1  # the first record only, read at open time to learn the columns
    # the first record, then 3 lines a chunk (100 bytes and the rest of the line)
    assert [block.start for block in blocks][:3] == [1, 5, 8]
    assert [v for block in blocks for v in block.columns["id"]] == list(range(1, 201))


def spy(method: Any, calls: list[Any]) -> Any:
    """``method``, noting the arguments of each call in ``calls``."""

    def wrapper(self: Any, *args: Any) -> Any:
        calls.append(args)
        return method(self, *args)

    return wrapper


# Lines of a JSON array opened on a line of its own: elements that fill their lines (the fast path), and each thing
# that sends the rest to be read line by line or by the scanner.
ARRAY_LINES = [
    b'{"id": 1, "text": "a\\nb \\u2028 caf\\u00e9", "n": null},',
    '{"id": "x", "text": "café ☃ \u2028 raw"},'.encode(),
    b"{},",
    b'{"id": 2, "text": "spaces after"},  ',
    b'{"id": 3, "text": "crlf"},\r',
    b"",
    b'{"id": 4, "f": 1.5, "deep": {"b": [1, 2.5]}},',
    b'{"id": 5, "big": 123456789012345678901234567890},',
    b'{"id": 6, "n": NaN},',
    b'{"id": 7,',
    b'"text": "an object over two lines"},',
    b'{"id": 8}, {"id": 9},',
]
ARRAY_ENDS = [b'{"id": 10}\n]', b'{"id": 10}]\n', b"{}\n]\n", b'{"id": 10}\n] trailing', b'{"id": 10},\n', b"[1]\n]"]


@pytest.mark.parametrize("chunk", [1, 60, 1 << 20])
def test_json_array_blocks_are_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(json_reader, "CHUNK", chunk)
    rng = random.Random(chunk)
    for case in range(80):
        first = rng.choice([*ARRAY_LINES[:3], b'  {\n    "id": 0\n  },'])  # the last: the scanner from the start
        lines = [b"[", first, *rng.choices(ARRAY_LINES, k=rng.randint(0, 30))]
        assert_blocks_are_rows(tmp_path / f"random{case}.json", b"\n".join([*lines, rng.choice(ARRAY_ENDS)]))


def test_json_array_blocks_decode_plain_chunks_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_reader, "CHUNK", 100)
    path = tmp_path / "plain.json"
    path.write_text("[\n" + "\n".join(json.dumps({"id": n}) + "," for n in range(1, 200)) + '\n{"id": 200}\n]\n')
    line_rows = json_reader._ArrayByLine._rows
    by_line: list[int] = []

    def rows(self: Any) -> Any:
        for row in line_rows(self):
            by_line.append(row.number)
            yield row

    monkeypatch.setattr(json_reader._ArrayByLine, "_rows", rows)
    with open_table(path) as table:
        ids = [v for block in table.blocks() for v in block.columns["id"]]
    assert ids == list(range(1, 201))
    # line by line: the first record (read at open time to learn the columns), and the last chunk, which ends the array
    assert by_line == [1, *range(197, 201)]


@pytest.mark.parametrize("native", [True, False])
def test_xlsx_blocks_are_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(xlsx_reader, "BLOCK_ROWS", 2)  # blocks end inside sheets and at their ends
    if not native:
        monkeypatch.setattr(xlsx_reader, "native_workbook", lambda target, sheet=None: None)
    workbook = tmp_path / "awkward.xlsx"
    awkward_workbook(workbook)
    assert read_blocks(workbook) == read_filled(workbook)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "text"])
    sheet.append([1, "a", None, None])  # cells past the header that are empty are dropped
    sheet.append([2, "b"])
    sheet.append([3, "c"])
    sheet.append([4, "d", None, "stray"])  # a value without a column name is an error, the same either way
    faulty = tmp_path / "stray.xlsx"
    book.save(faulty)
    got = read_blocks(faulty)
    assert got == read_filled(faulty)
    assert got[0] == "MalformedInputError" and "row 4 has a value in column D" in got[1]


@pytest.mark.parametrize("sheet", [None, "more"])
def test_xlsx_first_sheet_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sheet: str | None) -> None:
    """The first sheet read is loaded while the workbook is looked through, and that load serves its header and rows."""
    loaded: list[str] = []

    class Counting:
        def __init__(self, book: Any) -> None:
            self._book = book
            self.sheets_metadata = book.sheets_metadata

        def get_sheet_by_name(self, title: str) -> Any:
            loaded.append(title)
            return self._book.get_sheet_by_name(title)

        def close(self) -> None:
            self._book.close()

    made = xlsx_native.NativeBook.__init__
    monkeypatch.setattr(
        xlsx_native.NativeBook, "__init__", lambda self, book, titles: made(self, Counting(book), titles)
    )
    path = tmp_path / "awkward.xlsx"
    awkward_workbook(path)
    options = {} if sheet is None else {"sheet": sheet}
    got = read_blocks(path, **options)
    assert loaded.count(sheet or "calls") == 1
    assert got == read_filled(path, **options) == openpyxl_only(path, monkeypatch, **options)
