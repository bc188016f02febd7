"""The run report: the aggregates counted from the rows (bounded), the HTML page made from a summary (escaped,
offline, each part only when the summary has its figures), the workbook sheets, and the commands that write it
(``collect`` and ``report``)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from test_pipeline import answer_jobs, prepare_labelled, write_input

from batch_classifier import report, report_digest
from batch_classifier.evaluation import NO_ANSWER, evaluate
from batch_classifier.formats import FileFormat
from batch_classifier.report import RowDigest, render_report, workbook_sheets
from batch_classifier.writers import LocalTarget, open_sink
from batch_classifier_cli.main import main

SCRIPT = "<script>alert(1)</script>"
QUOTE = '" onmouseover="alert(2)'


def labelled_summary(classes: list[str], pairs: list[tuple[str, str | None]], **more: Any) -> dict[str, Any]:
    """A summary like FinalizeRun's for ``pairs`` of (truth, answer)."""
    by_class = {c: sum(1 for _, a in pairs if a == c) for c in classes}
    answered = sum(by_class.values())
    summary: dict[str, Any] = {
        "rows": len(pairs),
        "by_status": {"classified": answered, "off_list": len(pairs) - answered},
        "by_class": by_class,
        "by_match": {"exact": answered},
        "evaluation": evaluate(pairs, classes).to_dict(),
        "tokens": {"input": 1000, "output": 50, "batch": {"input": 1000, "output": 50}, "on_demand": {}},
        "cost_usd": 0.5,
        "cost": {"batch_usd": 0.5, "on_demand_usd": 0.0, "on_demand_equivalent_usd": 1.0, "batch_saved_usd": 0.5},
        "source": "input_data/calls.csv",
        "task": "travel",
        "outcome": "succeeded",
        "headline": "all good",
        "warnings": [],
    }
    summary.update(more)
    return summary


# --- the digest of the rows ------------------------------------------------------------------------------------


def test_the_digest_counts_off_list_answers_and_keeps_their_first_rows():
    digest = RowDigest()
    for number in range(1, 21):
        answer = "Hotel" if number % 2 else "Lounge"
        digest.add({"id": f"c-{number}", "status": "off_list", "model_answer": answer}, number)
    digest.add({"id": "c-21", "status": "classified", "class": "Refund"}, 21)
    off_list = digest.to_dict()["off_list_answers"]
    assert off_list["rows"] == 20 and off_list["distinct"] == 2 and off_list["not_listed"] == 0
    hotel, lounge = off_list["answers"]
    assert (hotel["answer"], hotel["count"], lounge["answer"], lounge["count"]) == ("Hotel", 10, "Lounge", 10)
    assert hotel["rows"] == [{"row": n, "id": f"c-{n}"} for n in (1, 3, 5, 7, 9)]  # ROWS_PER_ANSWER of them


def test_the_digest_stays_bounded_whatever_the_rows(monkeypatch):
    monkeypatch.setattr(report_digest, "TRACKED", 30)
    digest = RowDigest()
    for number in range(1, 10_001):
        digest.add({"id": number, "status": "off_list", "model_answer": f"answer {number % 100}"}, number)
        digest.add({"id": number, "status": "model_error", "reason": f"error {number % 50}: throttled"}, number)
    counted = digest.to_dict()
    off_list = counted["off_list_answers"]
    assert off_list["distinct"] == 30 and len(off_list["answers"]) == 30  # TRACKED answers counted one by one
    assert off_list["rows"] == 10_000 and off_list["not_listed"] == 10_000 - 30 * 100
    assert all(len(a["rows"]) <= report.ROWS_PER_ANSWER for a in off_list["answers"])
    errors = counted["not_classified"]["model_error"]
    assert errors["rows"] == 10_000 and len(errors["reasons"]) == report.REASONS
    assert errors["other_reasons"] == 10_000 - sum(r["count"] for r in errors["reasons"])
    assert len(errors["examples"]) == report.EXAMPLE_ROWS
    assert len(digest.off_list.counts) == 30 and len(digest.statuses["model_error"].reasons.counts) == 30


def test_reasons_of_invalid_rows_are_counted_without_their_row_number():
    digest = RowDigest()
    digest.add({"id": "a", "status": "invalid_input", "reason": "row 4: no text in 'conversation'"}, 4)
    digest.add({"id": "b", "status": "invalid_input", "reason": "sheet 'Calls', row 9: no text in 'conversation'"}, 9)
    tally = digest.to_dict()["not_classified"]["invalid_input"]
    assert tally["reasons"] == [{"reason": "no text in 'conversation'", "count": 2}]
    assert [x["reason"] for x in tally["examples"]] == [
        "row 4: no text in 'conversation'",
        "sheet 'Calls', row 9: no text in 'conversation'",
    ]


# --- the page --------------------------------------------------------------------------------------------------


