"""Control rows (a task's ``controls``): drawn per run, mixed into its jobs, kept out of the user's outputs, scored."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from aws_fixtures import CUSTOMER, ENVIRONMENT, INTERNAL, answer_batch_job, conversations_csv, create_cloud
from moto import mock_aws
from openpyxl import load_workbook
from test_runs import round_shards, upload, write_job_input

from batch_classifier.analytics import ANALYTICS_COLUMNS
from batch_classifier.controls import (
    CONTROLS_NAME,
    ControlTally,
    control_key,
    degraded_note,
    mix_controls,
    read_controls,
)
from batch_classifier.errors import ControlFileError
from batch_classifier.finalize import finalize_run
from batch_classifier.mapping import Converter, ConvertStats, RecordMapper
from batch_classifier.pipeline import collect, prepare
from batch_classifier.readers import Row
from batch_classifier.readers.table import Block
from batch_classifier.records import CanonicalRecord, RowStatus, record_index
from batch_classifier.report import render_report
from batch_classifier.report_sheets import workbook_sheets
from batch_classifier.results import Verdict
from batch_classifier.runs import convert_input, plan_retries, process_shard, register_run, shard_records
from batch_classifier.storage import TASKS_PREFIX, RunFiles
from batch_classifier.tasks import ControlSettings, load_task, parse_task

TRAVEL = load_task("travel").model_copy(update={"texts_per_request": 1})
CLASSES = TRAVEL.category_names
CONTROL_KEY = "config/controls/travel.csv"


def control_csv(rows: int, *, wrong: int = 0) -> bytes:
    """A control file of ``rows`` travel conversations naming their class; the first ``wrong`` labelled wrongly."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["conversation", "truth"])
    for i in range(1, rows + 1):
        name = CLASSES[i % len(CLASSES)]
        label = CLASSES[(i + 1) % len(CLASSES)] if i <= wrong else name
        writer.writerow([f"User: control call {i} is about {name}.\nAgent: Noted.", label])
    return out.getvalue().encode()


def with_controls(rows: int = 10, min_accuracy: float | None = 0.8, file: str = CONTROL_KEY):
    controls = ControlSettings(file=file, rows=rows, label_column="truth", min_accuracy=min_accuracy)
    return TRAVEL.model_copy(update={"controls": controls})


@pytest.fixture
def cloud(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield create_cloud(texts_per_request=1)


def put_task(cloud, task) -> None:
    cloud.s3.put_object(Bucket=CUSTOMER, Key=f"{TASKS_PREFIX}/travel.yaml", Body=task.to_yaml().encode())


# --- the task's field ------------------------------------------------------------------------------------------


def test_controls_are_optional_and_change_neither_the_hash_nor_a_task_without_them():
    assert TRAVEL.controls is None and "controls" not in TRAVEL.to_yaml()
    task = with_controls()
    assert task.content_hash == TRAVEL.content_hash  # controls measure the answers; they do not shape them
    again = parse_task(task.to_yaml())
    assert again.controls == ControlSettings(file=CONTROL_KEY, rows=10, label_column="truth", min_accuracy=0.8)


def test_the_workflow_reads_control_files_only_under_config_controls():
    assert control_key(with_controls()) == CONTROL_KEY
    for file in ("input_data/controls.csv", "config/controls/../tasks/travel.yaml", "controls.csv"):
        with pytest.raises(ControlFileError, match="under config/controls/"):
            control_key(with_controls(file=file))


# --- drawing and mixing ------------------------------------------------------------------------------------------


def test_the_rows_drawn_depend_on_the_seed_alone(tmp_path):
    path = tmp_path / "controls.csv"
    path.write_bytes(control_csv(200))
    task = with_controls(rows=20)
    first = read_controls(path, task, "run-1", origin="c")
    assert [c.id for c in first] == [c.id for c in read_controls(path, task, "run-1", origin="c")]
    assert [c.id for c in first] != [c.id for c in read_controls(path, task, "run-2", origin="c")]
    assert len(first) == 20 and all(c.control and c.id.startswith("control:") for c in first)
    assert all(c.label in CLASSES and not c.carry for c in first)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (control_csv(5), "has 5 usable rows .* fewer than the 10"),
        (b"conversation,other\nhello,x\n", "no column 'truth'"),
        (b"conversation,truth\nhello,Lost Luggage\nhi,booking inquiry\n", r": 'Lost Luggage' \(1\); its"),
        (b"PK\x03\x04 a zip, not a csv", "cannot be read"),
    ],
)
def test_an_unusable_control_file_is_a_named_error(tmp_path, body, message):
    path = tmp_path / "controls.csv"
    path.write_bytes(body)
    with pytest.raises(ControlFileError, match=message):
        read_controls(path, with_controls(), "run", origin="c")


