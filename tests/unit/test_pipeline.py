"""prepare and collect end to end on generated files, with batch outputs written the way Bedrock writes them."""

import csv
import json
import random
from pathlib import Path

import pytest

from batch_classifier.pipeline import PreparedRunError, collect, prepare
from batch_classifier.readers import open_table
from batch_classifier.tasks import load_task

CLASSES = load_task("travel").category_names


def write_input(path: Path, n: int, *, duplicates: int = 0, empty: int = 0) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        label = CLASSES[i % len(CLASSES)]
        text = f"User: conversation {i} about {label}.\nAgent: =SUM(A1) noted."
        if i <= duplicates:
            text = "User: the same question again.\nAgent: Sure."
            label = "Travel Information"
        if n - empty < i:
            text = ""
        agent = '=HYPERLINK("http://x")' if i == 2 else f"agent {i % 3}"
        rows.append({"conversation_id": f"c-{i}", "conversation": text, "class": label, "agent": agent})
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def fake_reply(text: str) -> str:
    """A deterministic stand-in for the model: reads the class named in the text back."""
    for name in CLASSES:
        if name in text:
            return f"<classification>{name}</classification><explanation>It says {name}.</explanation>"
    return "<classification>Travel Information</classification><explanation>Default.</explanation>"


def answer_jobs(
    prepared: Path,
    outputs: Path,
    *,
    errors: dict[str, dict] | None = None,
    drop: set[str] = frozenset(),
    manifest: bool = True,
) -> None:
    """Write <outputs>/<job id>/<file>.out in shuffled order, like a Bedrock batch job."""
    errors = errors or {}
    rng = random.Random(7)
    for number, job in enumerate(sorted((prepared / "jobs").glob("*.jsonl")), start=1):
        lines, tokens = [], [0, 0]
        for raw in job.read_text(encoding="utf-8").splitlines():
            record = json.loads(raw)
            rid = record["recordId"]
            if rid in drop:
                continue
            out = {"recordId": rid, "modelInput": record["modelInput"]}
            if rid in errors:
                out["error"] = errors[rid]
            else:
                text = record["modelInput"]["messages"][0]["content"][0]["text"]
                out["modelOutput"] = {
                    "content": [{"type": "text", "text": fake_reply(text)}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 2000, "output_tokens": 20},
                }
                tokens[0] += 2000
                tokens[1] += 20
            lines.append(json.dumps(out))
        rng.shuffle(lines)
        folder = outputs / f"job{number:04d}"
        folder.mkdir(parents=True)
        (folder / f"{job.name}.out").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if manifest:
            (folder / "manifest.json.out").write_text(
                json.dumps(
                    {
                        "totalRecordCount": len(lines),
                        "processedRecordCount": len(lines),
                        "successRecordCount": len(lines) - len(errors),
                        "errorRecordCount": len(errors),
                        "inputTokenCount": tokens[0],
                        "outputTokenCount": tokens[1],
                    }
                )
            )


@pytest.fixture
def travel():
    """The bundled task at one text a request, as these tests count requests (packing: test_packing.py)."""
    return load_task("travel").model_copy(
        update={"input": load_task("travel").input.with_overrides(label_column="class"), "texts_per_request": 1}
    )


def one_text_task_file(folder: Path) -> Path:
    """The bundled ``travel`` task at one text a request, as a task file for ``--task``."""
    path = folder / "travel.yaml"
    path.write_text(load_task("travel").model_copy(update={"texts_per_request": 1}).to_yaml(), encoding="utf-8")
    return path


def prepare_labelled(source: Path, prepared: Path) -> int:
    """``batch-classifier prepare`` of a labelled file (``class``) with ``travel`` at one text a request, its task
    file beside ``source``; the exit status."""
    from batch_classifier_cli.main import main  # noqa: PLC0415

    task = one_text_task_file(source.parent)
    return main(["prepare", str(source), "--task", str(task), "--out", str(prepared), "--label-column", "class"])


