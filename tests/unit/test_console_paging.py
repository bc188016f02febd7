"""The executions list, the console's and the ``executions`` command's, over more executions than one page of
ListExecutions (moto answers 100 a page): every page is read (the console's up to its limit), newest first; and HEAD
answers like GET without a body."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_classifier_local import executions
from batch_classifier_local.console import ConsoleServer
from batch_classifier_local.console.views import ConsoleData

REGION = "us-east-1"
EXECUTIONS = 130  # more than one page
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A state machine with ``EXECUTIONS`` executions (oldest first), each started by an upload of its own."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sfn = client("stepfunctions")
        machine = sfn.create_state_machine(
            name="paging", definition=json.dumps(PASS), roleArn="arn:aws:iam::123456789012:role/local"
        )["stateMachineArn"]
        names = []
        for i in range(EXECUTIONS):
            names.append(f"upload-{i:04d}")
            upload = {"bucket": "customer", "key": f"input_data/calls-{i:04d}.csv", "size": 10, "etag": f"{i:032x}"}
            sfn.start_execution(stateMachineArn=machine, name=names[-1], input=json.dumps(upload))
        yield names


def test_the_list_reads_every_page(started: list[str]) -> None:
    listing = ConsoleData(client, {}).executions()
    rows = listing["executions"]
    assert len(rows) == EXECUTIONS and listing["truncated"] is False
    assert {row["name"] for row in rows} == set(started)
    assert [row["started"] for row in rows] == sorted((row["started"] for row in rows), reverse=True)
    assert {row["file"] for row in rows} == {f"input_data/calls-{i:04d}.csv" for i in range(EXECUTIONS)}
    # A status filter is ListExecutions' own, so that the limit counts only the executions shown.
    assert len(ConsoleData(client, {}).executions("RUNNING", limit=EXECUTIONS)["executions"]) == EXECUTIONS
    assert ConsoleData(client, {}).executions("SUCCEEDED")["executions"] == []


def test_the_executions_command_reads_every_page(started: list[str]) -> None:
    rows = executions.list_all(client("stepfunctions"))
    assert sorted(row["name"] for row in rows) == sorted(started)
    assert rows[0]["file"] == f"input_data/calls-{EXECUTIONS - 1:04d}.csv"  # newest first


def test_the_list_stops_at_its_limit_with_the_newest(started: list[str]) -> None:
    listing = ConsoleData(client, {}).executions(limit=120)
    rows = listing["executions"]
    assert len(rows) == 120 and listing["truncated"] is True and listing["limit"] == 120
    all_rows = ConsoleData(client, {}).executions()["executions"]
    dropped = [row for row in all_rows if row["name"] not in {r["name"] for r in rows}]
    assert len(dropped) == EXECUTIONS - 120
    assert min(row["started"] for row in rows) >= max(row["started"] for row in dropped)


def test_the_page_says_when_older_executions_are_left_out(started: list[str], monkeypatch) -> None:
    from batch_classifier_local.console import views  # noqa: PLC0415

    with ConsoleServer(client, {}) as server:
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        assert page.count('<tr data-status="RUNNING">') == EXECUTIONS and "executions-truncated" not in page
        monkeypatch.setattr(views, "EXECUTIONS_LIMIT", 100)
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        assert page.count('<tr data-status="RUNNING">') == 100 and 'id="executions-truncated"' in page


def test_head_answers_like_get_without_a_body(started: list[str]) -> None:
    with ConsoleServer(client, {}) as server:
        for path in ("", "api/executions", "static/app.js", "executions/upload-0001", "no-such-page"):
            get = urllib.request.Request(server.url + path)
            head = urllib.request.Request(server.url + path, method="HEAD")
            try:
                with urllib.request.urlopen(get, timeout=30) as answer:
                    status, headers, body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as refused:
                status, headers, body = refused.code, refused.headers, refused.read()
            try:
                with urllib.request.urlopen(head, timeout=30) as answer:
                    head_status, head_headers, head_body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as refused:
                head_status, head_headers, head_body = refused.code, refused.headers, refused.read()
            assert head_status == status, path
            assert head_headers["Content-Type"] == headers["Content-Type"], path
            assert head_body == b"" and body, path
            if path != "api/executions" and not path.startswith("executions/"):  # the same length, when stable
                assert int(head_headers["Content-Length"]) == len(body), path