def test_controls_are_spread_over_the_input_by_its_share_read():
    rows = [f"row-{i}" for i in range(100)]
    read = iter([i / 100 for i in range(100)])
    controls = [CanonicalRecord(row=i, id=f"control:{i}", text="t", control=True) for i in range(4)]
    mixed = list(mix_controls(iter(rows), controls, lambda: next(read), "seed"))
    places = [i for i, item in enumerate(mixed) if isinstance(item, CanonicalRecord)]
    assert len(mixed) == 104 and len(places) == 4
    assert [p // 26 for p in places] == [0, 1, 2, 3]  # one in each quarter
    at_end = list(mix_controls(iter(rows), controls, lambda: None, "seed"))  # a share it cannot tell: at the end
    assert at_end[100:] == controls


def test_the_tally_scores_and_says_when_the_run_is_degraded():
    controls = [CanonicalRecord(row=i, id=f"control:{i}", text="t", label="Baggage", rid=f"R{i:010d}") for i in (1, 2)]
    tally = ControlTally(controls, CLASSES, min_accuracy=0.8)
    right = Verdict(RowStatus.CLASSIFIED, category="Baggage")
    assert list(tally.tap([(1, right), (5, right)])) == [(1, right), (5, right)]
    figures = tally.to_dict()  # control 2 never came back: it counts against the accuracy
    assert (figures["rows"], figures["correct"], figures["accuracy"], figures["degraded"]) == (2, 1, 0.5, True)
    assert figures["by_status"] == {"classified": 1, "model_error": 1}
    assert figures["wrong"] == [{"id": "control:2", "label": "Baggage", "class": None, "status": "model_error"}]
    assert degraded_note(figures) == "degraded: control accuracy 50% below 80%"
    assert degraded_note({**figures, "degraded": False}) is None


# --- a run with controls -----------------------------------------------------------------------------------------


def run_with_controls(cloud, *, rows: int = 120, controls: int = 10, wrong: int = 0, min_accuracy: float = 0.8):
    put_task(cloud, with_controls(controls, min_accuracy))
    cloud.s3.put_object(Bucket=CUSTOMER, Key=CONTROL_KEY, Body=control_csv(40, wrong=wrong))
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(rows)), cloud.store, cloud.settings)
    counts = convert_input(run, cloud.s3, cloud.store, cloud.settings)
    plan = shard_records(run, cloud.s3, cloud.store, cloud.settings)
    shards = round_shards(cloud, plan)
    files = RunFiles(run.run_id)
    for shard in shards:
        write_job_input(cloud, run, shard)
        answer_batch_job(cloud.s3, files.job_input(shard.name), files.batch_output_prefix(shard.name))
        process_shard(run, shard, cloud.s3, None, cloud.store, cloud.settings)
    assert not plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings).retry
    return run, counts, shards


def read_customer(cloud, uri: str) -> bytes:
    body: bytes = cloud.s3.get_object(Bucket=CUSTOMER, Key=uri.split(f"{CUSTOMER}/", 1)[1])["Body"].read()
    return body