def svg_parts(page: str) -> list[ET.Element]:
    """Every chart of the page, parsed as XML: a value escaped wrongly would break it."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", page, re.S)]


def hostile_summary() -> dict[str, Any]:
    classes = [SCRIPT, QUOTE, "Refund & Returns"]
    pairs = [(SCRIPT, SCRIPT)] * 3 + [(SCRIPT, QUOTE), (QUOTE, QUOTE), ("Refund & Returns", None)]
    digest = RowDigest()
    digest.add({"id": SCRIPT, "status": "off_list", "model_answer": SCRIPT}, 1)
    digest.add({"id": QUOTE, "status": "invalid_input", "reason": f"row 2: {SCRIPT}"}, 2)
    return labelled_summary(
        classes,
        pairs,
        source=f"input_data/{SCRIPT}.csv",
        task=SCRIPT,
        model_id=QUOTE,
        run_id=SCRIPT,
        headline=SCRIPT,
        outcome=QUOTE,
        warnings=[SCRIPT],
        timings={"steps": [{"step": SCRIPT, "seconds": 3.0}], "total_seconds": 3.0},
        **digest.to_dict(),
    )


def test_everything_users_supply_is_escaped():
    page = render_report(hostile_summary())
    assert "<script" not in page and "onmouseover=" not in page.replace("onmouseover=&quot;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot; onmouseover=&quot;alert(2)" in page
    assert "Refund &amp; Returns" in page
    charts = svg_parts(page)  # status, classes, heat map, timings: all well-formed
    assert len(charts) == 4
    labels = {"".join(text.itertext()) for chart in charts for text in chart.iter("{http://www.w3.org/2000/svg}text")}
    assert any(SCRIPT in label for label in labels)  # the class name is shown as text, not markup


def test_the_page_needs_no_network_and_runs_no_script():
    page = render_report(hostile_summary())
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for needle in ("<script", "<link", " src=", "url(", "@import"):
        assert needle not in page
    assert set(re.findall(r"https?://[^\"' <]+", page)) == {"http://www.w3.org/2000/svg"}  # a namespace, not fetched


def test_the_heat_map_draws_only_the_pairs_that_occur():
    classes = [f"class {i:02d}" for i in range(77)]
    pairs = [(c, c) for c in classes] + [(classes[0], classes[1]), (classes[2], None)]
    page = render_report(labelled_summary(classes, pairs))
    heat_map = next(svg for svg in svg_parts(page) if "confusion" in svg.get("aria-label", ""))
    cells = [rect for rect in heat_map.iter("{http://www.w3.org/2000/svg}rect") if rect.get("fill-opacity")]
    assert len(cells) == 77 + 2
    titles = {rect.findtext("{http://www.w3.org/2000/svg}title") for rect in cells}
    assert "class 00 → class 01: 1 (50.0% of class 00)" in titles
    assert f"class 02 → {NO_ANSWER}: 1 (50.0% of class 02)" in titles


def test_each_part_shows_only_when_the_summary_has_its_figures():
    bare = {"rows": 2, "by_status": {"classified": 2}, "by_class": {"A": 2, "B": 0}}
    page = render_report(bare)
    assert "Rows by status" in page and "Class distribution" in page and "1 of 2 categories" in page
    for absent in ("Against the ground truth", "Confusion matrix", "Tokens and cost", "Off-list answers"):
        assert absent not in page
    for absent in ("Rows not classified", "Time by step", "Packing saved", "Warnings"):
        assert absent not in page

    summary = labelled_summary(["A", "B"], [("A", "A"), ("B", "A")])
    page = render_report(summary)
    assert "Against the ground truth" in page and "Confusion matrix" in page and "batch saved" in page
    assert "Packing saved" not in page
    summary["cost"]["packing_saved_usd"] = 12.5
    summary["packing"] = {"texts_per_request": 6}
    assert "Packing saved <b>$12.50</b> (6 texts a request)" in render_report(summary)


def test_a_summary_without_a_price_says_the_cost_is_unknown():
    summary = labelled_summary(["A"], [("A", "A")], cost_usd=None, cost={"batch_usd": None, "on_demand_usd": None})
    page = render_report(summary)
    assert "cost unknown" in page and "batch saved" not in page


# --- the sheets ------------------------------------------------------------------------------------------------


def test_a_labelled_run_gets_a_summary_and_a_confusion_sheet(tmp_path: Path):
    classes = ["=cmd|' /C calc'!A0", "Refund"]
    pairs = [(classes[0], classes[0]), (classes[0], "Refund"), ("Refund", "Refund"), ("Refund", None)]
    summary = labelled_summary(classes, pairs)
    assert [s.title for s in workbook_sheets(summary)] == ["summary", "confusion"]
    assert [s.title for s in workbook_sheets({"rows": 0, "by_status": {}})] == ["summary"]

    path = tmp_path / "results.xlsx"
    sink = open_sink(FileFormat.XLSX, LocalTarget(path), ["id", "class"])
    sink.write({"id": "c-1", "class": "Refund"})
    sink.add_sheets(workbook_sheets(summary))
    sink.close()
    book = load_workbook(path)
    assert book.sheetnames == ["results", "summary", "confusion"]
    figures = {row[0]: row[1:] for row in book["summary"].iter_rows(values_only=True) if row and row[0]}
    assert figures["accuracy"][0] == 0.5 and book["summary"]["A1"].font.b is True
    assert figures["'=cmd|' /C calc'!A0"][0] == 1  # a class name a spreadsheet would run is text
    confusion = book["confusion"]
    assert [c.value for c in confusion[1]] == ["true class \\ answer", "'=cmd|' /C calc'!A0", "Refund", NO_ANSWER]
    assert [c.value for c in confusion[3]] == ["Refund", 0, 1, 1]
    assert confusion.freeze_panes == "B2"
    (rule,) = confusion.conditional_formatting
    assert str(rule.sqref) == "B2:D3"


# --- the commands ----------------------------------------------------------------------------------------------


def collected(tmp_path: Path, out: str) -> Path:
    """A prepared and answered run of 150 labelled rows (2 empty, 2 answered off the list), collected to ``out``."""
    source = tmp_path / "calls.csv"
    write_input(source, 150, empty=2)
    assert prepare_labelled(source, tmp_path / "prep") == 0
    answer_jobs(tmp_path / "prep", tmp_path / "outputs")
    for path in (tmp_path / "outputs").rglob("*.jsonl.out"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number in range(2):
            line = json.loads(lines[number])
            line["modelOutput"]["content"][0]["text"] = f"<classification>{SCRIPT}</classification>"
            lines[number] = json.dumps(line)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = tmp_path / "results" / out
    argv = ["collect", str(tmp_path / "prep"), "--outputs", str(tmp_path / "outputs"), "--out", str(results)]
    assert main(argv) == 0
    return results


def test_collect_writes_the_report_and_a_workbook_to_work_in(tmp_path: Path, capsys):
    results = collected(tmp_path, "calls.xlsx")
    folder = results.parent
    assert "report.html" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["calls.xlsx", "report.html", "summary.json"]
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["results_file"] == "calls.xlsx" and summary["report"] == "report.html"
    assert summary["off_list_answers"]["answers"][0]["answer"] == SCRIPT
    assert summary["off_list_answers"]["rows"] == 2
    assert summary["not_classified"]["invalid_input"]["rows"] == 2
    assert summary["cost"]["on_demand_equivalent_usd"] > summary["cost_usd"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page == render_report(summary) and "<script" not in page

    book = load_workbook(results, read_only=True)
    assert book.sheetnames == ["results", "summary", "confusion"]
    rows = list(book["results"].iter_rows(values_only=True))
    assert len(rows) == 151 and rows[0][0] == "id"
    book.close()
    assert main(["evaluate", str(results), "--label-column", "class", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["rows"] + metrics["unlabelled"] == 150  # the summary and confusion sheets are not rows


def test_report_makes_the_page_again_for_a_past_run(tmp_path: Path, capsys):
    results = collected(tmp_path, "calls.csv")
    folder = results.parent
    written = (folder / "report.html").read_text(encoding="utf-8")
    (folder / "report.html").unlink()
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").read_text(encoding="utf-8") == written
    assert main(["report", str(folder / "summary.json"), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == written

    # A summary from before it held the report's aggregates: they are counted from the results file beside it.
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    for key in ("off_list_answers", "not_classified"):
        del summary[key]
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(folder), "--out", str(tmp_path / "old.html")]) == 0
    assert "counted from calls.csv" in capsys.readouterr().out
    page = (tmp_path / "old.html").read_text(encoding="utf-8")
    assert "Off-list answers" in page and "&lt;script&gt;" in page and "Rows not classified" in page


@pytest.mark.parametrize("given", ["missing", "file"])
def test_report_needs_a_summary(tmp_path: Path, capsys, given: str):
    target = tmp_path / "nothing-here"
    if given == "file":
        target = tmp_path / "summary.json"
        target.write_text("[1, 2]", encoding="utf-8")
    assert main(["report", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "summary" in err and "Traceback" not in err


def test_a_run_answered_wholly_on_demand_saved_nothing_by_batch():
    from batch_classifier.cost import PriceTable  # noqa: PLC0415

    prices = PriceTable.load()
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    on_demand = prices.cost(model, 104_762, 10_463, "on_demand")
    # The run's cost, summed shard by shard, can come out a hair above the same tokens priced at once.
    cost = on_demand + 1e-9
    saved = report_digest.batch_savings({"input": 104_762, "output": 10_463}, cost, model, prices)
    assert saved["batch_saved_usd"] == 0.0 and str(saved["batch_saved_usd"]) == "0.0"  # never "-0.0"
