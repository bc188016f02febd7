"""Tests of the streaming results writers: round trips, formula neutralisation, odd values, memory."""

from __future__ import annotations

import csv
import datetime as dt
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from batch_classifier import parquet_writer, writers, xlsx_writer
from batch_classifier.errors import OutputFormatError
from batch_classifier.formats import FileFormat
from batch_classifier.writers import LocalTarget, neutralise_formula, open_sink, output_format_from_name, write_table

FORMATS = ["csv", "json", "jsonl", "xlsx", "parquet"]
FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"]

COLUMNS = ["id", "text", "score", "flag", "meta", "when", "day", "note"]
ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "text": 'héllo, "world"\nsecond line',
        "score": 2.5,
        "flag": True,
        "meta": {"k": [1, 2], "s": "ü"},
        "when": dt.datetime(2024, 5, 6, 7, 8, 9),
        "day": dt.date(2024, 5, 6),
        "note": None,
    },
    {"id": 2, "text": "plain", "score": 0.25, "flag": False, "meta": [1, "a"], "day": dt.date(2024, 1, 1)},
    {"id": 3, "text": "日本語", "score": -1.5, "flag": True, "note": "last", "extra": "ignored"},
]


# --- reading back -------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def read_xlsx(path: Path) -> list[tuple[Any, ...]]:
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["results"]
    return list(workbook["results"].iter_rows(values_only=True))


