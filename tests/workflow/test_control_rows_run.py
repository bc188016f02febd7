"""Control rows through the whole workflow: a user's task that mixes 20 labelled control rows into every run, with a
control file whose labels are deliberately wrong, runs on the local runtime (the real state machine, handlers, local
Bedrock and offline model). The run succeeds; its outputs hold only the user's rows; its summary, analytics and
notification give the control accuracy and say the run is degraded."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
from workflow_helpers import (
    ROOT,
    SAMPLE,
    results_rows,
    run_id_of_execution,
    run_item,
    shard_items,
    until,
    write_calls,
)

from batch_classifier.tasks import ControlSettings, load_task
from batch_classifier_local.analytics import mirror, query
from batch_classifier_local.runtime import LocalRuntime
from batch_classifier_local.template import load_template

TASK = "controlled"
CONTROL_KEY = f"config/controls/{TASK}.csv"
CONTROLS = 20


def _upload_task_and_controls(runtime: LocalRuntime) -> None:
    """The bundled travel task with controls, and a control file of 40 sample calls each labelled with the category
    after its own (so almost every control answer counts as wrong)."""
    assert runtime.stack is not None
    travel = load_task("travel")
    controls = ControlSettings(file=CONTROL_KEY, rows=CONTROLS, label_column="class", min_accuracy=0.8)
    task = travel.model_copy(update={"name": TASK, "controls": controls})
    s3, bucket = runtime.client("s3"), runtime.stack.customer_bucket
    s3.put_object(Bucket=bucket, Key=f"config/tasks/{TASK}.yaml", Body=task.to_yaml().encode())
    names = travel.category_names
    with SAMPLE.open(encoding="utf-8", newline="") as stream:
        sample = list(csv.DictReader(stream))[:40]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["conversation", "class"])
    for row in sample:
        writer.writerow([row["conversation"], names[(names.index(row["class"]) + 1) % len(names)]])
    s3.put_object(Bucket=bucket, Key=CONTROL_KEY, Body=out.getvalue().encode())


def _run_notices(runtime: LocalRuntime):
    """Messages published to the run events topic from now on (subject, message), read from a subscribed queue."""
    assert runtime.stack is not None
    sqs, sns = runtime.client("sqs"), runtime.client("sns")
    queue = sqs.create_queue(QueueName=f"control-events-{time.monotonic_ns()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=runtime.stack.outputs["RunEventsTopicArn"], Protocol="sqs", Endpoint=queue_arn)
    received: list[tuple[str, dict]] = []

    def read(run_id: str) -> list[tuple[str, dict]]:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(message["Body"])
            received.append((body.get("Subject", ""), json.loads(body["Message"])))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [(subject, m) for subject, m in received if m.get("run_id") == run_id]

    return read


def test_a_run_with_controls_below_its_minimum_succeeds_degraded_with_only_the_users_rows(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    _upload_task_and_controls(runtime)
    notices = _run_notices(runtime)
    ids = write_calls(tmp_path / "calls.csv", 300, prefix="V")

    arn = runtime.upload(tmp_path / "calls.csv", f"input_data/{TASK}/calls.csv")
    described = runtime.wait(arn, timeout=240)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    run_id = run_id_of_execution(described)

    summary, rows = results_rows(runtime, arn)
    assert [r["id"] for r in rows] == ids, "the user's rows, each once, and no control row"
    assert summary["rows"] == 300 and sum(summary["by_status"].values()) == 300
    assert summary["evaluation"]["rows"] == 300
    # The controls went into the run's requests: 320 texts, 6 a request.
    assert sum(int(s["records"]) for s in shard_items(runtime, run_id)) == -(-(300 + CONTROLS) // 6)

    controls = summary["controls"]
    assert controls["rows"] == CONTROLS and controls["min_accuracy"] == 0.8 and controls["degraded"]
    assert controls["accuracy"] < 0.8 and controls["correct"] == round(controls["accuracy"] * CONTROLS)
    assert summary["outcome"] == "degraded"
    note = f"degraded: control accuracy {controls['accuracy']:.0%} below 80%"
    assert summary["headline"].startswith(note)
    assert run_item(runtime, run_id)["outcome"] == "degraded"

    subject, message = until(lambda: notices(run_id), "the run's notification")[0]
    assert subject == "Batch classification run degraded"
    assert message["outcome"] == "degraded" and message["headline"].startswith(note)
    assert message["controls"] == {k: controls[k] for k in ("rows", "correct", "accuracy", "min_accuracy", "degraded")}

    # The analytics table holds the control rows too, flagged: control accuracy by run is a query away.
    assert runtime.stack is not None
    s3, internal = runtime.client("s3"), runtime.stack.internal_bucket
    [key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=internal, Prefix="analytics/results/")["Contents"]
        if o["Key"].endswith(f"/{run_id}.parquet")
    ]
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=internal, Key=key)["Body"].read())).to_pylist()
    flagged = [r for r in table if r["control"]]
    assert len(table) == 300 + CONTROLS and len(flagged) == CONTROLS
    assert sum(bool(r["correct"]) for r in flagged) == controls["correct"]

    # The template's "Control accuracy by run", run locally, gives the run's control accuracy; the others leave the
    # control rows out ("Daily volume" counts the user's 300 rows).
    resources = load_template(ROOT / "template.yaml")["Resources"]
    name = runtime.stack.outputs.get("AnalyticsTableName", "results")
    files = mirror(s3, internal, tmp_path / "mirror")

    def named(query_name: str) -> list[dict]:
        sql = resources[query_name]["Properties"]["QueryString"]["Fn::Sub"]
        columns, found = query(files, sql.replace('"${AnalyticsDatabase}"."${AnalyticsResultsTable}"', name), name)
        return [dict(zip(columns, row, strict=True)) for row in found]

    [mine] = [row for row in named("ControlAccuracyQuery") if row["run_id"] == run_id]
    assert (mine["control_rows"], mine["correct_rows"]) == (CONTROLS, controls["correct"])
    assert float(mine["control_accuracy"]) == controls["accuracy"]
    [volume] = [row for row in named("DailyVolumeQuery") if row["task"] == TASK]
    assert volume["rows"] == 300
