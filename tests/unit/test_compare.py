"""compare: the same labelled sample classified with each prompt variant by the offline model, side by side."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from openpyxl import load_workbook

from batch_classifier.compare import (
    CompareError,
    compare_variants,
    render_comparison,
    variant_names,
    write_comparison_xlsx,
)
from batch_classifier.tasks import Task, load_task
from batch_classifier_cli.main import main
from batch_classifier_local.answer import answer_prepared
from batch_classifier_local.models import OfflineClassifier

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample-data" / "travel_calls.csv"


def offline(prepared: Path, outputs: Path) -> None:
    answer_prepared(prepared, outputs, OfflineClassifier())


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """The first 80 labelled travel conversations."""
    path = tmp_path / "sample.csv"
    with SAMPLE_DATA.open(newline="", encoding="utf-8") as source, path.open("w", newline="", encoding="utf-8") as out:
        rows = list(csv.reader(source))[:81]
        csv.writer(out).writerows(rows)
    return path


def swapped(task: Task) -> Task:
    """A worse prompt: the first two categories trade descriptions and examples, bad examples dropped."""
    cats = list(task.categories)
    first, second = cats[0], cats[1]
    cats[0] = first.model_copy(
        update={"description": second.description, "examples": second.examples, "bad_examples": ()}
    )
    cats[1] = second.model_copy(
        update={"description": first.description, "examples": first.examples, "bad_examples": ()}
    )
    return task.model_copy(update={"categories": tuple(cats)})


def figures(result: object) -> tuple[object, ...]:
    v = result
    return (
        v.evaluation.to_dict(),  # type: ignore[attr-defined]
        v.by_status,  # type: ignore[attr-defined]
        v.input_tokens,  # type: ignore[attr-defined]
        v.output_tokens,  # type: ignore[attr-defined]
        v.cost_usd,  # type: ignore[attr-defined]
        [(a.predicted, a.rationale) for a in v.answers],  # type: ignore[attr-defined]
    )


def test_identical_task_files_give_identical_figures(sample: Path, tmp_path: Path) -> None:
    travel = load_task("travel")
    comparison = compare_variants(
        sample, [("v1", "v1.yaml", travel), ("v1-2", "v1.yaml", travel)], tmp_path / "out", offline
    )
    first, second = comparison.variants
    assert figures(first) == figures(second)
    assert comparison.fixed["v1-2"] == () and comparison.broke["v1-2"] == ()
    assert first.evaluation.rows == 80 and first.input_tokens > 0
    assert (tmp_path / "out" / "v1" / "results.csv").is_file()
    assert (tmp_path / "out" / "v1-2" / "prepared" / "plan.json").is_file()


def test_a_worse_prompt_scores_differently_and_lists_broken_rows(sample: Path, tmp_path: Path) -> None:
    travel = load_task("travel")
    worse = swapped(travel)
    comparison = compare_variants(sample, [("v1", "v1.yaml", travel), ("v2", "v2.yaml", worse)], tmp_path, offline)
    base, other = comparison.variants
    assert other.evaluation.accuracy < base.evaluation.accuracy
    broke = comparison.broke["v2"]
    assert broke
    for change in broke:
        assert change.baseline.correct and not change.variant.correct
        assert change.baseline.predicted == change.truth
        assert change.baseline.rationale and (change.variant.rationale or change.variant.status != "classified")
    assert (
        len(comparison.broke["v2"]) - len(comparison.fixed["v2"]) == base.evaluation.correct - other.evaluation.correct
    )
    page = render_comparison(comparison)
    assert broke[0].baseline.rationale is not None
    assert broke[0].baseline.rationale.replace("'", "&#x27;").replace('"', "&quot;")[:40] in page


def test_the_html_escapes_a_script_class_name(sample: Path, tmp_path: Path) -> None:
    travel = load_task("travel")
    # a task refuses '<' in a category name; a sample's label column and a task file's name can hold one
    rows = list(csv.reader(sample.open(newline="", encoding="utf-8")))
    rows[1][2] = "<script>alert(1)</script>"
    with sample.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    comparison = compare_variants(
        sample, [("v1", "<script>x</script>.yaml", travel), ("v2", "v2.yaml", swapped(travel))], tmp_path, offline
    )
    page = render_comparison(comparison)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;x&lt;/script&gt;.yaml" in page
    assert "<script>alert(1)</script>" in comparison.classes


def test_the_workbook_has_summary_per_class_and_fixed_broke_sheets(sample: Path, tmp_path: Path) -> None:
    travel = load_task("travel")
    comparison = compare_variants(
        sample, [("v1", "v1.yaml", travel), ("v2", "v2.yaml", swapped(travel))], tmp_path, offline
    )
    path = tmp_path / "compare.xlsx"
    write_comparison_xlsx(comparison, path)
    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["summary", "per-class", "fixed-broke"]
    summary = list(book["summary"].iter_rows(values_only=True))
    assert [row[0] for row in summary[1:]] == ["v1", "v2"]
    assert summary[1][2] == pytest.approx(comparison.variants[0].evaluation.accuracy)
    per_class = list(book["per-class"].iter_rows(values_only=True))
    assert per_class[0] == ("class", "F1 v1", "F1 v2", "Δ v2")
    assert len(per_class) == 1 + len(travel.categories)
    changes = list(book["fixed-broke"].iter_rows(values_only=True))
    assert len(changes) == 1 + len(comparison.fixed["v2"]) + len(comparison.broke["v2"])
    assert {row[1] for row in changes[1:]} <= {"fixed", "broke"}


def test_a_sample_above_the_cap_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.csv"
    with big.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "conversation", "class"])
        writer.writerows((i, f"User: I want to book a trip number {i}.", "Booking Inquiry") for i in range(5001))
    task = tmp_path / "v1.yaml"
    task.write_text(load_task("travel").to_yaml(), encoding="utf-8")
    code = main(["compare", str(big), "--task", str(task), "--task", str(task), "--out", str(tmp_path / "out")])
    assert code != 0
    err = capsys.readouterr().err
    assert "more than 5,000 rows" in err and "compare is for review samples" in err
    assert not (tmp_path / "out").exists()


def test_compare_needs_ground_truth(tmp_path: Path) -> None:
    unlabelled = tmp_path / "plain.csv"
    unlabelled.write_text("conversation_id,conversation\n1,User: I want to cancel my hotel.\n", encoding="utf-8")
    travel = load_task("travel")
    with pytest.raises(CompareError, match="no ground truth"):
        compare_variants(unlabelled, [("a", "a.yaml", travel), ("b", "b.yaml", travel)], tmp_path, offline)


def test_the_command_prints_and_writes_both_files(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    v1.write_text(load_task("travel").to_yaml(), encoding="utf-8")
    v2.write_text(swapped(load_task("travel")).to_yaml(), encoding="utf-8")
    out = tmp_path / "cmp"
    assert (
        main(
            ["compare", str(sample), "--task", str(v1), "--task", str(v2), "--label-column", "class", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "macro-F1" in printed and "v2 against v1: fixed" in printed
    assert (out / "compare.html").is_file() and (out / "compare.xlsx").is_file()


def test_variant_names_are_unique_and_folder_safe() -> None:
    assert variant_names(["a/v1.yaml", "b/v1.yaml", "my task!.yaml"]) == ["v1", "v1-2", "my-task"]
