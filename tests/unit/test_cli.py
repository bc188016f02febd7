"""The command-line tool, driven through its entry point as a user would type it."""

import json
import subprocess
import sys

import pytest
from test_pipeline import answer_jobs, prepare_labelled, write_input

from batch_classifier_cli.main import main


def test_tasks_list_and_show(capsys):
    assert main(["tasks"]) == 0
    listed = capsys.readouterr().out
    assert "travel" in listed and "support-root-cause" in listed
    assert main(["tasks", "show", "travel"]) == 0
    assert "name: Booking Inquiry" in capsys.readouterr().out


def test_prepare_collect_evaluate(tmp_path, capsys):
    source = tmp_path / "calls.csv"
    write_input(source, 150, empty=2)
    assert prepare_labelled(source, tmp_path / "prep") == 0
    printed = capsys.readouterr().out
    assert "rows                   150" in printed
    assert "invalid rows             2" in printed
    assert "jobs/shard-00001.jsonl" in printed

    answer_jobs(tmp_path / "prep", tmp_path / "outputs")
    results = tmp_path / "results" / "calls.xlsx"
    assert main(["collect", str(tmp_path / "prep"), "--outputs", str(tmp_path / "outputs"), "--out", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "classified 148" in printed and "invalid_input 2" in printed
    assert "accuracy  98.7% of labelled rows" in printed
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    for key in ("rows", "by_status", "by_class", "tokens", "cost_usd", "evaluation"):
        assert key in summary
    for key in ("accuracy", "accuracy_answered", "coverage", "per_class", "confusion"):
        assert key in summary["evaluation"]

    assert main(["evaluate", str(results), "--label-column", "class", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(148 / 150, abs=1e-4)
    assert main(["evaluate", str(results), "--label-column", "class", "--task", "travel"]) == 0
    assert "Booking Inquiry" in capsys.readouterr().out


def test_estimate(tmp_path, capsys):
    source = tmp_path / "calls.csv"
    write_input(source, 30, duplicates=10)
    assert main(["estimate", str(source)]) == 0
    printed = capsys.readouterr().out
    assert "records                     30" in printed
    assert "distinct texts              21" in printed
    assert "batch" in printed and "on-demand" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "missing.csv", "--out", "{tmp}/x"], "No such file or directory: missing.csv"),
        (["prepare", "{src}", "--out", "{tmp}/p", "--text-column", "body"], "has no column 'body'"),
        (["prepare", "{src}", "--out", "{tmp}/p", "--task", "nope"], "unknown task 'nope'"),
        (["collect", "{tmp}", "--outputs", "{tmp}", "--out", "{tmp}/r.csv"], "is not a prepared folder"),
        (["prepare", "{tmp}/calls.doc", "--out", "{tmp}/p"], "unsupported extension"),
    ],
)
def test_errors_are_one_sentence_without_traceback(tmp_path, capsys, argv, message):
    source = tmp_path / "calls.csv"
    write_input(source, 5)
    (tmp_path / "calls.doc").write_text("x")
    args = [a.format(src=source, tmp=tmp_path) for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_installed_command_runs():
    done = subprocess.run(
        [sys.executable, "-m", "batch_classifier_cli", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("batch-classifier ")
