"""FinalizeRun on moto-backed S3 and DynamoDB: a run's records and verdicts staged as the earlier steps leave
them, then every output streamed to S3 in one pass, with failures of one output kept to a warning."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aws_fixtures import CLASSES, CUSTOMER, ENVIRONMENT, INTERNAL, ROOT, create_cloud
from botocore.exceptions import ClientError
from moto import mock_aws
from openpyxl import load_workbook

from batch_classifier import finalize, parquet_writer
from batch_classifier.cost import PriceTable
from batch_classifier.finalize import ANALYTICS_SCHEMA, finalize_run
from batch_classifier.formats import FileFormat
from batch_classifier.labels import MatchMethod
from batch_classifier.mapping import OutputLayout
from batch_classifier.records import CanonicalRecord, RowStatus, record_id
from batch_classifier.report import render_report
from batch_classifier.results import Verdict
from batch_classifier.sharding import ShardKind
from batch_classifier.status import RunOutcome, RunStatus, ShardStatus, run_outcome
from batch_classifier.storage import RunFiles
from batch_classifier.tasks import load_task
from batch_classifier.workflow import RunRef, ShardRef
from batch_classifier_local.template import load_template

ALL_FORMATS = (FileFormat.CSV, FileFormat.JSON, FileFormat.JSONL, FileFormat.PARQUET, FileFormat.XLSX)
LAYOUT = OutputLayout(columns=("conversation_id", "conversation", "score"), text_column="conversation")
GLUE_TYPES = {"string": pa.string(), "boolean": pa.bool_(), "bigint": pa.int64(), "double": pa.float64()}


@pytest.fixture
def cloud(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield create_cloud()


def put(s3, key: str, body: str | bytes) -> None:
    s3.put_object(Bucket=INTERNAL, Key=key, Body=body.encode() if isinstance(body, str) else body)


def stage_run(
    cloud, rows: int, *, invalid: int = 0, score=lambda i: i, off_list=lambda i: None, flag=lambda i: False
) -> RunRef:
    """What ConvertInput and ProcessShard leave for a run of ``rows`` labelled rows (the last ``invalid`` empty;
    a row ``i`` for which ``off_list(i)`` gives an answer was answered off the list)."""
    run = RunRef(run_id="r" * 12, task="travel", bucket=CUSTOMER, key="input_data/calls.csv", etag="e", size=1)
    assert cloud.store.register_run(run)
    files = RunFiles(run.run_id)
    records, verdicts, rejects = [], [], []
    for i in range(1, rows + 1):
        label = CLASSES[i % len(CLASSES)]
        carry = {"conversation_id": f"c-{i}", "score": score(i)}
        if i > rows - invalid:
            record = CanonicalRecord(i, f"c-{i}", "", RowStatus.INVALID_INPUT, "empty text", label=label, carry=carry)
            rejects.append(json.dumps({"row": i, "id": f"=c-{i}", "reason": "empty text"}))
        else:
            record = CanonicalRecord(i, f"c-{i}", f"call {i}", rid=record_id(i), first=True, label=label, carry=carry)
            guess = label if i % 4 else CLASSES[0]
            verdict = Verdict(RowStatus.CLASSIFIED, guess, "because", MatchMethod.EXACT, guess)
            verdict.confidence, verdict.needs_review = (0.4, True) if flag(i) else (0.9, False)
            if off_list(i) is not None:
                verdict = Verdict(RowStatus.OFF_LIST, rationale="because", answer=off_list(i), reason="not a category")
            verdicts.append(verdict.to_json(i))
        records.append(record.to_json())
    valid = rows - invalid
    put(cloud.s3, files.records, "".join(line + "\n" for line in records))
    put(cloud.s3, files.rejects, "".join(line + "\n" for line in rejects))
    put(cloud.s3, files.key("results/round-00/shard-00001.jsonl"), "".join(v + "\n" for v in verdicts))
    put(cloud.s3, files.shared, "[]")
    put(cloud.s3, files.task, load_task("travel").to_yaml())
    plan = {"rows": rows, "invalid": invalid, "labelled": rows, "output_layout": LAYOUT.to_dict()}
    put(cloud.s3, files.plan, json.dumps(plan))
    cloud.store.add_shards(run.run_id, [ShardRef(name="shard-00001", kind=ShardKind.BATCH, records=valid)])
    cloud.store.set_shard_status(
        run.run_id, "shard-00001", ShardStatus.PROCESSED, input_tokens=1000 * valid, output_tokens=30 * valid
    )
    return run


def with_settings(cloud, **changes):
    return dataclasses.replace(cloud.settings, **changes)


def read(s3, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def output(result, suffix: str) -> str:
    return next(uri for uri in result["outputs"] if uri.endswith(suffix) and not uri.endswith("rejects.csv"))


def no_pending_uploads(s3) -> bool:
    return all(not s3.list_multipart_uploads(Bucket=b).get("Uploads") for b in (CUSTOMER, INTERNAL))


def analytics_objects(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=INTERNAL, Prefix="analytics/").get("Contents", [])]


def test_every_format_summary_rejects_and_analytics_from_one_pass(cloud):
    run = stage_run(cloud, 40, invalid=2)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=ALL_FORMATS))

    assert set(result) == {
        "run_id",
        "status",
        "outcome",
        "headline",
        "rows",
        "by_status",
        "outputs",
        "summary",
        "report",
        "review",
        "warnings",
        "controls",
    }
    assert result["controls"] is None  # the task mixes no control rows in
    # The FinalizeRun state selects keys of this result: each must be there (Step Functions fails on a missing one).
    asl = json.loads((ROOT / "statemachine" / "batch_classifier.asl.json").read_text(encoding="utf-8"))
    selected = asl["States"]["FinalizeRun"]["ResultSelector"].values()
    assert {path.removeprefix("$.Payload.") for path in selected} <= set(result)
    assert (result["rows"], result["warnings"], result["status"]) == (40, [], RunStatus.SUCCEEDED.value)
    # 2 of 40 rows (5%) not classified: within the default 5% the run simply succeeded.
    assert (result["outcome"], result["headline"]) == (
        "succeeded",
        "38 of 40 rows classified (not classified: 2 invalid_input).",
    )
    assert [uri.rsplit(".", 1)[1] for uri in result["outputs"]] == ["csv", "json", "jsonl", "parquet", "xlsx", "csv"]
    ids = [f"c-{i}" for i in range(1, 41)]
    rows = list(csv.DictReader(io.StringIO(read(cloud.s3, output(result, ".csv")).decode("utf-8-sig"))))
    assert [r["id"] for r in rows] == ids and rows[0]["conversation"] == "call 1"
    assert [r["id"] for r in json.loads(read(cloud.s3, output(result, ".json")))] == ids
    assert [json.loads(line)["id"] for line in read(cloud.s3, output(result, ".jsonl")).splitlines()] == ids
    table = pq.read_table(io.BytesIO(read(cloud.s3, output(result, ".parquet"))))
    assert table.column("id").to_pylist() == ids and table.schema.field("score").type == pa.int64()
    sheet = load_workbook(io.BytesIO(read(cloud.s3, output(result, ".xlsx"))), read_only=True)["results"]
    assert [row[0] for row in sheet.iter_rows(values_only=True)] == ["id", *ids]
    rejects = read(cloud.s3, result["outputs"][-1]).decode("utf-8-sig").splitlines()
    assert rejects == ["row,id,reason", "39,'=c-39,empty text", "40,'=c-40,empty text"]

    summary = json.loads(read(cloud.s3, result["summary"]))
    assert summary["warnings"] == [] and summary["rows"] == 40 and summary["by_status"]["invalid_input"] == 2
    assert summary["tokens"]["input"] == 38_000 and summary["cost_usd"] > 0
    assert summary["evaluation"]["rows"] == 40
    (key,) = analytics_objects(cloud.s3)
    analytics = pq.read_table(io.BytesIO(cloud.s3.get_object(Bucket=INTERNAL, Key=key)["Body"].read()))
    assert analytics.schema == ANALYTICS_SCHEMA and analytics.num_rows == 40
    assert analytics.column("correct").to_pylist()[:4] == [True, True, True, False]
    assert cloud.store.get_run(run.run_id)["run_status"] == RunStatus.SUCCEEDED.value
    assert no_pending_uploads(cloud.s3)


def test_the_review_queue_holds_only_the_rows_that_need_review(cloud):
    run = stage_run(cloud, 40, invalid=2, flag=lambda i: i in {3, 7, 20})
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.CSV,)))

    prefix = result["summary"].rsplit("/", 1)[0]
    assert result["review"] == f"{prefix}/review.xlsx"
    assert result["review"] not in result["outputs"]  # not a results table: the report never reads it
    book = load_workbook(io.BytesIO(read(cloud.s3, result["review"])))
    sheet = book["results"]
    header = [cell.value for cell in sheet[1]]
    assert header[header.index("rationale") + 1 : header.index("rationale") + 4] == [
        "review_label",
        "verdict",
        "review_note",
    ]
    rows = [dict(zip(header, values, strict=True)) for values in sheet.iter_rows(min_row=2, values_only=True)]
    assert [r["id"] for r in rows] == ["c-3", "c-7", "c-20"]
    assert {r["needs_review"] for r in rows} == {True} and {r["confidence"] for r in rows} == {0.4}
    assert len(sheet.data_validations.dataValidation) == 2  # the review_label and verdict drop-downs
    summary = json.loads(read(cloud.s3, result["summary"]))
    assert summary["needs_review"] == 3
    assert summary["review_queue"] == {"rows": 3, "file": result["review"].split("/", 3)[3]}
    results = list(csv.DictReader(io.StringIO(read(cloud.s3, output(result, ".csv")).decode("utf-8-sig"))))
    assert [r["needs_review"] for r in results[:4]] == ["false", "false", "true", "false"]
    assert results[0]["confidence"] == "0.9" and results[-1]["confidence"] == ""  # an invalid row has none
    assert no_pending_uploads(cloud.s3)


def test_no_review_queue_when_no_row_needs_review(cloud):
    run = stage_run(cloud, 10)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.CSV,)))

    assert result["review"] is None
    prefix = result["summary"].removeprefix(f"s3://{CUSTOMER}/").rsplit("/", 1)[0]
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=CUSTOMER, Prefix=prefix)["Contents"]]
    assert not any(k.endswith("review.xlsx") for k in keys)
    summary = json.loads(read(cloud.s3, result["summary"]))
    assert summary["needs_review"] == 0
    assert summary["review_queue"] == {
        "rows": 0,
        "file": None,
        "note": "no row needs review: review.xlsx was not written",
    }
    assert no_pending_uploads(cloud.s3)


SCRIPT = "<script>alert(1)</script>"


def test_the_report_is_written_beside_the_results_from_the_summary_alone(cloud):
    answers = {5: SCRIPT, 9: SCRIPT, 13: "Hotel"}
    run = stage_run(cloud, 40, invalid=2, off_list=answers.get)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.CSV,)))

    summary = json.loads(read(cloud.s3, result["summary"]))
    prefix = result["summary"].rsplit("/", 1)[0]
    assert result["report"] == f"{prefix}/report.html" and summary["report"].endswith("/report.html")
    assert summary["off_list_answers"] == {
        "rows": 3,
        "distinct": 2,
        "answers": [
            {"answer": SCRIPT, "count": 2, "rows": [{"row": 5, "id": "c-5"}, {"row": 9, "id": "c-9"}]},
            {"answer": "Hotel", "count": 1, "rows": [{"row": 13, "id": "c-13"}]},
        ],
        "not_listed": 0,
    }
    rejected = summary["not_classified"]["invalid_input"]
    assert rejected["rows"] == 2 and rejected["reasons"] == [{"reason": "empty text", "count": 2}]
    assert [x["id"] for x in rejected["examples"]] == ["c-39", "c-40"]
    assert summary["cost"]["on_demand_equivalent_usd"] > summary["cost_usd"] > 0
    assert summary["cost"]["batch_saved_usd"] == pytest.approx(
        summary["cost"]["on_demand_equivalent_usd"] - summary["cost_usd"]
    )
    steps = summary["timings"]["steps"]
    total = summary["timings"]["total_seconds"]
    assert steps[-1]["step"] == "FinalizeRun" and isinstance(total, float) and 0 <= total < 600

    bucket, key = result["report"].removeprefix("s3://").split("/", 1)
    stored = cloud.s3.get_object(Bucket=bucket, Key=key)
    page = stored["Body"].read().decode()
    assert stored["ContentType"] == "text/html; charset=utf-8"
    assert page == render_report(summary)  # made again from summary.json alone, it is the same page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert no_pending_uploads(cloud.s3)


def test_the_xlsx_results_are_a_workbook_to_work_in(cloud):
    run = stage_run(cloud, 40, invalid=2, off_list={7: "Hotel"}.get)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.XLSX,)))
    summary = json.loads(read(cloud.s3, result["summary"]))

    workbook = load_workbook(io.BytesIO(read(cloud.s3, output(result, ".xlsx"))))
    assert workbook.sheetnames == ["results", "summary", "confusion"]
    results = workbook["results"]
    assert results.freeze_panes == "A2" and results.auto_filter.ref == results.dimensions == "A1:N41"  # 14 columns
    assert [c.value for c in results[1]][:3] == ["id", "conversation_id", "conversation"]
    figures = {row[0]: row[1:] for row in workbook["summary"].iter_rows(values_only=True) if row and row[0]}
    assert figures["rows"][0] == 40 and figures["accuracy"][0] == summary["evaluation"]["accuracy"]
    assert figures["Hotel"][:2] == (1, "c-7")  # the off-list answer, its count and its first row
    confusion = list(workbook["confusion"].iter_rows(values_only=True))
    answers = confusion[0][1:]
    matrix = {row[0]: dict(zip(answers, row[1:], strict=True)) for row in confusion[1:]}
    for truth, cells in summary["evaluation"]["confusion"].items():
        assert {a: n for a, n in matrix[truth].items() if n} == cells


def test_a_report_that_cannot_be_written_is_a_warning(cloud, monkeypatch):
    def broken(summary):
        raise ValueError("no ink")

    monkeypatch.setattr(finalize, "render_report", broken)
    run = stage_run(cloud, 6)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.CSV,)))
    assert result["warnings"] == ["report.html not written: ValueError: no ink"] and result["report"] is None
    assert "report" not in json.loads(read(cloud.s3, result["summary"]))
    assert cloud.store.get_run(run.run_id)["run_status"] == RunStatus.SUCCEEDED.value


def test_timings_split_the_run_at_what_the_status_table_recorded():
    shards = [
        {
            "submitted_at": "2026-01-01T10:01:00+00:00",
            "shard_status": "PROCESSED",
            "updated_at": "2026-01-01T11:00:00+00:00",
        },
        {
            "submitted_at": "2026-01-01T10:02:00+00:00",
            "shard_status": "PROCESSED",
            "updated_at": "2026-01-01T11:30:00+00:00",
        },
        {"shard_status": "QUEUED", "updated_at": "2026-01-01T12:00:00+00:00"},
    ]
    began = datetime(2026, 1, 1, 11, 31, tzinfo=UTC)
    timings = finalize._timings("2026-01-01T10:00:00+00:00", shards, began, 12.5)
    assert [(s["seconds"]) for s in timings["steps"]] == [60.0, 5340.0, 60.0, 12.5]
    assert timings["total_seconds"] == 5472.5 == sum(s["seconds"] for s in timings["steps"])
    on_demand = [{"shard_status": "PROCESSED", "updated_at": "2026-01-01T10:00:30+00:00"}]
    timings = finalize._timings("2026-01-01T10:00:00+00:00", on_demand, began, 1.0)
    assert [(s["step"], s["seconds"]) for s in timings["steps"]] == [
        ("until the last shard", 30.0),
        ("until FinalizeRun", 5430.0),
        ("FinalizeRun", 1.0),
    ]


def test_the_analytics_parquet_has_the_glue_tables_columns_and_types():
    template = load_template(ROOT / "template.yaml")
    table = template["Resources"]["AnalyticsResultsTable"]["Properties"]["TableInput"]
    glue = [(c["Name"], GLUE_TYPES[c["Type"]]) for c in table["StorageDescriptor"]["Columns"]]
    assert glue == [(field.name, field.type) for field in ANALYTICS_SCHEMA]


def test_xlsx_above_its_cap_is_skipped_with_a_warning(cloud):
    run = stage_run(cloud, 12)
    settings = with_settings(
        cloud, output_formats=(FileFormat.XLSX, FileFormat.CSV, FileFormat.PARQUET), xlsx_max_rows=10
    )
    result = finalize_run(run, cloud.s3, cloud.store, settings)
    assert result["warnings"] == [
        "xlsx skipped: 12 rows is above the XLSX cap of 10 rows; the csv/parquet outputs hold every row"
    ]
    assert [uri.rsplit(".", 1)[1] for uri in result["outputs"]] == ["csv", "parquet"]
    assert json.loads(read(cloud.s3, result["summary"]))["warnings"] == result["warnings"]


def test_xlsx_alone_above_its_cap_is_replaced_by_csv(cloud):
    run = stage_run(cloud, 12)
    result = finalize_run(
        run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.XLSX,), xlsx_max_rows=5)
    )
    assert result["warnings"] == [
        "xlsx skipped: 12 rows is above the XLSX cap of 5 rows; the csv output holds every row"
    ]
    assert [uri.rsplit(".", 1)[1] for uri in result["outputs"]] == ["csv"]


def test_a_failing_output_is_a_warning_and_leaves_no_half_object(cloud, monkeypatch):
    monkeypatch.setattr(parquet_writer, "PARQUET_BATCH_ROWS", 5)
    real_open_sink = finalize.open_sink

    def open_sink(fmt, target, columns, **options):
        sink = real_open_sink(fmt, target, columns, **options)
        if fmt is FileFormat.PARQUET and target.bucket == CUSTOMER:
            real_write = sink.write

            def write(row):
                if sink.rows == 7:  # after a first row group was uploaded
                    raise OSError("disk on fire")
                real_write(row)

            monkeypatch.setattr(sink, "write", write)
        return sink

    monkeypatch.setattr(finalize, "open_sink", open_sink)
    run = stage_run(cloud, 20)
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=ALL_FORMATS))
    assert result["warnings"] == ["parquet not written: OSError: disk on fire"]
    assert [uri.rsplit(".", 1)[1] for uri in result["outputs"]] == ["csv", "json", "jsonl", "xlsx"]
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=CUSTOMER, Prefix="output_data/")["Contents"]]
    assert not any(key.endswith(".parquet") for key in keys)
    assert len(analytics_objects(cloud.s3)) == 1
    assert no_pending_uploads(cloud.s3)


def test_a_model_without_a_price_has_an_unknown_cost(cloud):
    run = stage_run(cloud, 6)
    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings, prices=PriceTable({}))
    model = load_task("travel").model_id
    assert result["warnings"] == [f"no price for model {model} in prices.yaml; cost unknown"]
    summary = json.loads(read(cloud.s3, result["summary"]))
    assert summary["cost_usd"] is None and summary["cost"] == {"batch_usd": None, "on_demand_usd": None}
    assert summary["tokens"]["input"] == 6000
    assert cloud.store.get_run(run.run_id)["run_status"] == RunStatus.SUCCEEDED.value


def test_unreadable_records_fail_the_step_and_leave_no_outputs(cloud):
    run = stage_run(cloud, 6)
    cloud.s3.delete_object(Bucket=INTERNAL, Key=RunFiles(run.run_id).records)
    with pytest.raises(ClientError, match=r"Not Found|NoSuchKey"):
        finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=ALL_FORMATS))
    assert "Contents" not in cloud.s3.list_objects_v2(Bucket=CUSTOMER, Prefix="output_data/")
    assert not analytics_objects(cloud.s3) and no_pending_uploads(cloud.s3)
    assert cloud.store.get_run(run.run_id)["run_status"] == RunStatus.RUNNING.value


def test_a_column_that_widens_after_the_first_row_group_is_rewritten_in_s3(cloud, monkeypatch):
    monkeypatch.setattr(parquet_writer, "PARQUET_BATCH_ROWS", 4)
    run = stage_run(cloud, 10, score=lambda i: i if i < 7 else f"n/a {i}")
    result = finalize_run(run, cloud.s3, cloud.store, with_settings(cloud, output_formats=(FileFormat.PARQUET,)))
    assert result["warnings"] == []
    table = pq.read_table(io.BytesIO(read(cloud.s3, output(result, ".parquet"))))
    assert table.schema.field("score").type == pa.string()
    assert table.column("score").to_pylist() == [*(str(i) for i in range(1, 7)), "n/a 7", "n/a 8", "n/a 9", "n/a 10"]
    assert no_pending_uploads(cloud.s3)


@pytest.mark.parametrize(
    ("by_status", "outcome"),
    [
        ({"classified": 100}, RunOutcome.SUCCEEDED),
        ({"classified": 95, "model_error": 5}, RunOutcome.SUCCEEDED),
        ({"classified": 94, "model_error": 5, "off_list": 1}, RunOutcome.SUCCEEDED_WITH_ERRORS),
        ({"classified": 1, "invalid_input": 99}, RunOutcome.SUCCEEDED_WITH_ERRORS),
        ({"classified": 0, "model_error": 60, "invalid_input": 40}, RunOutcome.FAILED),
    ],
)
def test_a_run_outcome_a_user_can_act_on(by_status: dict[str, int], outcome: RunOutcome) -> None:
    assert run_outcome(100, by_status, 5.0) is outcome
