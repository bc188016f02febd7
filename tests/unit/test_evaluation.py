"""Tests of the metrics against ground truth, on hand-computed examples."""

from __future__ import annotations

import dataclasses
import json

import pytest

from batch_classifier.evaluation import NO_ANSWER, evaluate, format_report

CLASSES = ["billing", "technical", "other"]
# (truth, predicted): 10 labelled rows (2 without an answer) and 2 without ground truth.
PAIRS: list[tuple[str | None, str | None]] = [
    ("billing", "billing"),
    ("billing", "billing"),
    ("billing", "technical"),
    ("billing", None),
    ("technical", "technical"),
    ("technical", "technical"),
    ("technical", "billing"),
    (" other ", "other"),
    ("other", None),
    ("other", "technical"),
    (None, "billing"),
    ("   ", "technical"),
]


def test_hand_computed_example() -> None:
    # billing:   support 4, predicted 3, correct 2 -> P 2/3, R 1/2, F1 4/7
    # technical: support 3, predicted 4, correct 2 -> P 1/2, R 2/3, F1 4/7
    # other:     support 3, predicted 1, correct 1 -> P 1,   R 1/3, F1 1/2
    assert evaluate(PAIRS, CLASSES).to_dict() == {
        "rows": 10,
        "unlabelled": 2,
        "answered": 8,
        "correct": 5,
        "accuracy": 0.5,
        "accuracy_answered": 0.625,
        "coverage": 0.8,
        "per_class": {
            "billing": {"precision": 0.6667, "recall": 0.5, "f1": 0.5714, "support": 4, "predicted": 3},
            "technical": {"precision": 0.5, "recall": 0.6667, "f1": 0.5714, "support": 3, "predicted": 4},
            "other": {"precision": 1.0, "recall": 0.3333, "f1": 0.5, "support": 3, "predicted": 1},
        },
        # macro: P 13/18, R 1/2, F1 23/42; weighted by support 4/3/3: P 43/60, R 1/2, F1 11/20
        "macro": {"precision": 0.7222, "recall": 0.5, "f1": 0.5476},
        "weighted": {"precision": 0.7167, "recall": 0.5, "f1": 0.55},
        "confusion": {
            "billing": {"billing": 2, "technical": 1, NO_ANSWER: 1},
            "technical": {"billing": 1, "technical": 2},
            "other": {"technical": 1, "other": 1, NO_ANSWER: 1},
        },
        "most_confused": [
            {"truth": "billing", "predicted": "technical", "count": 1},
            {"truth": "other", "predicted": "technical", "count": 1},
            {"truth": "technical", "predicted": "billing", "count": 1},
        ],
    }


def test_unrounded_values_and_shape() -> None:
    ev = evaluate(PAIRS, CLASSES)
    assert ev.per_class[0].precision == pytest.approx(2 / 3, abs=1e-12)
    assert ev.macro.f1 == pytest.approx(23 / 42, abs=1e-12)
    assert ev.weighted.precision == pytest.approx(43 / 60, abs=1e-12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.rows = 3  # type: ignore[misc]
    json.dumps(ev.to_dict())


def test_confusion_keeps_class_order_and_no_answer_last() -> None:
    confusion = evaluate(PAIRS, CLASSES).to_dict()["confusion"]
    assert list(confusion) == CLASSES
    assert list(confusion["billing"]) == ["billing", "technical", NO_ANSWER]
    assert list(confusion["other"]) == ["technical", "other", NO_ANSWER]


def test_zero_rows() -> None:
    result = evaluate([]).to_dict()
    assert result == {
        "rows": 0,
        "unlabelled": 0,
        "answered": 0,
        "correct": 0,
        "accuracy": 0.0,
        "accuracy_answered": 0.0,
        "coverage": 0.0,
        "per_class": {},
        "macro": {"precision": 0.0, "recall": 0.0, "f1": 0.0},
        "weighted": {"precision": 0.0, "recall": 0.0, "f1": 0.0},
        "confusion": {},
        "most_confused": [],
    }


def test_only_unlabelled_rows_with_classes() -> None:
    result = evaluate([(None, "a"), ("", "b")], ["a", "b"]).to_dict()
    assert (result["rows"], result["unlabelled"]) == (0, 2)
    assert result["per_class"] == {
        "a": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0},
        "b": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0},
    }


def test_all_unanswered() -> None:
    result = evaluate([("a", None), ("a", "")]).to_dict()
    assert (result["rows"], result["answered"], result["correct"]) == (2, 0, 0)
    assert (result["accuracy"], result["accuracy_answered"], result["coverage"]) == (0.0, 0.0, 0.0)
    assert result["confusion"] == {"a": {NO_ANSWER: 2}}
    assert result["most_confused"] == []


def test_class_order_task_first_then_seen_sorted() -> None:
    pairs = [("c", "b"), ("z", "y"), ("a", "a")]
    assert list(evaluate(pairs, ["b", "a"]).to_dict()["per_class"]) == ["b", "a", "c", "y", "z"]
    assert list(evaluate(pairs).to_dict()["per_class"]) == ["a", "b", "c", "y", "z"]


def test_labels_compare_exactly_after_stripping_truth() -> None:
    result = evaluate([(" Billing\n", "Billing"), ("billing", "Billing")]).to_dict()
    assert result["correct"] == 1
    assert list(result["per_class"]) == ["Billing", "billing"]


def test_macro_ignores_task_classes_that_never_occur() -> None:
    result = evaluate([("a", "a"), ("b", "b")], ["a", "b", "unused"]).to_dict()
    assert result["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert result["per_class"]["unused"]["support"] == 0


def test_weighted_uses_support() -> None:
    # a: support 3, all right (P 3/4, R 1); b: support 1, predicted a (P 0, R 0)
    pairs: list[tuple[str | None, str | None]] = [("a", "a"), ("a", "a"), ("a", "a"), ("b", "a")]
    result = evaluate(pairs).to_dict()
    assert result["weighted"] == {"precision": 0.5625, "recall": 0.75, "f1": 0.6429}
    assert result["macro"] == {"precision": 0.375, "recall": 0.5, "f1": 0.4286}


def test_most_confused_top_ten_sorted() -> None:
    pairs: list[tuple[str | None, str | None]] = []
    pairs += [("x", "y")] * 5 + [("y", "x")] * 5 + [("p", "t03")] * 2 + [("p", None)] * 9
    pairs += [(f"t{i:02}", "p") for i in range(12)]
    top = evaluate(pairs).to_dict()["most_confused"]
    assert len(top) == 10
    assert top[:3] == [
        {"truth": "x", "predicted": "y", "count": 5},
        {"truth": "y", "predicted": "x", "count": 5},
        {"truth": "p", "predicted": "t03", "count": 2},
    ]
    assert [pair["truth"] for pair in top[3:]] == [f"t{i:02}" for i in range(7)]


def test_format_report() -> None:
    report = format_report(evaluate(PAIRS, CLASSES))
    for text in ("50.0%", "62.5%", "80.0%", "billing", "technical", "other", "macro avg", "weighted avg"):
        assert text in report
    assert "billing -> technical: 1" in report
    assert "2 more without ground truth" in report
    lines = report.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("Class"))) :][:8]
    assert len({len(line) for line in table}) == 1  # aligned columns
    billing = next(line for line in table if line.startswith("billing"))
    assert billing.split() == ["billing", "66.7%", "50.0%", "57.1%", "4"]


def test_format_report_without_rows() -> None:
    assert "No rows with ground truth" in format_report(evaluate([(None, "a")]))
