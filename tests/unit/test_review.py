"""The review workbook: the reviewer's columns and drop-downs, the ``review`` command, and scoring a reviewed
workbook with ``evaluate --label-column review_label``."""

import csv
import json

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from test_pipeline import answer_jobs, one_text_task_file, write_input

from batch_classifier.errors import OutputFormatError
from batch_classifier.evaluation import UNKNOWN_TRUTH, TruthSource, evaluate, reviewed_truth
from batch_classifier.formats import REVIEW_LISTS_SHEET, FileFormat
from batch_classifier.tasks import load_task
from batch_classifier.writers import (
    XLSX_SHEET_ROWS,
    LocalTarget,
    open_sink,
    with_review_columns,
)
from batch_classifier_cli.main import main

COLUMNS = ["id", "text", "class", "rationale", "status"]
LAST_ROW = XLSX_SHEET_ROWS + 1


def _write(path, categories, rows=()):
    sink = open_sink(FileFormat.XLSX, LocalTarget(path), COLUMNS, review_categories=categories)
    for row in rows:
        sink.write(row)
    sink.close()
    return sink


def _validations(sheet):
    return {str(dv.sqref): dv.formula1 for dv in sheet.data_validations.dataValidation}


def test_review_columns_follow_the_prediction_and_rationale():
    assert with_review_columns(COLUMNS) == [
        "id",
        "text",
        "class",
        "rationale",
        "review_label",
        "verdict",
        "review_note",
        "status",
    ]
    assert with_review_columns(["id", "label"]) == ["id", "label", "review_label", "verdict", "review_note"]
    # A reviewed file reviewed again: its review columns move, they are not repeated.
    again = with_review_columns(["id", "class", "verdict", "rationale", "review_label"])
    assert again == ["id", "class", "rationale", "review_label", "verdict", "review_note"]


def test_writer_adds_drop_downs_over_whole_columns(tmp_path):
    path = tmp_path / "review.xlsx"
    row = {"id": "1", "text": "t", "class": "A", "rationale": "because", "status": "classified"}
    _write(path, ["A", "B"], [row, {**row, "id": "2", "verdict": "wrong"}])
    book = load_workbook(path)
    assert book.sheetnames == ["results"]
    sheet = book["results"]
    assert [c.value for c in sheet[1]] == with_review_columns(COLUMNS)
    assert [c.value for c in sheet[3]] == ["2", "t", "A", "because", None, "wrong", None, "classified"]
    assert _validations(sheet) == {
        f"E2:E{LAST_ROW}": '"A,B"',
        f"F2:F{LAST_ROW}": '"correct,wrong,unsure"',
    }
    assert all(dv.type == "list" and dv.showErrorMessage for dv in sheet.data_validations.dataValidation)
    assert sheet["E1"].fill.start_color.rgb.endswith("FFF2CC")  # the reviewer's headers are shaded


def test_a_long_category_list_comes_from_a_hidden_sheet(tmp_path):
    path = tmp_path / "review.xlsx"
    categories = [f"Category number {n} with a long descriptive name" for n in range(12)]
    assert len(",".join(categories)) > 255
    _write(path, categories)
    book = load_workbook(path)
    lists = book[REVIEW_LISTS_SHEET]
    assert lists.sheet_state == "hidden"
    assert [row[0] for row in lists.iter_rows(values_only=True)] == categories
    assert _validations(book["results"])[f"E2:E{LAST_ROW}"] == f"'{REVIEW_LISTS_SHEET}'!$A$1:$A$12"


def test_a_category_with_a_comma_also_comes_from_the_hidden_sheet(tmp_path):
    path = tmp_path / "review.xlsx"
    _write(path, ["Refund, partial", "Other"])
    assert _validations(load_workbook(path)["results"])[f"E2:E{LAST_ROW}"] == f"'{REVIEW_LISTS_SHEET}'!$A$1:$A$2"


def test_review_columns_need_a_workbook(tmp_path):
    with pytest.raises(OutputFormatError, match="xlsx"):
        open_sink(FileFormat.CSV, LocalTarget(tmp_path / "r.csv"), COLUMNS, review_categories=["A"])
    assert not (tmp_path / "r.csv").exists()


def test_reviewed_truth():
    assert reviewed_truth(" B ", "A", "correct") == ("B", TruthSource.LABEL)  # a label wins over a verdict
    assert reviewed_truth(None, "A", "Correct") == ("A", TruthSource.VERDICT)
    assert reviewed_truth("", "A", "wrong") == (UNKNOWN_TRUTH, TruthSource.VERDICT)
    assert reviewed_truth(None, None, "correct") == (None, TruthSource.NONE)  # nothing to be correct about
    assert reviewed_truth(None, "A", "unsure") == (None, TruthSource.NONE)
    assert reviewed_truth(None, "A", None) == (None, TruthSource.NONE)