def test_a_run_answers_its_controls_in_its_jobs_and_keeps_them_out_of_the_outputs(cloud):
    run, counts, shards = run_with_controls(cloud, wrong=0)
    assert counts["rows"] == 120  # the user's rows only
    plan = json.loads(cloud.s3.get_object(Bucket=INTERNAL, Key=RunFiles(run.run_id).plan)["Body"].read())
    assert (plan["controls"], plan["distinct_texts"]) == (10, 130)
    assert [(s.kind.value, s.records) for s in shards] == [("batch", 130)]  # the same job as the user's texts

    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    assert (result["outcome"], result["rows"]) == ("succeeded", 120)
    assert result["controls"] == {"rows": 10, "correct": 10, "accuracy": 1.0, "min_accuracy": 0.8, "degraded": False}
    csv_uri = next(u for u in result["outputs"] if u.endswith(".csv"))
    ids = [r["id"] for r in csv.DictReader(io.StringIO(read_customer(cloud, csv_uri).decode("utf-8-sig")))]
    assert ids == [f"c-{i}" for i in range(1, 121)]
    summary = json.loads(read_customer(cloud, result["summary"]))
    assert summary["rows"] == 120 and sum(summary["by_status"].values()) == 120
    assert summary["evaluation"]["rows"] == 120  # the user's labelled rows, not the controls
    assert summary["controls"]["accuracy"] == 1.0 and summary["controls"]["wrong"] == []
    assert cloud.store.get_run(run.run_id)["control_accuracy"] == 1


