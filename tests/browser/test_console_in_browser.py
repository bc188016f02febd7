"""The local console in headless Chromium, as a user works with it: a run that fails at FinalizeRun (a crash
injected with `batch-classifier faults set`) is found on the executions page, its graph shows the failed state,
the fault is cleared and the Redrive button resumes it until the page shows it succeeded; then the run's
report.html, opened from the run's page, shows the figures of its summary.json."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from workflow_helpers import clear_faults, run_id_of_execution, write_calls

from batch_classifier.charts import percent
from batch_classifier_cli import fault_commands
from batch_classifier_local.console import ConsoleServer
from batch_classifier_local.console.graph import STATUS_COLOURS
from batch_classifier_local.runtime import LocalRuntime

# Each test fails after this many seconds, fixtures included (the session's runtime may start in the first one).
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
ROWS = 20
# Seconds the redriven execution may take to show SUCCEEDED on its page (it polls every 2 s and reloads).
REDRIVE_SECONDS = 90
# Seconds the executions page may take to load: it describes every execution of the session (up to 500).
PAGE_SECONDS = 90
# Seconds a run of 20 rows may take to end (it takes a few).
RUN_SECONDS = 120
CRASHES = 2  # FinalizeRun crashes twice: the first run fails, and a redrive would fail too unless it is cleared


def faults(*args: str, capsys: pytest.CaptureFixture[str] | None = None) -> dict[str, Any]:
    """`batch-classifier faults <action> [plan]` against the runtime `served` stands for; what it prints."""
    action, *plan = args
    if capsys is not None:
        capsys.readouterr()
    assert fault_commands.cmd_faults(argparse.Namespace(action=action, plan=plan[0] if plan else None)) == 0
    if capsys is None:
        return {}
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


@pytest.fixture(scope="module")
def failed(served: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A labelled CSV of 20 rows whose execution failed at FinalizeRun, with FinalizeRun's fault still set."""
    runtime = served
    clear_faults(runtime)
    path = tmp_path_factory.mktemp("browser") / "browser-calls.csv"
    write_calls(path, ROWS, prefix="W")
    faults("set", json.dumps({"functions": {"FinalizeRun": {"crash": CRASHES}}}))
    try:
        arn = runtime.upload(path)
        described = runtime.wait(arn, timeout=RUN_SECONDS)
        assert described["status"] == "FAILED" and described["error"] == "Runtime.ExitError", described
        yield {"arn": arn, "name": arn.rsplit(":", 1)[-1], "run_id": run_id_of_execution(described)}
    finally:
        clear_faults(runtime)


@pytest.fixture
def succeeded(served: LocalRuntime, failed: dict[str, Any]) -> dict[str, Any]:
    """The same execution once redriven to success (by the first test; here through the API when it was not)."""
    sfn = served.client("stepfunctions")
    if sfn.describe_execution(executionArn=failed["arn"])["status"] == "FAILED":
        clear_faults(served)
        sfn.redrive_execution(executionArn=failed["arn"])
    assert served.wait(failed["arn"], timeout=RUN_SECONDS)["status"] == "SUCCEEDED"
    return failed


def state(page: Any, name: str) -> Any:
    return page.locator(f'#graph g.state[data-state="{name}"]')


