"""The quick paths of writing and reading results: CSV records built without the csv module, the XLSX workbook
written as SpreadsheetML (xlsx_file), JSON rows through orjson with the json module behind it, and output lines read
through a large buffer. Each must give what the plain path gives."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from batch_classifier import xlsx_writer
from batch_classifier.exact_json import load_object
from batch_classifier.formats import FileFormat
from batch_classifier.outputs import parse_output_line, read_output_lines
from batch_classifier.records import CanonicalRecord, RowStatus
from batch_classifier.results import Verdict
from batch_classifier.writer_base import _csv_cell, _csv_line, _json_bytes
from batch_classifier.writers import LocalTarget, Target, open_sink, write_table
from batch_classifier.xlsx_file import escape


def test_csv_records_are_what_csv_writer_writes() -> None:
    rng = random.Random(7)
    alphabet = ["a", ",", '"', "\n", "\r", " ", "'", "=", "-", "é", "\t", "@"]
    values: list[Any] = [1, -2.5, True, False, 0, float("nan"), {"a": "=x"}, [1, 2], None, ""]
    for _ in range(3000):
        columns = ["a", "b", "c"][: rng.randint(1, 3)]
        row = {
            column: rng.choice(values) if rng.random() < 0.3 else "".join(rng.choices(alphabet, k=rng.randint(0, 6)))
            for column in columns
        }
        expected = io.StringIO()
        csv.writer(expected, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(
            [_csv_cell(row.get(column)) for column in columns]
        )
        assert _csv_line(row, columns) == expected.getvalue(), row


def test_csv_file_starts_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_table(path, ["a", "b"], [{"a": "x,y", "b": 1}])
    assert path.read_bytes() == b'\xef\xbb\xbfa,b\r\n"x,y",1\r\n'


def test_json_rows_orjson_refuses_are_written_by_the_json_module() -> None:
    huge = 2**70
    row = {"id": huge, "meta": {1: "a"}, "score": float("nan"), "text": "é"}
    line = _json_bytes(["id", "meta", "score", "text"], row)
    assert json.loads(line) == {"id": huge, "meta": {"1": "a"}, "score": None, "text": "é"}
    assert _json_bytes(["x", "y"], {"x": float("inf"), "y": "=1"}) == b'{"x":null,"y":"=1"}'


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":18446744073709551616}',
        b'{"id":-9223372036854775809}',
        b'{"meta":{"n":123456789012345678901234567890}}',
        b'{"list":[99999999999999999999]}',
        b'{"n":1e400}',
        b'{"n":1.5,"t":"x"}',
    ],
)
def test_json_rows_read_back_with_their_exact_values(line: bytes) -> None:
    assert load_object(line) == json.loads(line)


def test_verdicts_go_through_their_lines_unchanged() -> None:
    verdict = Verdict(RowStatus.OFF_LIST, rationale="é <b>", answer="X", reason="'X' is not one", retryable=True)
    assert Verdict.from_json(verdict.to_json(12)) == (12, verdict)
    assert Verdict.from_json(json.dumps({"i": 3, "status": "classified", "class": "A"})) == (
        3,
        Verdict(RowStatus.CLASSIFIED, category="A"),
    )


def _output_line(record: str, text: str, filler: int = 0, after: str = "") -> bytes:
    model_in = {"messages": [{"role": "user", "content": "x" * filler}]}
    output = {"content": [{"type": "text", "text": text}], "usage": {"input_tokens": 5, "output_tokens": 2}}
    body = json.dumps({"recordId": record, "modelInput": model_in, "modelOutput": output})
    if after:
        body = body[:-1] + f', "after": {after}}}'
    return body.encode()


def test_output_lines_longer_than_the_read_buffer_and_a_last_line_without_its_line_feed() -> None:
    lines = [
        _output_line("R0000000001", "<classification>A</classification>", filler=3_000_000),
        b"",
        _output_line("R0000000002", "<classification>B</classification>"),
    ]
    bad: list[Any] = []
    results = list(read_output_lines(io.BytesIO(b"\n".join(lines)), "f.out", bad))
    assert [(r.record_id, r.text, r.input_tokens) for r in results] == [
        ("R0000000001", "<classification>A</classification>", 5),
        ("R0000000002", "<classification>B</classification>", 5),
    ]
    assert bad == []


def test_a_key_after_the_model_output_is_read_too() -> None:
    line = _output_line("R0000000003", "<classification>C</classification>", after='{"k": [1, "}"]}')
    assert parse_output_line(line) == parse_output_line(line.decode())
    assert parse_output_line(line).text == "<classification>C</classification>"


def test_the_stream_read_through_the_buffer_stays_open() -> None:
    stream = io.BytesIO(_output_line("R0000000004", "<classification>D</classification>") + b"\n")
    assert len(list(read_output_lines(stream, "f.out", []))) == 1
    assert not stream.closed


# --- XLSX ------------------------------------------------------------------------------------------------------


def test_xlsx_text_is_escaped_and_keeps_its_spaces(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    values = ["a & b <c> \"d\" 'e'", "  padded  ", "\tlead", "", "line\nbreak", "]]>", "日本語", 2**70, -0.0]
    write_table(path, ["v"], [{"v": value} for value in values])
    read = [row[0] for row in load_workbook(path)["results"].iter_rows(min_row=2, values_only=True)]
    assert read == ["a & b <c> \"d\" 'e'", "  padded  ", "'\tlead", None, "line\nbreak", "]]>", "日本語", 2**70, 0]


def test_escape() -> None:
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c" and escape("plain") == "plain"


class _Unseekable(Target):
    """A target that, like an S3 upload, cannot seek: the zip is written with data descriptors."""

    def __init__(self, path: Path) -> None:
        self._local = LocalTarget(path)
        self.name = self._local.name

    def create(self) -> Any:
        upload = self._local.create()

        def refuse(*_: Any) -> int:
            raise io.UnsupportedOperation("not seekable")

        upload.seekable = lambda: False  # type: ignore[method-assign]
        upload.seek = upload.tell = refuse  # type: ignore[method-assign]
        return upload

    def read_back(self) -> Any:
        return self._local.read_back()

    def remove(self) -> None:
        self._local.remove()


def test_xlsx_written_to_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    sink = open_sink(FileFormat.XLSX, _Unseekable(path), ["id", "class"], review_categories=["A", "B"])
    for number in range(150):
        sink.write({"id": number, "class": "A" if number % 2 else "B"})
    assert sink.close() == 150
    with zipfile.ZipFile(path) as package:
        assert package.testzip() is None
        assert {"[Content_Types].xml", "xl/workbook.xml", "xl/styles.xml", "xl/worksheets/sheet1.xml"} <= set(
            package.namelist()
        )
    sheet = load_workbook(path)["results"]
    assert sheet.max_row == 151 and sheet["B151"].value == "A" and sheet.freeze_panes == "A2"
    assert len(sheet.data_validations.dataValidation) == 2


def test_an_aborted_xlsx_sink_deletes_its_spooled_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx_writer, "XLSX_SAMPLE_ROWS", 2)
    monkeypatch.setattr(xlsx_writer, "XLSX_SHEET_ROWS", 3)
    sink = open_sink(FileFormat.XLSX, LocalTarget(tmp_path / "out.xlsx"), ["a"])
    for number in range(10):
        sink.write({"a": number})
    sheets = sink._book.sheets  # type: ignore[attr-defined]
    assert len(sheets) == 4 and all(sheet._spool is not None for sheet in sheets)
    sink.abort()
    assert all(sheet._spool is None for sheet in sheets)
    assert list(tmp_path.iterdir()) == []


def test_xlsx_styles_of_sheets_of_figures(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    sink = open_sink(FileFormat.XLSX, LocalTarget(path), ["a"])
    sink.write({"a": 1})
    rows = [
        [xlsx_writer.Styled("share", bold=True), xlsx_writer.Styled(0.25, number_format="0.0%")],
        ["money", xlsx_writer.Styled(1.5, bold=True, number_format="$#,##0.00")],
        [xlsx_writer.Styled(None, bold=True), xlsx_writer.Styled(3, number_format="0.00%")],
    ]
    sink.add_sheets([xlsx_writer.Sheet("figures", rows, freeze="B2", heat_map="B1:B3")])
    sink.close()
    sheet = load_workbook(path)["figures"]
    assert sheet["A1"].font.b and sheet["B1"].number_format == "0.0%" and not sheet["B1"].font.b
    assert sheet["B2"].font.b and sheet["B2"].number_format == "$#,##0.00" and sheet["B3"].number_format == "0.00%"
    assert sheet["A3"].value is None and sheet["A3"].font.b
    assert sheet.freeze_panes == "B2"
    (rule,) = sheet.conditional_formatting
    assert str(rule.sqref) == "B1:B3" and rule.rules[0].type == "colorScale"


@pytest.mark.parametrize(
    "carry",
    [
        {"n": 18446744073709551616},
        {"n": float("nan"), "m": float("inf")},
        {"nested": {"n": 123456789012345678901234567890}},
        {"list": [1, 2.5, "x"]},
        {"n": 1.5, "t": "é", "none": None},
    ],
)
def test_records_read_back_with_their_carried_values_exact(carry: dict) -> None:
    record = CanonicalRecord(row=3, id="a", text="hi", carry=carry, label="X", rid="R0000000001", first=True)
    again = CanonicalRecord.from_json(record.to_json())
    assert json.dumps(again.carry) == json.dumps(carry)
    assert (again.row, again.id, again.text, again.label, again.rid, again.first) == (
        3,
        "a",
        "hi",
        "X",
        record.rid,
        True,
    )
