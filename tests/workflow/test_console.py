"""The local console over HTTP, against the session's runtime (no browser): the executions and their statuses, an
execution's graph coloured by what happened, its history with poll loops collapsed, a redrive that only the
console's own page can send, a run's shards and files with downloads, and file names that stay text."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from workflow_helpers import as_served, clear_faults, run_id_of_execution, run_item, until, write_calls

from batch_classifier_cli import local_commands, runtimes
from batch_classifier_local.console import ConsoleServer
from batch_classifier_local.faults import FaultPlan
from batch_classifier_local.runtime import LocalRuntime

SVG = "{http://www.w3.org/2000/svg}"
# A file name with markup (no "/": under input_data/ that would name a task).
HOSTILE_NAME = "calls <script>alert('x')<\\script> & co.csv"
HOSTILE_KEY = f"input_data/{HOSTILE_NAME}"


@pytest.fixture(scope="module")
def console(runtime: LocalRuntime) -> Iterator[ConsoleServer]:
    with ConsoleServer(runtime.client, runtime.stack.outputs) as server:
        yield server


def call(
    console: ConsoleServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(console.url.rstrip("/") + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


def get_json(console: ConsoleServer, path: str) -> Any:
    status, headers, body = call(console, path)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def get_html(console: ConsoleServer, path: str) -> str:
    status, headers, body = call(console, path)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    return body.decode()


def crash_finalize(runtime: LocalRuntime, path: Path) -> str:
    """An execution that fails at FinalizeRun (its worker crashes): redrivable."""
    runtime.bedrock.faults = FaultPlan.from_dict({"functions": {"FinalizeRun": {"crash": 1}}})
    try:
        arn = runtime.upload(path)
        assert runtime.wait(arn)["status"] == "FAILED"
    finally:
        clear_faults(runtime)
    return arn


@pytest.fixture(scope="module")
def runs(runtime: LocalRuntime, console: ConsoleServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One execution that succeeds (its file's name holds markup; ShardRecords fails once and is retried) and one
    that fails at FinalizeRun."""
    folder = tmp_path_factory.mktemp("console")
    write_calls(folder / "good.csv", 40, prefix="K")
    runtime.fail_next("ShardRecordsFunction").error = "Lambda.ServiceException"  # transient: the state's Retry
    ok = runtime.upload(folder / "good.csv", key=HOSTILE_KEY)
    assert runtime.wait(ok)["status"] == "SUCCEEDED"
    write_calls(folder / "console-crash.csv", 30, prefix="Q")
    failed = crash_finalize(runtime, folder / "console-crash.csv")
    return {"ok": ok, "failed": failed}