def test_a_failed_execution_is_shown_failed_and_redriven_from_its_page(
    page: Any,
    console: ConsoleServer,
    served: LocalRuntime,
    failed: dict[str, Any],
    shoot: Callable[[Any, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = failed["name"]
    page.goto(console.url, timeout=PAGE_SECONDS * 1000)
    row = page.locator("#execution-rows tr").filter(has=page.locator(f'a[href="/executions/{name}"]'))
    expect(row).to_have_count(1)
    expect(row.locator(".status")).to_have_text("FAILED")
    expect(row).to_contain_text(f"{ROWS}")
    shoot(page, "executions")

    row.locator(f'a[href="/executions/{name}"]').click()
    expect(page).to_have_url(re.compile(f"/executions/{re.escape(name)}$"))
    expect(page.locator("#execution-status")).to_have_text("FAILED")
    # The graph: FinalizeRun drawn failed (the failure's colours), what ran before it succeeded, the rest not reached.
    fill, stroke = STATUS_COLOURS["failed"]
    expect(state(page, "FinalizeRun")).to_have_attribute("data-status", "failed")
    expect(state(page, "FinalizeRun").locator("rect").first).to_have_attribute("stroke", stroke)
    expect(state(page, "FinalizeRun").locator("rect").first).to_have_attribute("fill", fill)
    for before in ("RegisterRun", "ConvertInput", "ShardRecords", "ProcessShards", "PlanRetries"):
        expect(state(page, before)).to_have_attribute("data-status", "succeeded")
    expect(state(page, "RunSucceeded")).to_have_attribute("data-status", "not-reached")
    state(page, "FinalizeRun").click()
    details = page.locator("#state-details")
    expect(details).to_contain_text("FinalizeRun")
    expect(details).to_contain_text("Runtime.ExitError")
    shoot(page, "failed-execution")

    # The fault is still there (a redrive now would crash again): clear it, as a user would.
    left = faults("show", capsys=capsys)["functions"]["finalizerun"]
    assert left["crash"] == CRASHES - 1
    assert faults("clear", capsys=capsys)["functions"] == {}

    button = page.locator("#redrive-button")
    expect(button).to_be_enabled()
    with page.expect_response(lambda answer: answer.url.endswith("/redrive")) as sent:
        button.click()  # its confirm() is accepted (the page fixture)
    assert sent.value.status == 200
    assert sent.value.json() == {"arn": failed["arn"], "redrive_count": 1, "resumes_at": "FinalizeRun"}
    # The page polls the execution and reloads as it goes on, until it has succeeded.
    expect(page.locator("#execution-status")).to_have_text("SUCCEEDED", timeout=REDRIVE_SECONDS * 1000)
    for after in ("FinalizeRun", "NotifyRunCompleted", "RunSucceeded"):
        expect(state(page, after)).to_have_attribute("data-status", "succeeded")
    expect(page.locator("main > dl.facts")).to_contain_text("Redriven")
    expect(page.locator("#redrive-button")).to_have_count(0)
    shoot(page, "redriven-execution")
    described = served.client("stepfunctions").describe_execution(executionArn=failed["arn"])
    assert described["status"] == "SUCCEEDED" and described["redriveCount"] == 1


def test_the_run_report_shows_the_figures_of_its_summary(
    page: Any, console: ConsoleServer, succeeded: dict[str, Any], shoot: Callable[[Any, str], Path]
) -> None:
    run_id = succeeded["run_id"]
    page.goto(f"{console.url}executions/{succeeded['name']}")
    page.locator(f'dl.facts a[href="/runs/{run_id}"]').click()
    expect(page.locator("#run-status")).to_have_text("SUCCEEDED")
    summary_link = page.locator("table.files a", has_text=re.compile(r"^summary\.json$"))
    summary = page.request.get(console.url.rstrip("/") + summary_link.get_attribute("href")).json()
    assert summary["rows"] == ROWS
    shoot(page, "run")

    with page.context.expect_page() as opened:
        page.locator("#report-link").click()  # target=_blank: a tab of its own
    report = opened.value
    report.wait_for_load_state()
    # HEAD: the report's headers, its length, and no body (the console streams files from S3 on GET only).
    got, head = page.request.get(report.url), page.request.head(report.url)
    assert head.status == got.status == 200 and head.body() == b"" and got.body()
    assert int(head.headers["content-length"]) == len(got.body())
    expect(report.locator("h1")).to_have_text("Run report")
    tiles = {
        tile.locator("span").inner_text(): tile.locator("b").inner_text() for tile in report.locator(".tile").all()
    }
    assert tiles["rows"] == f"{summary['rows']:,}"
    classified = summary["by_status"].get("classified", 0)
    assert tiles[f"classified ({classified:,})"] == percent(classified / summary["rows"])

    # Rows by status: a part of the stacked bar and a line of the table per status that has rows.
    by_status = {status: count for status, count in summary["by_status"].items() if count}
    parts = report.locator("#status svg.chart rect")
    expect(parts).to_have_count(len(by_status))
    assert [title.split(":")[0] for title in parts.locator("title").all_text_contents()] == list(by_status)
    lines = report.locator("#status table").first.locator("tbody tr")
    assert {
        cells[0].strip(): int(cells[1].replace(",", ""))
        for cells in (line.locator("td").all_inner_texts() for line in lines.all())
    } == by_status

    # Class distribution: a bar per class, most frequent first, each as long as its count.
    by_class = summary["by_class"]
    bars = report.locator("#classes svg.chart g")
    expect(bars).to_have_count(len(by_class))
    shown = [bar.locator("title").text_content().rsplit(": ", 1) for bar in bars.all()]
    expected = sorted(by_class.items(), key=lambda item: -item[1])
    assert [label for label, _ in shown] == [label for label, _ in expected]
    assert [int(text.split(" ")[0].replace(",", "")) for _, text in shown] == [count for _, count in expected]
    widths = [float(bar.locator("rect").get_attribute("width")) for bar in bars.all()]
    top = expected[0][1]
    for width, (label, count) in zip(widths, expected, strict=True):
        assert width == pytest.approx(widths[0] * count / top, abs=0.2), label

    # Against the ground truth (the file is labelled): accuracy as summary.json has it.
    evaluation = summary["evaluation"]
    assert evaluation["rows"] == ROWS
    accuracy = percent(evaluation["accuracy"])
    assert tiles[f"accuracy on {ROWS:,} labelled rows"] == accuracy
    expect(report.locator("#evaluation table").first.locator("tr", has_text="accuracy").first).to_contain_text(accuracy)
    shoot(report, "report")
