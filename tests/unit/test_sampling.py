"""`batch-classifier sample`: reproducible, uniform, stratified with every class present, in the input's format."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from batch_classifier.errors import MissingColumnError
from batch_classifier.sampling import SampleError, allocate, draw_sample
from batch_classifier_cli.main import main


def write_labelled(path: Path, counts: dict[str, int]) -> list[str]:
    ids = []
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "text", "label"])
        for label, count in counts.items():
            for i in range(count):
                ids.append(f"{label}-{i}")
                writer.writerow([ids[-1], f"text {i} about {label}", label])
    return ids


def test_the_same_seed_draws_the_same_rows_in_file_order(tmp_path: Path) -> None:
    ids = write_labelled(tmp_path / "in.csv", {"a": 300, "b": 200})
    first = draw_sample(tmp_path / "in.csv", 40, seed=7)
    again = draw_sample(tmp_path / "in.csv", 40, seed=7)
    other = draw_sample(tmp_path / "in.csv", 40, seed=8)
    drawn = [row.values["id"] for row in first.rows]
    assert drawn == [row.values["id"] for row in again.rows]
    assert drawn != [row.values["id"] for row in other.rows]
    assert len(set(drawn)) == 40 and first.total == 500
    assert drawn == sorted(drawn, key=ids.index)  # file order


def test_every_row_is_equally_likely(tmp_path: Path) -> None:
    write_labelled(tmp_path / "in.csv", {"a": 20})
    seen: Counter[str] = Counter()
    for seed in range(2000):
        seen.update(row.values["id"] for row in draw_sample(tmp_path / "in.csv", 5, seed=seed).rows)
    assert len(seen) == 20 and all(400 < count < 600 for count in seen.values()), seen  # 500 expected each


def test_a_stratified_sample_keeps_proportions_and_every_class(tmp_path: Path) -> None:
    write_labelled(tmp_path / "in.csv", {"big": 900, "mid": 95, "rare": 5})
    drawn = draw_sample(tmp_path / "in.csv", 50, seed=1, stratify="label")
    labels = Counter(row.values["label"] for row in drawn.rows)
    assert labels == {"big": 45, "mid": 4, "rare": 1}
    assert drawn.strata == {"big": (900, 45), "mid": (95, 4), "rare": (5, 1)}


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 999])
def test_allocation_adds_up_and_never_exceeds_a_stratum(n: int) -> None:
    counts = Counter({"x": 700, "y": 250, "z": 40, "w": 9, "v": 1})
    shares = allocate(counts, n)
    assert sum(shares.values()) == min(n, 1000)
    assert all(0 <= shares[k] <= counts[k] for k in counts)
    if n >= len(counts):
        assert all(shares[k] >= 1 for k in counts)


def test_asking_for_more_rows_than_the_file_has_gives_the_whole_file(tmp_path: Path) -> None:
    ids = write_labelled(tmp_path / "in.csv", {"a": 3, "b": 2})
    drawn = draw_sample(tmp_path / "in.csv", 150, stratify="label")
    assert [row.values["id"] for row in drawn.rows] == ids


def test_bad_requests_are_named(tmp_path: Path) -> None:
    write_labelled(tmp_path / "in.csv", {"a": 3})
    with pytest.raises(MissingColumnError, match="no column 'class' to stratify by; its columns are: 'id', 'text'"):
        draw_sample(tmp_path / "in.csv", 2, stratify="class")
    with pytest.raises(SampleError, match="at least 1 row"):
        draw_sample(tmp_path / "in.csv", 0)


def test_the_command_writes_the_sample_in_the_inputs_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_labelled(tmp_path / "in.csv", {"a": 30, "b": 10})
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "text", "label"])
    for row in csv.reader((tmp_path / "in.csv").read_text(encoding="utf-8").splitlines()[1:]):
        sheet.append(row)
    book.save(tmp_path / "in.xlsx")

    assert main(["sample", str(tmp_path / "in.xlsx"), "--n", "8", "--stratify", "label", "--seed", "3"]) == 0
    out = tmp_path / "in-sample-8.xlsx"
    rows = list(openpyxl.load_workbook(out, read_only=True).active.iter_rows(values_only=True))
    assert rows[0] == ("id", "text", "label") and len(rows) == 9
    assert Counter(r[2] for r in rows[1:]) == {"a": 6, "b": 2}
    printed = capsys.readouterr().out
    assert f"wrote 8 of 40 rows to {out}" in printed and "a  " in printed

    assert main(["sample", str(tmp_path / "in.csv"), "--n", "5", "--out", str(tmp_path / "s.parquet")]) == 0
    assert main(["sample", str(tmp_path / "in.csv"), "--n", "0"]) == 1
    assert "at least 1 row" in capsys.readouterr().err