def test_controls_below_the_minimum_mark_the_run_degraded_everywhere(cloud):
    run, _, _ = run_with_controls(cloud, controls=40, wrong=20, min_accuracy=0.8)
    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    assert result["status"] == "SUCCEEDED" and result["outcome"] == "degraded"
    assert result["headline"].startswith("degraded: control accuracy 50% below 80%; 120 of 120 rows classified")
    assert result["controls"]["degraded"] and result["controls"]["correct"] == 20
    assert cloud.store.get_run(run.run_id)["outcome"] == "degraded"

    analytics_key = cloud.s3.list_objects_v2(Bucket=INTERNAL, Prefix="analytics/results/")["Contents"][0]["Key"]
    body = cloud.s3.get_object(Bucket=INTERNAL, Key=analytics_key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert tuple(table.column_names) == ANALYTICS_COLUMNS
    rows = table.to_pylist()
    controls = [r for r in rows if r["control"]]
    assert len(rows) == 160 and len(controls) == 40
    assert sum(r["correct"] for r in controls) == 20 and all(r["row_id"].startswith("control:") for r in controls)
    assert all(r["needs_review"] is False and r["confidence"] is None for r in rows)

    xlsx_uri = next(u for u in result["outputs"] if u.endswith(".xlsx"))
    book = load_workbook(io.BytesIO(read_customer(cloud, xlsx_uri)), read_only=True)
    results = [row[0] for row in book["results"].iter_rows(min_row=2, values_only=True)]
    assert results == [f"c-{i}" for i in range(1, 121)]
    sheet = {row[0]: row[1:] for row in book["summary"].iter_rows(values_only=True) if row and row[0]}
    assert sheet["rows that need review"][0] == 0
    assert sheet["answered right"][:2] == (20, 0.5) and sheet["degraded"][0] == "yes"
    page = read_customer(cloud, result["report"]).decode()
    assert "Control rows: 20 of 40 answered right" in page and "the run is degraded" in page


def run_controls(cloud, name: str, rows: int) -> list[CanonicalRecord]:
    run = register_run(upload(cloud, f"input_data/{name}.csv", conversations_csv(rows)), cloud.store, cloud.settings)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    lines = cloud.s3.get_object(Bucket=INTERNAL, Key=RunFiles(run.run_id).controls)["Body"].read().splitlines()
    return [CanonicalRecord.from_json(line) for line in lines]


def test_each_run_draws_its_own_controls(cloud):
    put_task(cloud, with_controls(rows=30))
    cloud.s3.put_object(Bucket=CUSTOMER, Key=CONTROL_KEY, Body=control_csv(200))
    first, second = ({c.id for c in run_controls(cloud, name, 20)} for name in ("a", "b"))
    assert len(first) == len(second) == 30 and first != second


def test_controls_are_spread_over_a_large_uploads_texts(cloud):
    """The CSV reader takes an upload a megabyte at a time: the controls go in where each block starts."""
    put_task(cloud, with_controls(rows=30))
    cloud.s3.put_object(Bucket=CUSTOMER, Key=CONTROL_KEY, Body=control_csv(200))
    indexes = sorted(record_index(c.rid) for c in run_controls(cloud, "large", 30_000) if c.rid)
    assert len(indexes) == 30 and indexes[0] < 100 and indexes[-1] > 20_000
    assert len({index // 5_000 for index in indexes}) >= 3


def test_a_missing_control_file_fails_convert_input_before_anything_is_written(cloud):
    put_task(cloud, with_controls())
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(20)), cloud.store, cloud.settings)
    with pytest.raises(ControlFileError, match=f"s3://{CUSTOMER}/{CONTROL_KEY}, which is not there"):
        convert_input(run, cloud.s3, cloud.store, cloud.settings)
    assert "Contents" not in cloud.s3.list_objects_v2(Bucket=INTERNAL, Prefix=f"runs/{run.run_id}/")


def test_the_spend_estimate_counts_the_control_rows(cloud):
    estimates = []
    for task, name in ((TRAVEL, "plain"), (with_controls(rows=40), "controls")):
        put_task(cloud, task)
        cloud.s3.put_object(Bucket=CUSTOMER, Key=CONTROL_KEY, Body=control_csv(40))
        event = upload(cloud, f"input_data/{name}.csv", conversations_csv(40))
        run = register_run(event, cloud.store, cloud.settings)
        convert_input(run, cloud.s3, cloud.store, cloud.settings)
        shard_records(run, cloud.s3, cloud.store, cloud.settings)
        estimates.append(int(cloud.store.get_run(run.run_id)["preflight"]["input_tokens"]))
    assert estimates[1] > 1.9 * estimates[0]  # twice the texts (a control text is a little longer)


def test_a_task_without_controls_mixes_none_in(cloud):
    run = register_run(upload(cloud, "input_data/calls.csv", conversations_csv(5)), cloud.store, cloud.settings)
    assert convert_input(run, cloud.s3, cloud.store, cloud.settings)["rows"] == 5
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=INTERNAL, Prefix=f"runs/{run.run_id}/")["Contents"]]
    assert not any(k.endswith(CONTROLS_NAME) for k in keys)
    assert finalize_run(run, cloud.s3, cloud.store, cloud.settings)["controls"] is None


# --- prepare and collect -----------------------------------------------------------------------------------------


def test_prepare_mixes_controls_in_and_collect_scores_them_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "controls.csv").write_bytes(control_csv(30, wrong=10))
    source = tmp_path / "calls.csv"
    source.write_bytes(conversations_csv(50))
    task = with_controls(rows=30, min_accuracy=0.9, file="controls.csv")
    run = prepare(source, tmp_path / "prepared", task)
    assert run.plan["rows"] == 50 and run.plan["controls"] == 30 and run.plan["distinct_texts"] == 80
    assert (tmp_path / "prepared" / CONTROLS_NAME).is_file()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for job in sorted((tmp_path / "prepared").glob("*/*.jsonl")):
        lines = job.read_text().splitlines()
        answered = []
        for line in lines:
            record = json.loads(line)
            text = record["modelInput"]["messages"][0]["content"][0]["text"]
            name = next(c for c in CLASSES if c in text)
            reply = f"<classification>{name}</classification><explanation>It says so.</explanation>"
            answered.append(json.dumps({"recordId": record["recordId"], "modelOutput": {"content": [{"text": reply}]}}))
        (outputs / f"{job.stem}.jsonl.out").write_text("\n".join(answered) + "\n")
    summary = collect(tmp_path / "prepared", outputs, tmp_path / "results" / "calls.csv")
    assert summary["rows"] == 50
    assert summary["controls"]["rows"] == 30 and summary["controls"]["correct"] == 20
    assert summary["controls"]["degraded"]
    ids = [r["id"] for r in csv.DictReader((tmp_path / "results" / "calls.csv").open(encoding="utf-8-sig"))]
    assert ids == [f"c-{i}" for i in range(1, 51)]


