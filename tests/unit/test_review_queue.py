"""Confidence and the review queue: the task setting, the prompt, reading a confidence (alone and in packed replies),
the needs_review flag, the offline model's confidence, review.xlsx from collect, merge-reviews and export-training."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from batch_classifier.confidence import needs_review, parse_confidence
from batch_classifier.errors import TaskError
from batch_classifier.labels import LabelMatcher, MatchMethod
from batch_classifier.outputs import ModelResult, extract_answer
from batch_classifier.prompts import output_format, packed_output_format, render_packed_prompt
from batch_classifier.records import RowStatus, request_id
from batch_classifier.results import Verdict, judge, unpack_results
from batch_classifier.tasks import Task, load_task, parse_task
from batch_classifier.training import (
    LabelSource,
    Review,
    ReviewMergeError,
    ReviewMerger,
    TrainingSampler,
    read_reviews,
)
from batch_classifier_cli.main import main
from batch_classifier_local.answer import answer_prepared
from batch_classifier_local.offline import OfflineClassifier, confidence

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-data" / "travel_calls.csv"


def asking(task: Task | None = None, threshold: float = 0.7, **changes) -> Task:
    """The task (travel by default) asking for a confidence."""
    base = task or load_task("travel")
    review = base.review.model_copy(update={"confidence": True, "threshold": threshold})
    return base.model_copy(update={"review": review, **changes})


# --- the task setting and the prompt ------------------------------------------------------------------------


def test_confidence_is_not_asked_by_default_and_asking_changes_the_prompt_not_the_threshold():
    travel = load_task("travel")
    assert (travel.review.confidence, travel.review.threshold) == (False, 0.7)
    assert "confidence" not in output_format(travel) and "confidence" not in packed_output_format(travel)
    asked = asking(travel)
    assert output_format(asked).endswith(
        "<confidence>a whole number from 0 to 100: how sure you are that this category is right</confidence>"
    )
    packed = packed_output_format(asked)
    # Inside each numbered answer, after the explanation.
    assert packed.count("<confidence>") == 2 and packed.index("</explanation>") < packed.index("<confidence>")
    assert packed.index("<confidence>") < packed.index("</answer>")
    assert asked.content_hash != travel.content_hash  # the prompt changed
    assert asking(travel, threshold=0.5).content_hash == asked.content_hash  # the threshold shapes no answer


def test_the_review_setting_in_a_task_file():
    text = load_task("travel").to_yaml().replace("review:\n  confidence: false\n  threshold: 0.7\n", "")
    text += "review:\n  confidence: true\n  threshold: 0.8\n"
    task = parse_task(text)
    assert (task.review.confidence, task.review.threshold) == (True, 0.8)
    with pytest.raises(TaskError, match=r"review\.threshold"):
        parse_task(text.replace("threshold: 0.8", "threshold: 80"))
    own = yaml.safe_load(text) | {"texts_per_request": 1, "system_template": "Classify. {{categories}}"}
    with pytest.raises(TaskError, match="asks for a confidence"):
        parse_task(yaml.safe_dump(own))


# --- reading a confidence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("85", 0.85),
        (" 85% ", 0.85),
        ("85/100", 0.85),
        ("0.85", 0.85),
        ("1.0", 1.0),
        ("100", 1.0),
        ("0", 0.0),
        ("1", 0.01),
        ('"72"', 0.72),
        ("high", None),
        ("", None),
        ("150", None),
        (None, None),
    ],
)
def test_parse_confidence(raw, expected):
    assert parse_confidence(raw) == expected


def test_a_missing_or_garbled_confidence_still_classifies():
    task = asking()
    tags = task.output_tags
    said = extract_answer(
        "<classification>Complaint</classification><explanation>rude</explanation><confidence>62</confidence>", tags
    )
    assert (said.label, said.explanation, said.confidence) == ("Complaint", "rude", 0.62)
    garbled = extract_answer("<classification>Complaint</classification><confidence>very sure", tags)
    assert (garbled.label, garbled.confidence) == ("Complaint", None)
    matcher = LabelMatcher(task)
    verdict = judge(ModelResult("R000000001", text="<classification>Complaint</classification>"), matcher, task)
    assert verdict.status is RowStatus.CLASSIFIED and verdict.confidence is None
    assert verdict.needs_review  # asked for and not given: not shown to be confident


def test_needs_review_rules():
    travel, asked = load_task("travel"), asking()
    assert not needs_review(travel, MatchMethod.EXACT, None)  # not asked: the threshold does not apply
    assert not needs_review(travel, MatchMethod.NORMALISED, 0.1)
    assert needs_review(travel, MatchMethod.ALIAS, None) and needs_review(travel, MatchMethod.FUZZY, 1.0)
    assert needs_review(asked, MatchMethod.EXACT, 0.69) and not needs_review(asked, MatchMethod.EXACT, 0.7)
    assert needs_review(asked, MatchMethod.ALIAS, 0.99)  # an alias is flagged whatever the confidence


def test_a_packed_reply_with_confidences():
    task = asking()
    matcher = LabelMatcher(task)
    reply = (
        '<answer number="1"><classification>Complaint</classification><explanation>rude</explanation>'
        "<confidence>91</confidence></answer>\n"
        '<answer number="2"><classification>Payment Problem</classification><explanation>card</explanation>'
        "<confidence>40%</confidence></answer>\n"
        '<answer number="3"><classification>complaint</classification><explanation>x</explanation>'
        "<confidence>n/a</confidence></answer>\n"
        '<answer number="4"><classification>Refunds</classification><explanation>y</explanation>'
        "<confidence>0.95</confidence></answer>"
    )
    packed = ModelResult(request_id(1, 4), text=reply, input_tokens=100, output_tokens=40)
    texts = {request_id(1, 4): (1, 2, 3, 4)}
    verdicts = [judge(one, matcher, task) for one in unpack_results([packed], texts.get)]
    assert [v.status for v in verdicts] == [RowStatus.CLASSIFIED] * 4
    assert [v.confidence for v in verdicts] == [0.91, 0.4, None, 0.95]
    assert [v.match for v in verdicts[:3]] == [MatchMethod.EXACT, MatchMethod.EXACT, MatchMethod.NORMALISED]
    assert verdicts[3].match in {MatchMethod.ALIAS, MatchMethod.FUZZY}  # "Refunds": not the category's own name
    assert [v.needs_review for v in verdicts] == [False, True, True, True]


def test_a_verdict_keeps_its_confidence_and_flag_through_its_results_file():
    verdict = Verdict(RowStatus.CLASSIFIED, "Complaint", "rude", MatchMethod.EXACT, "Complaint", confidence=0.55)
    verdict.needs_review = True
    index, back = Verdict.from_json(verdict.to_json(7))
    assert index == 7 and (back.confidence, back.needs_review) == (0.55, True)
    _, plain = Verdict.from_json(Verdict(RowStatus.CLASSIFIED, "Complaint").to_json(1))
    assert (plain.confidence, plain.needs_review) == (None, False)
    assert "review" not in Verdict(RowStatus.CLASSIFIED, "Complaint").to_json(1)


# --- the offline model -------------------------------------------------------------------------------------


def _calls(n: int) -> list[dict[str, str]]:
    with SAMPLE.open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))[:n]


def test_the_offline_model_gives_its_score_margin_only_when_asked_the_same_every_time():
    texts = [row["conversation"] for row in _calls(12)]
    plain, asked = render_packed_prompt(load_task("travel")), render_packed_prompt(asking())
    reply = OfflineClassifier().complete(plain.system, [{"role": "user", "content": plain.user_message(texts)}], 4096)
    assert "<confidence>" not in reply.text
    message = [{"role": "user", "content": asked.user_message(texts)}]
    first = OfflineClassifier().complete(asked.system, message, 4096)
    again = OfflineClassifier().complete(asked.system, message, 4096)
    assert first == again and first.text.count("<confidence>") == 12
    verdicts = [
        judge(one, LabelMatcher(asking()), asking())
        for one in unpack_results(
            [ModelResult(request_id(1, 12), text=first.text)], {request_id(1, 12): tuple(range(1, 13))}.get
        )
    ]
    sure = [v.confidence for v in verdicts]
    assert all(s is not None and 0.5 <= s <= 1.0 for s in sure) and len(set(sure)) > 3
    assert [v.needs_review for v in verdicts] == [s is not None and s < 0.7 for s in sure]


def test_the_offline_confidence_is_its_relative_margin():
    assert confidence(0.8, 0.0) == 100 and confidence(0.8, 0.8) == 50 and confidence(0.8, 0.4) == 75
    assert confidence(0.5, -0.1) == 100


def test_the_offline_model_abstains_with_no_confidence_to_speak_of():
    asked = render_packed_prompt(asking())
    reply = OfflineClassifier().complete(asked.system, [{"role": "user", "content": "<text>hello</text>"}], 500)
    assert "<classification>none</classification>" in reply.text and "<confidence>0</confidence>" in reply.text


# --- review.xlsx, merge-reviews and export-training, from the command line ------------------------------------------


def _run(tmp_path: Path, task: Task, rows: int = 60) -> Path:
    """prepare, the offline model and collect over the first ``rows`` sample calls; the results file."""
    sample = tmp_path / "calls.csv"
    calls = _calls(rows)
    with sample.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(calls[0]))
        writer.writeheader()
        writer.writerows(calls)
    task_file = tmp_path / "task.yaml"
    task_file.write_text(task.to_yaml(), encoding="utf-8")
    prepared, outputs, results = tmp_path / "prep", tmp_path / "outputs", tmp_path / "out" / "calls.csv"
    assert main(["prepare", str(sample), "--task", str(task_file), "--out", str(prepared)]) == 0
    answer_prepared(prepared, outputs, OfflineClassifier())
    assert main(["collect", str(prepared), "--outputs", str(outputs), "--out", str(results)]) == 0
    return results


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def test_collect_writes_the_review_queue_then_merge_and_export(tmp_path, capsys):
    results = _run(tmp_path, asking())
    printed = capsys.readouterr().out
    rows = _csv_rows(results)
    flagged = [r["id"] for r in rows if r["needs_review"] == "true"]
    assert flagged and len(flagged) < len(rows)
    assert all(r["confidence"] for r in rows if r["status"] == "classified")
    summary = json.loads((results.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["needs_review"] == len(flagged)
    assert summary["review_queue"] == {"rows": len(flagged), "file": "review.xlsx"}
    assert f"{len(flagged)} rows need review: review.xlsx" in printed
    report = (results.parent / "report.html").read_text(encoding="utf-8")
    assert f"{len(flagged)} rows need review (" in report and "in review.xlsx." in report

    queue = results.parent / "review.xlsx"
    book = load_workbook(queue)
    sheet = book["results"]
    header = [c.value for c in sheet[1]]
    at = header.index("rationale")
    assert header[at + 1 : at + 4] == ["review_label", "verdict", "review_note"]
    assert len(sheet.data_validations.dataValidation) == 2
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == flagged
    # The reviewer: the true class on the first two, "correct" on the third, "wrong" alone on the fourth.
    truth = {r["id"]: r["input_class"] for r in rows}
    for number in (2, 3):
        sheet.cell(number, at + 2, truth[sheet.cell(number, 1).value])
    sheet.cell(4, at + 3, "correct")
    sheet.cell(5, at + 3, "wrong")
    book.save(tmp_path / "reviewed.xlsx")

    merged = tmp_path / "merged.csv"
    assert main(["merge-reviews", str(results), str(tmp_path / "reviewed.xlsx"), "--out", str(merged)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(rows)} rows" in printed and re.search(r"labelled by a reviewer +2 ", printed)
    labelled = {r["id"]: r for r in _csv_rows(merged)}
    assert [labelled[i]["label"] for i in flagged[:2]] == [truth[i] for i in flagged[:2]]
    assert {labelled[i]["label_source"] for i in flagged[:3]} == {"reviewed"}
    assert labelled[flagged[2]]["label"] == labelled[flagged[2]]["class"]
    assert labelled[flagged[3]]["label"] == "" and labelled[flagged[3]]["needs_review"] == "true"
    assert labelled[flagged[4]]["label"] == "" and labelled[flagged[4]]["needs_review"] == "true"  # untouched
    confident = next(r for r in rows if r["needs_review"] == "false")
    assert (labelled[confident["id"]]["label"], labelled[confident["id"]]["label_source"]) == (
        confident["class"],
        "model",
    )

    training = tmp_path / "training.csv"
    command = ["export-training", str(merged), "--per-class", "3", "--out", str(training), "--task", "travel"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    drawn = _csv_rows(training)
    by_class: dict[str, list[dict[str, str]]] = {}
    for row in drawn:
        by_class.setdefault(row["label"], []).append(row)
    assert all(len(group) <= 3 for group in by_class.values())
    assert {r["id"] for r in drawn} >= {i for i in flagged[:3]}  # reviewed rows come first
    assert not {r["id"] for r in drawn} & {flagged[3], flagged[4]}
    assert "fewer than 3:" in printed or all(len(g) == 3 for g in by_class.values())
    again = tmp_path / "again.csv"
    assert main([*command[:-4], "--out", str(again), "--task", "travel"]) == 0
    assert again.read_bytes() == training.read_bytes()  # seeded: the same rows
    strict = tmp_path / "strict.csv"
    assert (
        main(["export-training", str(results), "--per-class", "50", "--min-confidence", "0.9", "--out", str(strict)])
        == 0
    )
    assert all(float(r["confidence"]) >= 0.9 and r["label_source"] == "model" for r in _csv_rows(strict))


def test_no_review_queue_when_no_row_needs_review(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "review.xlsx").write_bytes(b"an earlier run's queue")
    results = _run(tmp_path, load_task("travel"), rows=12)  # no confidence asked, every answer an exact name
    assert "0 rows need review (no row needs review: review.xlsx was not written)" in capsys.readouterr().out
    assert not (results.parent / "review.xlsx").exists()
    assert {r["needs_review"] for r in _csv_rows(results)} == {"false"}
    summary = json.loads((results.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["needs_review"] == 0 and summary["review_queue"]["file"] is None


def test_merge_reviews_names_unknown_ids_and_labels_not_in_the_task(tmp_path, capsys):
    results = tmp_path / "results.csv"
    results.write_text(
        "id,text,class,status,needs_review,confidence\n"
        "a1,x,Complaint,classified,true,0.5\n"
        "a2,y,Payment Problem,classified,false,0.9\n",
        encoding="utf-8",
    )
    review = tmp_path / "review.csv"  # any readable table will do for the marks
    review.write_text("id,review_label,verdict,review_note\na1,Hotel,,\nzz,Complaint,,\n", encoding="utf-8")
    out = tmp_path / "merged.csv"
    assert main(["merge-reviews", str(results), str(review), "--task", "travel", "--out", str(out)]) == 1
    assert "not categories of the task: a1 ('Hotel')" in capsys.readouterr().err
    review.write_text("id,review_label,verdict,review_note\na1,Complaint,,\nzz,Complaint,,\n", encoding="utf-8")
    assert main(["merge-reviews", str(results), str(review), "--task", "travel", "--out", str(out)]) == 1
    assert "reviewed ids are not in the results: zz" in capsys.readouterr().err
    assert not out.exists()
    assert main(["merge-reviews", str(results), str(review), "--out", str(out)]) == 1
    assert "Give it with --task" in capsys.readouterr().err


# --- the rules, row by row ---------------------------------------------------------------------------------------


def test_merge_rules():
    reviews = read_reviews(
        [
            {"id": "1", "review_label": "Complaint", "verdict": "wrong"},
            {"id": "2", "verdict": "Correct"},
            {"id": "3", "verdict": "wrong"},
            {"id": "4", "verdict": "unsure"},
            {"id": "5", "review_note": "looked at it"},
            {"id": "9"},
        ],
        load_task("travel").category_names,
    )
    assert set(reviews) == {"1", "2", "3", "4", "5"} and reviews["2"] == Review(None, "correct", None)
    merger = ReviewMerger(reviews)
    row = {"status": "classified", "class": "Payment Problem", "needs_review": True}
    merged = [merger.merge({**row, "id": str(i)}) for i in range(1, 6)]
    merged.append(merger.merge({"id": 6, "status": "classified", "class": "Complaint", "needs_review": "false"}))
    merged.append(merger.merge({"id": "7", "status": "off_list", "class": None, "needs_review": False}))
    merged.append(merger.merge({"id": "8", "status": "classified", "class": "Complaint", "needs_review": "true"}))
    assert [(m["label"], m["label_source"], m["needs_review"]) for m in merged] == [
        ("Complaint", "reviewed", False),
        ("Payment Problem", "reviewed", False),
        (None, None, True),
        (None, None, True),
        (None, None, True),  # a note alone changes nothing
        ("Complaint", "model", False),
        (None, None, False),
        (None, None, True),
    ]
    merger.check_all_found()
    counts = merger.counts
    assert (counts.model, counts.reviewed_label, counts.reviewed_correct) == (1, 1, 1)
    assert (counts.still_flagged, counts.not_classified) == (4, 1)
    assert ReviewMerger.columns(["id", "label", "class", "rationale", "status"]) == [
        "id",
        "input_label",
        "class",
        "rationale",
        "review_label",
        "verdict",
        "review_note",
        "status",
        "needs_review",
        "label",
        "label_source",
    ]
    with pytest.raises(ReviewMergeError, match="reviewed twice"):
        read_reviews([{"id": "1", "verdict": "wrong"}, {"id": "1", "verdict": "correct"}], ["A", "B"])
    with pytest.raises(ReviewMergeError, match="not correct, wrong or unsure"):
        read_reviews([{"id": "1", "verdict": "maybe"}], ["A", "B"])


def test_the_training_sample_is_balanced_seeded_and_prefers_reviewed_rows():
    rows = [
        {
            "id": str(i),
            "label": "A" if i % 3 else "B",
            "label_source": "reviewed" if i % 10 == 0 else "model",
            "confidence": (i % 7) / 7,
        }
        for i in range(1, 101)
    ]
    rows.append({"id": "x", "label": "", "label_source": ""})

    def drawn(seed: int, minimum: float | None = None, classes=("A", "B", "C")):
        sampler = TrainingSampler(5, seed=seed, min_confidence=minimum)
        for row in rows:
            sampler.offer(row)
        return sampler.draw(classes)

    chosen, counts = drawn(1)
    assert [(c.name, c.chosen, c.reviewed) for c in counts] == [("A", 5, 5), ("B", 5, 3), ("C", 0, 0)]
    assert [r["id"] for r in chosen] == sorted((r["id"] for r in chosen), key=int)  # in file order
    assert drawn(1)[0] == chosen and drawn(1, classes=("C", "B", "A"))[0] == chosen
    assert drawn(2)[0] != chosen
    strict, _ = drawn(1, minimum=0.8)
    assert all(r["label_source"] == "reviewed" or r["confidence"] >= 0.8 for r in strict)
    results_row = {"id": "1", "class": "A", "status": "classified", "needs_review": "false"}
    sampler = TrainingSampler(1)
    assert sampler.trusted(results_row) == ("A", LabelSource.MODEL)
    assert sampler.trusted({**results_row, "needs_review": "true"}) is None
    assert sampler.trusted({**results_row, "status": "off_list"}) is None