def read_json(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        data: list[dict[str, Any]] = json.load(handle)
    assert isinstance(data, list)
    return data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def read_back(path: Path) -> list[dict[str, Any]]:
    """Rows as dicts, whatever the format (header row used as keys for CSV and XLSX)."""
    table: list[Any] = read_csv(path) if path.suffix == ".csv" else []
    if path.suffix == ".xlsx":
        table = read_xlsx(path)
    if table:
        header, *body = table
        return [dict(zip(header, row, strict=True)) for row in body]
    return {".json": read_json, ".jsonl": read_jsonl, ".parquet": read_parquet}[path.suffix](path)


def one_column(tmp_path: Path, ext: str, values: list[Any]) -> list[Any]:
    path = tmp_path / f"out.{ext}"
    write_table(path, ["v"], [{"v": value} for value in values])
    return [row["v"] for row in read_back(path)]


# --- round trips --------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    assert write_table(path, COLUMNS, ROWS) == 3
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfid,text,")
    assert raw.endswith(b"\r\n")
    assert read_csv(path) == [
        COLUMNS,
        [
            "1",
            'héllo, "world"\nsecond line',
            "2.5",
            "true",
            '{"k":[1,2],"s":"ü"}',
            "2024-05-06T07:08:09",
            "2024-05-06",
            "",
        ],
        ["2", "plain", "0.25", "false", '[1,"a"]', "", "2024-01-01", ""],
        ["3", "日本語", "-1.5", "true", "", "", "", "last"],
    ]


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    assert write_table(path, COLUMNS, ROWS) == 3
    text = path.read_text(encoding="utf-8")
    assert text.startswith("[") and text.rstrip().endswith("]")
    assert read_json(path) == [
        {
            "id": 1,
            "text": 'héllo, "world"\nsecond line',
            "score": 2.5,
            "flag": True,
            "meta": {"k": [1, 2], "s": "ü"},
            "when": "2024-05-06T07:08:09",
            "day": "2024-05-06",
            "note": None,
        },
        {
            "id": 2,
            "text": "plain",
            "score": 0.25,
            "flag": False,
            "meta": [1, "a"],
            "when": None,
            "day": "2024-01-01",
            "note": None,
        },
        {
            "id": 3,
            "text": "日本語",
            "score": -1.5,
            "flag": True,
            "meta": None,
            "when": None,
            "day": None,
            "note": "last",
        },
    ]
    assert [list(row) for row in read_json(path)] == [COLUMNS] * 3


def test_jsonl_round_trip_matches_json(tmp_path: Path) -> None:
    write_table(tmp_path / "out.json", COLUMNS, ROWS)
    assert write_table(tmp_path / "out.jsonl", COLUMNS, ROWS) == 3
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert read_jsonl(tmp_path / "out.jsonl") == read_json(tmp_path / "out.json")


def test_xlsx_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    assert write_table(path, COLUMNS, ROWS) == 3
    assert read_xlsx(path) == [
        tuple(COLUMNS),
        (
            1,
            'héllo, "world"\nsecond line',
            2.5,
            True,
            '{"k":[1,2],"s":"ü"}',
            "2024-05-06T07:08:09",
            "2024-05-06",
            None,
        ),
        (2, "plain", 0.25, False, '[1,"a"]', None, "2024-01-01", None),
        (3, "日本語", -1.5, True, None, None, None, "last"),
    ]
    header = load_workbook(path)["results"]["A1"]
    assert header.font.b is True


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    assert write_table(path, COLUMNS, ROWS) == 3
    schema = pq.read_schema(path)
    assert schema.names == COLUMNS
    assert [schema.field(c).type for c in COLUMNS] == [
        pa.int64(),
        pa.string(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.string(),
        pa.string(),
        pa.string(),
    ]
    assert read_parquet(path) == [
        {
            "id": 1,
            "text": 'héllo, "world"\nsecond line',
            "score": 2.5,
            "flag": True,
            "meta": '{"k":[1,2],"s":"ü"}',
            "when": "2024-05-06T07:08:09",
            "day": "2024-05-06",
            "note": None,
        },
        {
            "id": 2,
            "text": "plain",
            "score": 0.25,
            "flag": False,
            "meta": '[1,"a"]',
            "when": None,
            "day": "2024-01-01",
            "note": None,
        },
        {
            "id": 3,
            "text": "日本語",
            "score": -1.5,
            "flag": True,
            "meta": None,
            "when": None,
            "day": None,
            "note": "last",
        },
    ]


@pytest.mark.parametrize("ext", FORMATS)
def test_row_order_is_kept(tmp_path: Path, ext: str) -> None:
    rows = [{"n": i, "s": f"row {i}"} for i in range(2500)]
    path = tmp_path / f"out.{ext}"
    assert write_table(path, ["n", "s"], rows) == 2500
    assert [str(row["s"]) for row in read_back(path)] == [f"row {i}" for i in range(2500)]


@pytest.mark.parametrize("ext", FORMATS)
def test_no_rows_still_writes_the_columns(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"out.{ext}"
    assert write_table(path, ["a", "b"], []) == 0
    if ext == "csv":
        assert read_csv(path) == [["a", "b"]]
    elif ext == "xlsx":
        assert read_xlsx(path) == [("a", "b")]
    elif ext == "parquet":
        assert pq.read_schema(path).names == ["a", "b"]
        assert read_parquet(path) == []
    else:
        assert read_back(path) == []


@pytest.mark.parametrize("ext", FORMATS)
def test_missing_keys_are_empty(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"out.{ext}"
    write_table(path, ["a", "b"], [{"a": "x"}, {}, {"b": "y"}])
    empty = "" if ext == "csv" else None
    assert read_back(path) == [{"a": "x", "b": empty}, {"a": empty, "b": empty}, {"a": empty, "b": "y"}]


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "out.dat"
    write_table(path, ["a"], [{"a": 1}], fmt=FileFormat.JSONL)
    assert read_jsonl(path) == [{"a": 1}]


def test_non_finite_floats(tmp_path: Path) -> None:
    values = [float("nan"), float("inf"), 1.5]
    assert one_column(tmp_path, "json", values) == [None, None, 1.5]
    assert one_column(tmp_path, "csv", values) == ["nan", "inf", "1.5"]
    assert one_column(tmp_path, "xlsx", values) == ["nan", "inf", 1.5]


# --- formula injection --------------------------------------------------------------------------------


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_neutralise_formula(start: str) -> None:
    assert neutralise_formula(start + "1+1") == "'" + start + "1+1"


@pytest.mark.parametrize("value", [-5, -2.5, 3, None, True, "", "a=b", "plain", "'quoted", {"=": 1}])
def test_neutralise_formula_leaves_other_values(value: Any) -> None:
    assert neutralise_formula(value) is value


@pytest.mark.parametrize("ext", ["csv", "xlsx"])
@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_spreadsheet_formats_neutralise_formulas(tmp_path: Path, ext: str, start: str) -> None:
    value = f'{start}HYPERLINK("http://x")'
    expected = "'" + value
    if ext == "xlsx":  # XML parsers read a carriage return in text back as a line feed
        expected = expected.replace("\r", "\n")
    assert one_column(tmp_path, ext, [value]) == [expected]


@pytest.mark.parametrize("ext", ["json", "jsonl", "parquet"])
@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_data_formats_keep_formula_like_strings(tmp_path: Path, ext: str, start: str) -> None:
    value = f"{start}1+1"
    assert one_column(tmp_path, ext, [value]) == [value]


def test_numbers_are_never_neutralised(tmp_path: Path) -> None:
    assert one_column(tmp_path, "csv", [-5, -2.5]) == ["-5", "-2.5"]
    assert one_column(tmp_path, "xlsx", [-5, -2.5]) == [-5, -2.5]


def test_formula_like_header_is_neutralised(tmp_path: Path) -> None:
    write_table(tmp_path / "out.csv", ["=cmd"], [])
    assert read_csv(tmp_path / "out.csv") == [["'=cmd"]]


def test_xlsx_formula_is_stored_as_literal_text(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    write_table(path, ["v"], [{"v": "=1+1"}])
    cell = load_workbook(path)["results"]["A2"]
    assert cell.value == "'=1+1"
    assert cell.data_type == "s"


def test_xlsx_json_text_is_not_neutralised(tmp_path: Path) -> None:
    assert one_column(tmp_path, "xlsx", [{"a": "=x"}]) == ['{"a":"=x"}']


# --- XLSX specifics -----------------------------------------------------------------------------------


def test_xlsx_strips_illegal_control_characters(tmp_path: Path) -> None:
    values = ["a\x00b\x07c\x0bd\x1fe", "keep\ttab\nand newline", "\x01=1+1"]
    assert one_column(tmp_path, "xlsx", values) == ["abcde", "keep\ttab\nand newline", "'=1+1"]


def test_csv_keeps_control_characters(tmp_path: Path) -> None:
    assert one_column(tmp_path, "csv", ["a\x07b"]) == ["a\x07b"]


def test_xlsx_cuts_overlong_cells(tmp_path: Path) -> None:
    assert one_column(tmp_path, "xlsx", ["x" * 40_000]) == ["x" * 32_767]


def test_xlsx_rows_beyond_a_sheet_continue_on_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx_writer, "XLSX_SHEET_ROWS", 2)
    path = tmp_path / "big.xlsx"
    assert write_table(path, ["a"], [{"a": i} for i in range(5)]) == 5
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["results", "results-2", "results-3"]
    sheets = [list(workbook[name].iter_rows(values_only=True)) for name in workbook.sheetnames]
    assert sheets == [[("a",), (0,), (1,)], [("a",), (2,), (3,)], [("a",), (4,)]]
    assert workbook["results-2"]["A1"].font.b is True


def test_xlsx_sheets_have_a_frozen_filtered_header_sized_columns_and_wrapped_long_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx_writer, "XLSX_SAMPLE_ROWS", 3)
    path = tmp_path / "out.xlsx"
    long_text = "word " * 40
    rows = [{"id": f"c-{i}", "text": long_text, "status": "classified", "n": i} for i in range(1, 6)]
    rows.append({"id": "c-6-with-a-much-longer-id-than-the-sampled-rows", "text": "short", "n": 6})
    assert write_table(path, ["id", "text", "status", "n"], rows) == 6

    sheet = load_workbook(path)["results"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:D7"
    assert all(cell.font.b for cell in sheet[1])
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCD"}
    # From the header and the first 3 rows only (the long id of row 6 is not looked at); long text is capped.
    assert widths == {
        "A": 5.0 + 1,
        "B": writers.XLSX_MAX_WIDTH,
        "C": len("classified") + 1,
        "D": writers.XLSX_MIN_WIDTH,
    }
    assert [sheet.cell(row, 2).alignment.wrap_text for row in (2, 6, 7)] == [True, True, True]
    assert sheet.cell(2, 2).alignment.vertical == "top" and not sheet.cell(2, 1).alignment.wrap_text
    assert [sheet.cell(row, 2).value for row in (2, 7)] == [long_text, "short"]  # a reused cell keeps each value
    assert sheet.cell(7, 3).value is None


def test_xlsx_every_sheet_of_a_split_table_is_sized_frozen_and_filtered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx_writer, "XLSX_SHEET_ROWS", 2)
    path = tmp_path / "big.xlsx"
    assert write_table(path, ["a", "b"], [{"a": i, "b": "x" * 80} for i in range(5)]) == 5
    workbook = load_workbook(path)
    sheets = [workbook[name] for name in ("results", "results-2", "results-3")]
    assert [s.auto_filter.ref for s in sheets] == ["A1:B3", "A1:B3", "A1:B2"]
    assert {s.freeze_panes for s in sheets} == {"A2"}
    assert {s.column_dimensions["B"].width for s in sheets} == {writers.XLSX_MAX_WIDTH}
    assert all(s.cell(2, 2).alignment.wrap_text for s in sheets)


def test_xlsx_of_no_rows_still_has_its_header_and_filter(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    assert write_table(path, ["id", "class"], []) == 0
    sheet = load_workbook(path)["results"]
    assert [c.value for c in sheet[1]] == ["id", "class"] and sheet.auto_filter.ref == "A1:B1"


def test_sheets_of_figures_go_after_the_rows_and_other_formats_ignore_them(tmp_path: Path) -> None:
    figures = writers.Sheet(
        "summary",
        [[writers.Styled("figure", bold=True), "value"], ["accuracy", writers.Styled(0.875, number_format="0.0%")]],
        freeze="A2",
    )
    path = tmp_path / "out.xlsx"
    sink = open_sink(FileFormat.XLSX, LocalTarget(path), ["id"])
    for i in range(250):  # past the sampled rows
        sink.write({"id": i})
    sink.add_sheets([figures])
    assert sink.close() == 250
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["results", "summary"]
    summary = workbook["summary"]
    assert summary["A1"].font.b and summary["B2"].value == 0.875 and summary["B2"].number_format == "0.0%"
    assert summary.freeze_panes == "A2" and workbook["results"].max_row == 251
    assert writers.results_sheets(workbook.sheetnames) == ["results"]
    assert writers.results_sheets(["results", "summary", "results-2", "results-x", "confusion"]) == [
        "results",
        "results-2",
    ]

    csv_sink = open_sink(FileFormat.CSV, LocalTarget(tmp_path / "out.csv"), ["id"])
    csv_sink.write({"id": 1})
    csv_sink.add_sheets([figures])
    csv_sink.close()
    assert read_csv(tmp_path / "out.csv") == [["id"], ["1"]]


def test_xlsx_sink_refuses_more_rows_than_its_cap(tmp_path: Path) -> None:
    sink = open_sink(FileFormat.XLSX, LocalTarget(tmp_path / "big.xlsx"), ["a"], xlsx_max_rows=2)
    sink.write({"a": 1})
    sink.write({"a": 2})
    with pytest.raises(OutputFormatError, match="more than 2 rows"):
        sink.write({"a": 3})
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    assert all(sheet._spool is None for sheet in sink._book.sheets)  # type: ignore[attr-defined]  # spools deleted


def test_xlsx_failing_rows_leave_no_file(tmp_path: Path) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield {"a": 1}
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_table(tmp_path / "out.xlsx", ["a"], rows())
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize("ext", FORMATS)
def test_a_failing_source_leaves_no_file_in_any_format(tmp_path: Path, ext: str) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield from ({"a": i} for i in range(25))
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_table(tmp_path / f"out.{ext}", ["a"], rows())
    assert list(tmp_path.iterdir()) == []


# --- Parquet types ------------------------------------------------------------------------------------


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(parquet_writer, "PARQUET_BATCH_ROWS", 4)
    return 4


def parquet_column(tmp_path: Path, values: list[Any]) -> tuple[pa.DataType, list[Any]]:
    path = tmp_path / "out.parquet"
    assert write_table(path, ["v"], [{"v": value} for value in values]) == len(values)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no leftover temporary file
    return pq.read_schema(path).field("v").type, [row["v"] for row in read_parquet(path)]


def test_parquet_none_first_then_text(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [None] * (small_batches * 2) + ["a", "b"]
    assert parquet_column(tmp_path, values) == (pa.string(), values)


def test_parquet_none_first_then_numbers_become_text(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [None] * small_batches + [1, 2.5]
    assert parquet_column(tmp_path, values) == (pa.string(), [None] * small_batches + ["1", "2.5"])


def test_parquet_int_then_text_widens_written_rows(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [*range(small_batches * 3), "abc", None, 7]
    expected = [*(str(i) for i in range(small_batches * 3)), "abc", None, "7"]
    assert parquet_column(tmp_path, values) == (pa.string(), expected)


def test_parquet_int_and_text_in_first_batch(tmp_path: Path, small_batches: int) -> None:
    assert parquet_column(tmp_path, [1, "x"]) == (pa.string(), ["1", "x"])


def test_parquet_int_then_float_becomes_double(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [1, 2, 3, 4, 5.5, 6]
    assert parquet_column(tmp_path, values) == (pa.float64(), [1.0, 2.0, 3.0, 4.0, 5.5, 6.0])


def test_parquet_bool_then_int_becomes_text(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [True, False, None, True, 3]
    assert parquet_column(tmp_path, values) == (pa.string(), ["true", "false", None, "true", "3"])


def test_parquet_two_widenings(tmp_path: Path, small_batches: int) -> None:
    values: list[Any] = [1, 2, 3, 4, 1.5, 2, 3, 4, "z"]
    expected = ["1.0", "2.0", "3.0", "4.0", "1.5", "2.0", "3.0", "4.0", "z"]
    assert parquet_column(tmp_path, values) == (pa.string(), expected)


def test_parquet_huge_int_is_text(tmp_path: Path) -> None:
    assert parquet_column(tmp_path, [2**70, 1]) == (pa.string(), [str(2**70), "1"])


def test_parquet_other_columns_survive_a_rewrite(tmp_path: Path, small_batches: int) -> None:
    rows = [{"n": i, "s": f"r{i}", "x": 1} for i in range(6)] + [{"n": "seven", "s": "r7", "x": 2}]
    path = tmp_path / "out.parquet"
    write_table(path, ["n", "s", "x"], rows)
    assert pq.read_schema(path).field("x").type == pa.int64()
    assert read_parquet(path)[-2:] == [{"n": "5", "s": "r5", "x": 1}, {"n": "seven", "s": "r7", "x": 2}]


def test_parquet_widening_after_a_batch_is_dropped_whole_on_abort(tmp_path: Path, small_batches: int) -> None:
    sink = open_sink(FileFormat.PARQUET, LocalTarget(tmp_path / "out.parquet"), ["v"])
    for value in [1, 2, 3, 4, "five", 6, 7, 8]:  # the second batch widens: the first is published, then rewritten
        sink.write({"v": value})
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_parquet_fixed_schema_is_kept_even_for_empty_columns(tmp_path: Path, small_batches: int) -> None:
    schema = pa.schema([("n", pa.string()), ("ok", pa.bool_()), ("x", pa.float64())])
    path = tmp_path / "fixed.parquet"
    sink = open_sink(FileFormat.PARQUET, LocalTarget(path), schema.names, parquet_schema=schema)
    for i in range(6):
        sink.write({"n": i, "ok": None if i % 2 else True, "x": i})
    assert sink.close() == 6
    assert pq.read_schema(path) == schema
    assert read_parquet(path)[:2] == [{"n": "0", "ok": True, "x": 0.0}, {"n": "1", "ok": None, "x": 1.0}]
    empty = tmp_path / "empty.parquet"
    open_sink(FileFormat.PARQUET, LocalTarget(empty), schema.names, parquet_schema=schema).close()
    assert pq.read_schema(empty) == schema


# --- format choice ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", FileFormat.CSV),
        ("a.CSV", FileFormat.CSV),
        ("dir/a.xlsx", FileFormat.XLSX),
        ("a.json", FileFormat.JSON),
        ("a.jsonl", FileFormat.JSONL),
        ("a.ndjson", FileFormat.JSONL),
        ("a.parquet", FileFormat.PARQUET),
        ("a.pq", FileFormat.PARQUET),
    ],
)
def test_output_format_from_name(name: str, fmt: FileFormat) -> None:
    assert output_format_from_name(name) is fmt


@pytest.mark.parametrize("name", ["out.docx", "out", "out.tsv", "out.xlsm", "out.txt"])
def test_unknown_extension_is_an_output_format_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputFormatError) as caught:
        write_table(tmp_path / name, ["a"], [{"a": 1}])
    message = str(caught.value)
    assert name in message
    for ext in (".csv", ".json", ".jsonl", ".parquet", ".xlsx"):
        assert ext in message
    assert not (tmp_path / name).exists()


# --- memory -------------------------------------------------------------------------------------------


def many_rows(count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield {"id": i, "text": f"customer message number {i} " * 3, "label": "billing", "score": i / 7}


def peak_megabytes(path: Path, count: int) -> float:
    tracemalloc.start()
    try:
        written = write_table(path, ["id", "text", "label", "score"], many_rows(count))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == count
    return peak / 1_000_000


@pytest.mark.parametrize("ext", ["csv", "json", "jsonl", "parquet"])
def test_memory_does_not_grow_with_rows(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"big.{ext}"
    assert peak_megabytes(path, 200_000) < 30
    assert path.stat().st_size > 1_000_000


def test_xlsx_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    path = tmp_path / "big.xlsx"
    assert peak_megabytes(path, 40_000) < 30
    workbook = load_workbook(path, read_only=True)
    assert sum(1 for _ in workbook["results"].iter_rows(values_only=True)) == 40_001
    workbook.close()