def test_a_wrong_verdict_counts_in_accuracy_and_precision_not_recall():
    result = evaluate([("A", "A"), (UNKNOWN_TRUTH, "A")], ["A", "B"])
    assert (result.rows, result.correct, result.accuracy) == (2, 1, 0.5)
    metrics = {m.label: m for m in result.per_class}
    assert (metrics["A"].support, metrics["A"].predicted, metrics["A"].recall) == (1, 2, 1.0)
    assert metrics["A"].precision == 0.5
    assert UNKNOWN_TRUTH not in metrics and UNKNOWN_TRUTH not in result.confusion
    assert not result.most_confused


def _results_csv(path, predictions):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "class", "rationale", "status", "reason"])
        for number, predicted in enumerate(predictions, start=1):
            status = "classified" if predicted else "off_list"
            writer.writerow([f"r{number}", f"call {number}", predicted, f"why {number}", status, ""])


def test_review_command_then_evaluate_the_reviewed_workbook(tmp_path, capsys):
    first, second = load_task("travel").category_names[:2]
    results = tmp_path / "results.csv"
    _results_csv(results, [first, first, second, second, first, first, ""])
    review = tmp_path / "review.xlsx"
    assert main(["review", str(results), "--task", "travel", "--out", str(review)]) == 0
    assert "wrote 7 rows" in capsys.readouterr().out

    book = load_workbook(review)
    sheet = book["results"]
    header = [c.value for c in sheet[1]]
    assert header[:7] == ["id", "text", "class", "rationale", "review_label", "verdict", "review_note"]
    categories = _validations(sheet)[f"E2:E{LAST_ROW}"]
    assert first in categories and second in categories  # inline, or the hidden sheet's range
    # The reviewer's marks: two labels (one agreeing), two verdicts alone, one unsure, one untouched, and a
    # wrong verdict on a row the model did not answer.
    marks = {2: (first, None), 3: (second, None), 4: (None, "correct"), 5: (None, "wrong"), 6: (None, "unsure")}
    marks[8] = (None, "wrong")
    for row, (label, verdict) in marks.items():
        sheet.cell(row=row, column=5, value=label)
        sheet.cell(row=row, column=6, value=verdict)
    sheet.cell(row=2, column=7, value="clear booking call")
    book.save(review)

    assert main(["evaluate", str(review), "--label-column", "review_label", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["review"] == {"from_labels": 2, "from_verdicts": 3, "wrong_without_label": 2, "left_out": 2}
    # Scored: r1 right, r2 wrong (label), r3 right, r4 wrong, r7 wrong and unanswered (verdicts).
    assert (figures["rows"], figures["correct"], figures["unlabelled"], figures["answered"]) == (5, 2, 2, 4)
    assert figures["accuracy"] == 0.4
    assert figures["per_class"][first]["support"] == 1 and figures["per_class"][second]["support"] == 2
    assert figures["per_class"][second]["recall"] == 0.5
    assert UNKNOWN_TRUTH not in figures["confusion"]

    assert main(["evaluate", str(review), "--label-column", "review_label"]) == 0
    printed = capsys.readouterr().out
    assert "Reviewed rows: 2 scored from review_label, 3 from verdict alone" in printed
    assert "2 left out (unsure or not reviewed)" in printed


def test_review_command_refuses_other_formats_and_missing_predictions(tmp_path, capsys):
    results = tmp_path / "results.csv"
    _results_csv(results, ["Booking Inquiry"])
    assert main(["review", str(results), "--out", str(tmp_path / "review.csv")]) != 0
    assert "is an .xlsx file" in capsys.readouterr().err
    plain = tmp_path / "plain.csv"
    plain.write_text("id,text\n1,hello\n", encoding="utf-8")
    assert main(["review", str(plain), "--out", str(tmp_path / "r.xlsx")]) != 0
    assert "has no column 'class'" in capsys.readouterr().err
    assert not (tmp_path / "review.csv").exists() and not (tmp_path / "r.xlsx").exists()


def test_collect_review_needs_a_workbook(tmp_path, capsys):
    source = tmp_path / "calls.csv"
    write_input(source, 120)
    assert (
        main(["prepare", str(source), "--task", str(one_text_task_file(tmp_path)), "--out", str(tmp_path / "prep")])
        == 0
    )
    answer_jobs(tmp_path / "prep", tmp_path / "outputs")
    common = ["collect", str(tmp_path / "prep"), "--outputs", str(tmp_path / "outputs"), "--review"]
    assert main([*common, "--out", str(tmp_path / "out" / "calls.csv")]) != 0
    assert "--review adds drop-down columns" in capsys.readouterr().err
    results = tmp_path / "out" / "calls.xlsx"
    assert main([*common, "--out", str(results)]) == 0
    book = load_workbook(results)
    sheet = book["results"]
    header = [c.value for c in sheet[1]]
    at = header.index("rationale")
    assert header[at + 1 : at + 4] == ["review_label", "verdict", "review_note"]
    label, verdict = get_column_letter(at + 2), get_column_letter(at + 3)
    assert set(_validations(sheet)) == {f"{label}2:{label}{LAST_ROW}", f"{verdict}2:{verdict}{LAST_ROW}"}
    assert "summary" in book.sheetnames
