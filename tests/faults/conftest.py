"""The fault suite's fixtures: the session's local runtime with no fault left over, the run events topic as a
queue, and the one-line summary CI shows (``N scenarios, N passed``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from workflow_helpers import clear_faults

from batch_classifier_local.runtime import LocalRuntime


@pytest.fixture(autouse=True)
def clean_faults(runtime: LocalRuntime) -> Iterator[None]:
    clear_faults(runtime)
    yield
    clear_faults(runtime)


class Notifications:
    """What the run events topic sent, read from an SQS queue subscribed to it."""

    def __init__(self, runtime: LocalRuntime) -> None:
        assert runtime.stack is not None
        self.sqs = runtime.client("sqs")
        self.queue = self.sqs.create_queue(QueueName="fault-suite-run-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        runtime.client("sns").subscribe(
            TopicArn=runtime.stack.outputs["RunEventsTopicArn"], Protocol="sqs", Endpoint=arn
        )
        self.seen: list[dict[str, Any]] = []

    def about(self, *needles: str) -> list[dict[str, Any]]:
        """The notifications (``{"subject", "message"}``) whose message names any of ``needles``."""
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                envelope = json.loads(message["Body"])
                self.seen.append({"subject": envelope.get("Subject", ""), "message": envelope["Message"]})
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return [n for n in self.seen if any(needle and needle in n["message"] for needle in needles)]


@pytest.fixture(scope="session")
def notifications(runtime: LocalRuntime) -> Notifications:
    return Notifications(runtime)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reports = [
        report
        for outcome in ("passed", "failed", "error")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", "") == "call" and "tests/faults/" in getattr(report, "nodeid", "")
    ]
    if reports:
        passed = sum(1 for report in reports if report.passed)
        terminalreporter.write_line(f"fault suite: {len(reports)} scenarios, {passed} passed")