def name_of(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def graph_statuses(svg: str) -> dict[str, str]:
    root = ET.fromstring(svg)
    return {g.get("data-state"): g.get("data-status") for g in root.iter(f"{SVG}g") if g.get("data-state")}


def test_the_executions_list_has_both_runs_with_their_statuses(console, runs, runtime):
    listed = {row["arn"]: row for row in get_json(console, "/api/executions")["executions"]}
    ok, failed = listed[runs["ok"]], listed[runs["failed"]]
    assert ok["status"] == "SUCCEEDED" and failed["status"] == "FAILED"
    assert ok["name"] == name_of(runs["ok"]) and ok["file"] == HOSTILE_KEY
    assert ok["task"] == "travel" and ok["rows"] == 40 and ok["outcome"] == "succeeded"
    assert ok["run_id"] == run_id_of_execution(
        runtime.client("stepfunctions").describe_execution(executionArn=runs["ok"])
    )
    assert failed["rows"] == 30 and failed["seconds"] > 0 and failed["started"]
    only_failed = get_json(console, "/api/executions?status=FAILED")["executions"]
    assert runs["failed"] in {row["arn"] for row in only_failed}
    assert {row["status"] for row in only_failed} == {"FAILED"}
    # The page lists them with coloured statuses, and a filter.
    page = get_html(console, "/")
    assert f'href="/executions/{name_of(runs["failed"])}"' in page
    assert '<span class="status status-failed">FAILED</span>' in page
    assert '<span class="status status-succeeded">SUCCEEDED</span>' in page
    assert '<select name="status" id="status-filter">' in page
    filtered = get_html(console, "/?status=FAILED")
    table = filtered.split('<tbody id="execution-rows">')[1].split("</tbody>")[0]
    assert name_of(runs["failed"]) in table and name_of(runs["ok"]) not in table


def test_the_graph_marks_the_failed_state_and_what_ran_or_not(console, runs):
    name = name_of(runs["failed"])
    statuses = graph_statuses(call(console, f"/api/executions/{name}/graph.svg")[2].decode())
    assert statuses["FinalizeRun"] == "failed"
    for state in ("RegisterRun", "IsDuplicateRun?", "ConvertInput", "ShardRecords", "ProcessShards", "PlanRetries"):
        assert statuses[state] == "succeeded", state
    for state in ("AnythingClassified?", "NotifyRunCompleted", "RunSucceeded", "MarkRunFailed", "RunFailed"):
        assert statuses[state] == "not-reached", state
    # The children's states ran, but their histories are not recorded: said so, not guessed.
    assert statuses["ProcessShards/ProcessShard"] == "unrecorded"

    detail = get_json(console, f"/api/executions/{name}")
    finalize = detail["states"]["FinalizeRun"]
    assert finalize["status"] == "failed" and finalize["error"] == "Runtime.ExitError"
    assert "injected crash" in finalize["cause"]["errorMessage"]
    assert finalize["input"]["run"]["run_id"] == detail["run_id"]
    assert detail["states"]["RegisterRun"]["output"]["run"]["task"] == "travel"
    assert "note" in detail["states"]["ProcessShards/SubmitJob"]
    # The map: its run's item counts (DescribeMapRun), and the shards from the status table.
    map_run = detail["map_runs"]["ProcessShards"][-1]
    assert map_run["status"] == "SUCCEEDED" and map_run["items"]["succeeded"] == map_run["items"]["total"] >= 1
    assert detail["shards"]["total"] == map_run["items"]["total"]
    assert detail["shards"]["by_status"] == {"PROCESSED": detail["shards"]["total"]}
    assert detail["redrivable"] is True and detail["redrive_refusal"] is None

    page = get_html(console, f"/executions/{name}")
    assert graph_statuses(page[page.index("<svg") : page.index("</svg>") + 6])["FinalizeRun"] == "failed"
    assert 'id="redrive-button"' in page and "Runtime.ExitError" in page

    succeeded = graph_statuses(call(console, f"/api/executions/{name_of(runs['ok'])}/graph.svg")[2].decode())
    for state in ("FinalizeRun", "AnythingClassified?", "NotifyRunCompleted", "RunSucceeded"):
        assert succeeded[state] == "succeeded", state
    assert succeeded["NothingClassified"] == "not-reached"
    # A state whose Retry recovered from a failure succeeded, and says it was retried.
    assert succeeded["ShardRecords"] == "succeeded"
    retried = get_json(console, f"/api/executions/{name_of(runs['ok'])}")
    assert retried["states"]["ShardRecords"]["retries"] == 1 and retried["states"]["ShardRecords"]["error"] is None
    assert retried["graph"]["views"]["ShardRecords"]["badge"] == "retried 1×"
    assert 'id="redrive-button"' not in get_html(console, f"/executions/{name_of(runs['ok'])}")


def test_a_failed_map_shows_its_failed_children_and_shards(console, runtime, tmp_path):
    write_calls(tmp_path / "console-map.csv", 150, prefix="M")  # two shards
    runtime.fail_next("ProcessShardFunction", when=lambda event: event["shard"]["name"] == "shard-00002")
    arn = runtime.upload(tmp_path / "console-map.csv")
    assert runtime.wait(arn)["error"] == "States.ExceedToleratedFailureThreshold"
    detail = get_json(console, f"/api/executions/{name_of(arn)}")
    assert detail["states"]["ProcessShards"]["status"] == "failed"
    assert detail["states"]["PlanRetries"]["status"] == "not-reached"
    map_run = detail["map_runs"]["ProcessShards"][-1]
    assert map_run["status"] == "FAILED" and map_run["error"] == "States.ExceedToleratedFailureThreshold"
    assert map_run["items"]["total"] == 2 and map_run["items"]["failed"] == 1
    assert detail["graph"]["views"]["ProcessShards"]["badge"].startswith("2 items · 1 succeeded · 1 failed")
    assert detail["shards"]["total"] == 2 and detail["shards"]["by_status"].get("PROCESSED") == 1
    assert [shard["name"] for shard in detail["shards"]["open"]] == ["shard-00002"]
    page = get_html(console, f"/executions/{name_of(arn)}")
    assert "States.ExceedToleratedFailureThreshold" in page and 'id="redrive-button"' in page


def test_the_history_collapses_poll_loops(console, runs, runtime):
    # The product's poll loop runs in each shard's child workflow, whose history moto does not record: a small
    # state machine with the same loop (a Wait, a check, a choice) gives the console one to show.
    sfn = runtime.client("stepfunctions")
    definition = {
        "StartAt": "SubmitJob",
        "States": {
            "SubmitJob": {"Type": "Pass", "Result": {"polls": 0}, "ResultPath": "$.job", "Next": "WaitForJob"},
            "WaitForJob": {"Type": "Wait", "Seconds": 1, "Next": "CheckJob"},
            "CheckJob": {
                "Type": "Pass",
                "Parameters": {"polls.$": "States.MathAdd($.job.polls, 1)"},
                "ResultPath": "$.job",
                "Next": "JobEnded?",
            },
            "JobEnded?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.job.polls", "NumericGreaterThanEquals": 4, "Next": "Done"}],
                "Default": "WaitForJob",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    machine = sfn.create_state_machine(
        name="console-poll-loop", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/local"
    )["stateMachineArn"]
    try:
        arn = sfn.start_execution(stateMachineArn=machine, name="console-poll-loop-1", input="{}")["executionArn"]
        assert runtime.wait(arn, timeout=60)["status"] == "SUCCEEDED"
        events = sfn.get_execution_history(executionArn=arn)["events"]
        detail = get_json(console, "/api/executions/console-poll-loop-1")
        loops = [row for row in detail["history"] if row["kind"] == "loop"]
        assert [(row["states"], row["count"]) for row in loops] == [(["WaitForJob", "CheckJob", "JobEnded?"], 4)]
        assert sum(row["events"] if row["kind"] == "loop" else 1 for row in detail["history"]) == len(events)
        assert detail["events"] == len(events)
        assert len(detail["history"]) == len(events) - loops[0]["events"] + 1
        assert "WaitForJob → CheckJob → JobEnded?" in get_html(console, "/executions/console-poll-loop-1")
        # Its graph: the loop drawn back up, every state succeeded.
        assert set(graph_statuses(detail["graph"]["svg"]).values()) == {"succeeded"}
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)
    # The workflow's own history has no poll loop (the Distributed Map keeps it in the children): every event is
    # a row of its own.
    failed = get_json(console, f"/api/executions/{name_of(runs['failed'])}")
    assert all(row["kind"] == "event" for row in failed["history"])
    assert [row["id"] for row in failed["history"]] == list(range(1, failed["events"] + 1))
    assert failed["history"][-1]["type"] == "ExecutionFailed" and failed["history"][-1]["failed"]