def test_prepare_names_a_missing_control_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "calls.csv"
    source.write_bytes(conversations_csv(5))
    with pytest.raises(ControlFileError, match=r"'nowhere\.csv', which is not a file here"):
        prepare(source, tmp_path / "prepared", with_controls(file="nowhere.csv"))


def test_estimate_counts_the_control_rows_a_run_mixes_in(tmp_path, monkeypatch, capsys):
    from batch_classifier_cli.main import main  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    (tmp_path / "controls.csv").write_bytes(control_csv(30))
    (tmp_path / "calls.csv").write_bytes(conversations_csv(50))
    (tmp_path / "plain.yaml").write_text(TRAVEL.to_yaml(), encoding="utf-8")
    (tmp_path / "with.yaml").write_text(with_controls(rows=30, file="controls.csv").to_yaml(), encoding="utf-8")

    def input_tokens(task: str) -> int:
        assert main(["estimate", "calls.csv", "--task", task]) == 0
        printed = capsys.readouterr().out
        assert ("control rows                30" in printed) == (task == "with.yaml"), printed
        return int(printed.split("input tokens")[1].split()[0].replace(",", ""))

    assert input_tokens("with.yaml") > input_tokens("plain.yaml")


# --- the summary's figures ---------------------------------------------------------------------------------------


def test_the_summary_sheet_has_the_review_count_and_the_control_accuracy():
    summary = {
        "rows": 10,
        "by_status": {"classified": 10},
        "needs_review": 3,
        "controls": {"rows": 4, "correct": 3, "accuracy": 0.75, "min_accuracy": 0.8, "degraded": True},
    }
    (sheet,) = workbook_sheets(summary)
    rows = {row[0]: row[1:] for row in sheet.rows if row and isinstance(row[0], str)}
    assert rows["rows that need review"][0] == 3
    assert rows["control rows"] == [4] and rows["degraded"] == ["yes"]
    assert "Control rows: 3 of 4 answered right" in render_report(summary)
    assert "Control rows" not in render_report({**summary, "controls": None})


def test_a_control_text_never_shares_its_index_with_a_users_identical_text():
    mapper = RecordMapper(TRAVEL.input, ["conversation_id", "conversation"])
    user = [Row(i, {"conversation_id": f"u{i}", "conversation": "same words"}) for i in (1, 2)]
    control = CanonicalRecord(row=1, id="control:1", text="same words", label="Complaint", control=True)
    stats = ConvertStats()
    converter = Converter(mapper, stats)
    lines = [*converter.block(Block.of(user[:1], ["conversation_id", "conversation"])).records]
    assert converter.control(control) == b'"same words"\n'
    lines += converter.block(Block.of(user[1:], ["conversation_id", "conversation"])).records
    records = (
        [CanonicalRecord.from_json(line) for line in lines[:1]]
        + [control]
        + [CanonicalRecord.from_json(line) for line in lines[1:]]
    )
    assert [(r.id, r.rid, r.first) for r in records] == [
        ("u1", "R0000000001", True),
        ("control:1", "R0000000002", True),
        ("u2", "R0000000001", False),
    ]
    assert (stats.rows, stats.controls, stats.distinct_texts, stats.duplicate_texts) == (2, 1, 2, 1)
    assert stats.shared == {1}