def test_prepare_writes_jobs_records_and_plan(tmp_path, travel):
    source = tmp_path / "calls.csv"
    write_input(source, 260, duplicates=20, empty=3)
    run = prepare(source, tmp_path / "prep", travel)
    plan = run.plan
    assert (plan["rows"], plan["invalid"], plan["distinct_texts"], plan["duplicate_texts"]) == (260, 3, 238, 19)
    assert [p.name for p in (tmp_path / "prep" / "jobs").iterdir()] == ["shard-00001.jsonl"]
    lines = [json.loads(x) for p in sorted((tmp_path / "prep" / "jobs").iterdir()) for x in p.read_text().splitlines()]
    assert len(lines) == 238 == len({x["recordId"] for x in lines})
    assert set(lines[0]) == {"recordId", "modelInput"}
    assert plan["batch_jobs"] == 1 and plan["on_demand_records"] == 0
    rejects = (tmp_path / "prep" / "rejects.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in rejects] == ["c-258", "c-259", "c-260"]
    assert "row 258" in json.loads(rejects[0])["reason"]
    assert plan["estimate"]["batch_usd"] > 0
    assert plan["estimate"]["on_demand_usd"] == pytest.approx(2 * plan["estimate"]["batch_usd"], rel=1e-3)


def test_small_input_goes_on_demand(tmp_path, travel):
    source = tmp_path / "few.csv"
    write_input(source, 40)
    plan = prepare(source, tmp_path / "prep", travel).plan
    assert list((tmp_path / "prep" / "jobs").iterdir()) == []
    assert [p.name for p in (tmp_path / "prep" / "on-demand").iterdir()] == ["shard-00001.jsonl"]
    assert plan["on_demand_records"] == 40


def test_collect_gives_every_row_exactly_once_with_a_status(tmp_path, travel):
    source = tmp_path / "calls.csv"
    rows = write_input(source, 260, duplicates=20, empty=3)
    prepare(source, tmp_path / "prep", travel)
    answer_jobs(
        tmp_path / "prep",
        tmp_path / "outputs",
        errors={
            "R0000000005": {"errorCode": 400, "errorMessage": "bad request"},
            "R0000000006": {"errorCode": "ThrottlingException", "errorMessage": "slow down"},
        },
        drop={"R0000000007"},
    )
    summary = collect(tmp_path / "prep", tmp_path / "outputs", tmp_path / "results" / "calls.csv")
    with (tmp_path / "results" / "calls.csv").open(encoding="utf-8-sig", newline="") as stream:
        out = list(csv.DictReader(stream))
    assert [r["id"] for r in out] == [r["conversation_id"] for r in rows]
    assert summary["rows"] == 260
    assert summary["by_status"]["invalid_input"] == 3
    assert summary["by_status"]["model_error"] == 3
    assert summary["by_status"]["classified"] == 254
    assert sum(summary["by_status"].values()) == 260
    by_id = {r["id"]: r for r in out}
    assert by_id["c-26"]["status"] == "model_error" and "missing" in by_id["c-26"]["reason"]
    assert "error 400: bad request" in by_id["c-24"]["reason"]
    # The label column is called "class" in the input: it comes back renamed beside the predicted class.
    assert by_id["c-31"]["input_class"] == rows[30]["class"] == by_id["c-31"]["class"]
    assert by_id["c-31"]["correct"] == "true"
    assert by_id["c-31"]["agent"] == "agent 1"
    # A cell a spreadsheet would execute is neutralised in CSV.
    assert by_id["c-2"]["agent"] == "'" + rows[1]["agent"]
    assert by_id["c-31"]["conversation"] == rows[30]["conversation"]
    # Duplicates share one answer.
    assert {by_id[f"c-{i}"]["class"] for i in range(1, 21)} == {"Travel Information"}
    evaluation = summary["evaluation"]
    assert evaluation["rows"] == 260
    assert evaluation["coverage"] == pytest.approx(254 / 260, abs=1e-4)
    assert evaluation["accuracy_answered"] == 1.0
    assert summary["tokens"]["source"] == "manifest"
    assert summary["tokens"]["input"] == 2000 * 235
    assert summary["cost_usd"] > 0
    assert json.loads((tmp_path / "results" / "summary.json").read_text()) == summary


@pytest.mark.parametrize("suffix", ["json", "jsonl", "xlsx", "parquet"])
def test_collect_writes_the_format_of_the_extension(tmp_path, travel, suffix):
    source = tmp_path / "calls.csv"
    write_input(source, 120)
    prepare(source, tmp_path / "prep", travel)
    answer_jobs(tmp_path / "prep", tmp_path / "outputs", manifest=False)
    summary = collect(tmp_path / "prep", tmp_path / "outputs", tmp_path / f"out.{suffix}")
    assert summary["tokens"]["source"] == "output lines"
    with open_table(tmp_path / f"out.{suffix}") as table:
        ids = [row.values["id"] for row in table.rows()]
    assert ids == [f"c-{i}" for i in range(1, 121)]


def test_collect_refuses_a_folder_that_was_not_prepared(tmp_path):
    with pytest.raises(PreparedRunError, match="run `batch-classifier prepare` first"):
        collect(tmp_path, tmp_path, tmp_path / "x.csv")


@pytest.mark.seed
def test_seed_xlsx_prepares_1190_labelled_rows_and_1188_distinct_texts(tmp_path, travel, seed_data):
    run = prepare(seed_data / "travel_conversations_labeled.xlsx", tmp_path / "prep", travel)
    plan = run.plan
    assert (plan["rows"], plan["labelled"], plan["distinct_texts"], plan["invalid"]) == (1190, 1190, 1188, 0)
    assert plan["batch_jobs"] == 1 and plan["on_demand_records"] == 0
    records = list(run.records())
    assert [r.id for r in records] == [str(i) for i in range(1, 1191)]
    assert any("\n" in r.text for r in records)


@pytest.mark.seed
@pytest.mark.parametrize(("name", "rows"), [("travel_conversations.csv", 840), ("travel_conversations.json", 783)])
def test_seed_unlabelled_files_prepare(tmp_path, seed_data, name, rows):
    plan = prepare(seed_data / name, tmp_path / "prep", load_task("travel")).plan
    assert plan["rows"] == rows and plan["invalid"] == 0
    assert plan["distinct_texts"] == 210


def test_prepare_reports_duplicate_ids_with_examples(tmp_path):
    source = tmp_path / "calls.csv"
    source.write_text("conversation_id,conversation\n7,a\n8,b\n7,c\n9,d\n8,e\n7,f\n", encoding="utf-8")
    plan = prepare(source, tmp_path / "prep", load_task("travel")).plan
    assert plan["duplicate_ids"] == 3
    assert plan["duplicate_id_examples"] == ["7", "8"]


def test_collect_gives_the_same_results_whether_it_keeps_or_spills_verdicts(tmp_path, travel, monkeypatch):
    source = tmp_path / "calls.csv"
    write_input(source, 260, duplicates=20, empty=3)
    travel = travel.model_copy(update={"batch": travel.batch.model_copy(update={"max_records_per_job": 120})})
    prepare(source, tmp_path / "prep", travel)
    errors = {"R0000000005": {"errorCode": 400, "errorMessage": "bad request"}}
    answer_jobs(tmp_path / "prep", tmp_path / "outputs", errors=errors, drop={"R0000000007"})
    # A second answer for record 5, in a later file: an answer beats an error, in memory and from spilled files.
    later = tmp_path / "outputs" / "zz-retry" / "retry.jsonl.out"
    later.parent.mkdir()
    job = (tmp_path / "prep" / "jobs" / "shard-00001.jsonl").read_text().splitlines()
    fifth = next(json.loads(line) for line in job if '"R0000000005"' in line)
    reply = {"content": [{"type": "text", "text": fake_reply("Refund Issues")}], "usage": {}}
    later.write_text(json.dumps({**fifth, "modelOutput": reply}) + "\n")
    kept = collect(tmp_path / "prep", tmp_path / "outputs", tmp_path / "kept" / "calls.csv")
    monkeypatch.setattr("batch_classifier.pipeline.HELD_VERDICTS", 1)
    spilled = collect(tmp_path / "prep", tmp_path / "outputs", tmp_path / "spilled" / "calls.csv")
    assert kept == spilled
    assert (tmp_path / "kept" / "calls.csv").read_bytes() == (tmp_path / "spilled" / "calls.csv").read_bytes()
    assert kept["by_status"]["model_error"] == 1  # record 7, never answered; record 5's error was answered later
    assert kept["output_files"] == 5 and kept["results_file"] == "calls.csv"