def test_redrive_needs_the_consoles_own_request_and_resumes_the_same_execution(console, runtime, tmp_path):
    write_calls(tmp_path / "console-redrive.csv", 25, prefix="D")
    arn = crash_finalize(runtime, tmp_path / "console-redrive.csv")
    name = name_of(arn)
    path = f"/api/executions/{name}/redrive"
    sfn = runtime.client("stepfunctions")
    # A link, a form or another site cannot redrive it.
    assert call(console, path)[0] == 405
    status, _, body = call(console, path, method="POST")
    assert status == 403 and "X-Console-Action" in json.loads(body)["error"]
    forged = {"X-Console-Action": "redrive", "Origin": "http://evil.example"}
    assert call(console, path, method="POST", headers=forged)[0] == 403
    assert (
        call(console, path, method="POST", headers={"X-Console-Action": "redrive", "Sec-Fetch-Site": "cross-site"})[0]
        == 403
    )
    rebinding = {"X-Console-Action": "redrive", "Host": "attacker.example:80"}
    assert call(console, path, method="POST", headers=rebinding)[0] == 403
    assert sfn.describe_execution(executionArn=arn)["redriveCount"] == 0

    status, _, body = call(
        console, path, method="POST", headers={"X-Console-Action": "redrive", "Origin": console.url.rstrip("/")}
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer == {"arn": arn, "redrive_count": 1, "resumes_at": "FinalizeRun"}
    final = runtime.wait(arn, timeout=120)
    assert final["status"] == "SUCCEEDED" and final["redriveCount"] == 1
    listed = [row for row in get_json(console, "/api/executions")["executions"] if row["name"] == name]
    assert [(row["arn"], row["status"], row["redrive_count"]) for row in listed] == [(arn, "SUCCEEDED", 1)]
    statuses = graph_statuses(call(console, f"/api/executions/{name}/graph.svg")[2].decode())
    assert statuses["FinalizeRun"] == statuses["RunSucceeded"] == "succeeded"
    until(lambda: run_item(runtime, run_id_of_execution(final)).get("run_status") == "SUCCEEDED", "the run to succeed")
    # Once succeeded, it is not redriven again.
    status, _, body = call(console, path, method="POST", headers={"X-Console-Action": "redrive"})
    assert status == 409 and "cannot be redriven" in json.loads(body)["error"]


def test_an_input_error_is_not_redriven_as_it_would_fail_the_same_way(console, runtime, tmp_path):
    source = tmp_path / "console-unreadable.csv"
    source.write_text("ticket,body\n1,hello\n", encoding="utf-8")  # no 'conversation' column for the travel task
    arn = runtime.upload(source)
    assert runtime.wait(arn)["error"] == "MissingColumnError"
    name = name_of(arn)
    detail = get_json(console, f"/api/executions/{name}")
    assert detail["redrivable"] is False and "Fix the file and upload it again" in detail["redrive_refusal"]
    assert graph_statuses(detail["graph"]["svg"])["ConvertInput"] == "failed"
    assert graph_statuses(detail["graph"]["svg"])["RunFailed"] == "failed"
    page = get_html(console, f"/executions/{name}")
    assert 'id="redrive-button"' not in page and "Fix the file and upload it again" in page
    status, _, body = call(
        console, f"/api/executions/{name}/redrive", method="POST", headers={"X-Console-Action": "redrive"}
    )
    assert status == 409 and "failed on its input (MissingColumnError)" in json.loads(body)["error"]
    assert runtime.client("stepfunctions").describe_execution(executionArn=arn)["redriveCount"] == 0


def test_the_run_page_lists_its_shards_and_files_and_downloads_them(console, runs, runtime):
    detail = get_json(console, f"/api/executions/{name_of(runs['ok'])}")
    run_id = detail["run_id"]
    run = get_json(console, f"/api/runs/{run_id}")
    assert run["summary"]["status"] == "SUCCEEDED" and run["summary"]["rows"] == 40
    assert run["execution"]["arn"] == runs["ok"]
    shards = run["shards"]
    assert shards and {s["status"] for s in shards} == {"PROCESSED"}
    assert sum(s["records"] for s in shards) == 40
    for shard in shards:
        assert shard["name"].startswith("shard-") and shard["kind"] in {"batch", "on_demand"}
        assert (shard["job_arn"] is not None) == (shard["kind"] == "batch")
    names = {f["name"] for f in run["files"]}
    stem = HOSTILE_NAME.removesuffix(".csv")
    assert {f"{stem}.csv", "summary.json"} <= names
    assert run["report"] == (f"/runs/{run_id}/files/report.html" if "report.html" in names else None)
    # The execution page links its results through the console.
    assert {f["name"] for f in detail["results"]["files"]} <= names

    csv_file = next(f for f in run["files"] if f["name"] == f"{stem}.csv")
    status, headers, body = call(console, csv_file["url"])
    assert status == 200 and headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''" + quote(f"{stem}.csv", safe="") in headers["Content-Disposition"]
    bucket, key = csv_file["uri"].removeprefix("s3://").split("/", 1)
    assert body == runtime.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert int(headers["Content-Length"]) == len(body) == csv_file["size"]
    assert call(console, f"/runs/{run_id}/files/not-there.csv")[0] == 404
    assert call(console, f"/runs/{run_id}/files/{quote('../' + stem + '.csv', safe='')}")[0] == 404

    page = get_html(console, f"/runs/{run_id}")
    for shard in shards:
        assert f"<td>{shard['name']}</td>" in page
    assert f'href="{csv_file["url"]}"' in page and "summary.json" in page


def test_names_and_errors_with_markup_stay_text(console, runs):
    escaped = "calls &lt;script&gt;alert(&#x27;x&#x27;)&lt;\\script&gt; &amp; co.csv"
    for path in ("/", f"/executions/{name_of(runs['ok'])}"):
        page = get_html(console, path)
        assert "<script>alert" not in page
        assert escaped in page
    run_id = get_json(console, f"/api/executions/{name_of(runs['ok'])}")["run_id"]
    page = get_html(console, f"/runs/{run_id}")
    assert "<script>alert" not in page and escaped in page
    # The pages' data and the JSON endpoints carry the name, but never as markup.
    status, _, body = call(console, "/api/executions")
    assert status == 200 and b"<script>" not in body
    assert HOSTILE_KEY in {row["file"] for row in json.loads(body)["executions"]}
    # So does what a request names, in an error page.
    status, _, body = call(console, "/executions/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert status == 404 and b"<script>alert(1)" not in body and b"&lt;script&gt;alert(1)" in body


def test_the_console_command_prints_the_url_without_a_browser(console, runtime, monkeypatch, capsys):
    remote = as_served(runtime, console.url)
    monkeypatch.setattr(runtimes, "running_server", lambda: remote)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    assert local_commands.cmd_console(argparse.Namespace(no_browser=False)) == 0
    printed = capsys.readouterr().out
    assert f"console at {console.url}" in printed and "no browser here" in printed
    assert local_commands.cmd_console(argparse.Namespace(no_browser=True)) == 0
    assert capsys.readouterr().out.strip() == f"console at {console.url}"
