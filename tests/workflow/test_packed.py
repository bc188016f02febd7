"""Packed requests through the whole workflow: a user's task that sends 5 texts a request, uploaded beside its file,
runs on the local runtime (the real state machine, handlers, local Bedrock and offline model) and every row comes
out once, classified, from job files a fraction of the size one text a request needs; records a job fails are sent
again, alone when the request of several texts was refused."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from workflow_helpers import ROOT, SAMPLE, results_rows, run_id_of_execution, shard_items, write_calls

from batch_classifier.packing import alone_id
from batch_classifier.records import pack_id, record_id
from batch_classifier.storage import RunFiles
from batch_classifier_local.faults import FaultPlan
from batch_classifier_local.runtime import LocalRuntime

ROWS = 500  # 100 requests of 5 texts: one batch job of the 100-record minimum
TRAVEL = ROOT / "layers" / "common" / "batch_classifier" / "tasks" / "travel.yaml"


def _upload_packed_task(runtime: LocalRuntime, name: str, texts_per_request: int | None) -> None:
    """The bundled travel task as a user's task of its own that sends ``texts_per_request`` texts a request (None:
    as the bundled task says)."""
    assert runtime.stack is not None
    task = TRAVEL.read_text(encoding="utf-8").replace("name: travel", f"name: {name}", 1)
    if texts_per_request is not None:
        task, changed = re.subn(r"(?m)^texts_per_request: \d+$", f"texts_per_request: {texts_per_request}", task)
        assert changed == 1
    key = f"config/tasks/{name}.yaml"
    runtime.client("s3").put_object(Bucket=runtime.stack.customer_bucket, Key=key, Body=task.encode())


def _run(runtime: LocalRuntime, path: Path, key: str) -> tuple[str, dict[str, Any]]:
    arn = runtime.upload(path, key)
    described = runtime.wait(arn, timeout=240)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    return arn, described


def _job_files(runtime: LocalRuntime, run_id: str) -> dict[str, bytes]:
    """The batch job input of each of the run's batch shards, by shard name."""
    assert runtime.stack is not None
    s3 = runtime.client("s3")
    files = RunFiles(run_id)
    return {
        shard["sk"].removeprefix("SHARD#"): s3.get_object(
            Bucket=runtime.stack.internal_bucket, Key=files.job_input(shard["sk"].removeprefix("SHARD#"))
        )["Body"].read()
        for shard in shard_items(runtime, run_id)
        if shard["kind"] == "batch"
    }


def _record_ids(body: bytes) -> list[str]:
    return [line[len(b'{"recordId":"') :][:11].decode() for line in body.splitlines()]


def test_five_texts_a_request_classify_every_row_once_from_a_fraction_of_the_bytes(runtime, tmp_path):
    _upload_packed_task(runtime, "packed-five", 5)
    ids = write_calls(tmp_path / "calls.csv", ROWS, prefix="K")

    arn, described = _run(runtime, tmp_path / "calls.csv", "input_data/packed-five/calls.csv")
    summary, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids), "every input id exactly once"
    assert Counter(r["status"] for r in rows) == {"classified": ROWS}
    run_id = run_id_of_execution(described)
    packed = _job_files(runtime, run_id)
    [body] = packed.values()
    assert _record_ids(body) == [pack_id(i) for i in range(1, ROWS + 1, 5)]

    # The same file, one text a request: the same answers, from about 4 times the bytes.
    _upload_packed_task(runtime, "packed-one", 1)
    single_arn, described = _run(runtime, tmp_path / "calls.csv", "input_data/packed-one/calls.csv")
    _, single_rows = results_rows(runtime, single_arn)
    single = _job_files(runtime, run_id_of_execution(described))
    assert sorted(_record_ids(b"".join(single.values()))) == [record_id(i) for i in range(1, ROWS + 1)]
    packed_bytes, single_bytes = len(body), sum(len(b) for b in single.values())
    print(f"batch input for {ROWS} texts: {packed_bytes:,} bytes at 5 a request, {single_bytes:,} at 1")
    assert packed_bytes < single_bytes / 3
    assert {r["id"]: r["class"] for r in rows} == {r["id"]: r["class"] for r in single_rows}  # each text on its own
    assert summary["tokens"]["input"] > 0


def test_the_bundled_task_as_shipped_sends_six_texts_a_request_and_answers_as_one_at_a_time(runtime, tmp_path):
    """The sample file with the bundled travel task unchanged: its 223 texts are 38 requests of up to 6, under a
    job's 100-record minimum, so they go on demand; every row is answered as it is at one text a request (the
    session's own ``travel`` task, see tests/conftest.py)."""
    _upload_packed_task(runtime, "shipped", None)
    source = tmp_path / "travel_calls.csv"
    shutil.copy(SAMPLE, source)
    arn, described = _run(runtime, source, "input_data/shipped/travel_calls.csv")
    shards = shard_items(runtime, run_id_of_execution(described))
    assert [(s["kind"], int(s["records"])) for s in shards] == [("on_demand", 38)]
    summary, rows = results_rows(runtime, arn)
    assert summary["rows"] == len(rows) == 223

    single_arn, _ = _run(runtime, source, "input_data/travel/travel_calls.csv")
    _, single_rows = results_rows(runtime, single_arn)
    assert {r["id"]: (r["status"], r["class"]) for r in rows} == {
        r["id"]: (r["status"], r["class"]) for r in single_rows
    }


def test_a_refused_packed_record_goes_again_alone_and_lost_ones_go_again_packed(runtime, tmp_path):
    assert runtime.bedrock is not None
    _upload_packed_task(runtime, "packed-faults", 5)
    ids = write_calls(tmp_path / "faults.csv", ROWS, prefix="Q")
    # In the job: the first request refused (400), the second throttled (429), the last one's line lost.
    runtime.bedrock.faults = FaultPlan.from_dict({"record_errors": {"400": 1, "429": 1}, "missing_records": 1})
    created = runtime.bedrock.stats.jobs_created

    arn, described = _run(runtime, tmp_path / "faults.csv", "input_data/packed-faults/faults.csv")
    _, rows = results_rows(runtime, arn)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert Counter(r["status"] for r in rows) == {"classified": ROWS}
    run_id = run_id_of_execution(described)
    shards = {s["sk"].removeprefix("SHARD#"): s for s in shard_items(runtime, run_id)}
    # Round 1: texts 1-5 alone (their request of 5 was refused), 6-10 and 496-500 packed again: 7 requests.
    [retry] = [s for name, s in shards.items() if name.startswith("retry1-")]
    assert (retry["kind"], int(retry["records"])) == ("on_demand", 7)
    keyed = (
        runtime.client("s3")
        .get_object(Bucket=runtime.stack.internal_bucket, Key=RunFiles(run_id).round_texts(1))["Body"]
        .read()
        .decode()
    )
    assert [line.split("\t")[0] for line in keyed.splitlines()] == [alone_id(i) for i in range(1, 6)] + [
        record_id(i) for i in (*range(6, 11), *range(496, 501))
    ]
    with_jobs = [s for s in shards.values() if s.get("job_arn")]
    assert runtime.bedrock.stats.jobs_created - created == len(with_jobs) == 1  # nothing billed twice
