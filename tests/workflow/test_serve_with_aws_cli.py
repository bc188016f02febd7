"""`batch-classifier serve` used the way a user would: the AWS CLI copies a file into input_data/ and then sees
the execution it started succeed; a file that fails is redriven with `aws stepfunctions redrive-execution`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_helpers import ROOT, SAMPLE

AWS_CLI = os.environ.get("AWS_CLI") or shutil.which("aws") or str(ROOT / ".venv-awscli" / "bin" / "aws")


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the test's `batch-classifier` commands: a state folder of their own, so that the test's
    `serve` records itself there and a `serve` the user keeps in the project folder is left alone."""
    return {**os.environ, "BATCH_CLASSIFIER_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def served(tmp_path: Path, cli_env: dict[str, str]):
    """A `serve` process run from the project folder, recording itself in the test's state folder."""
    server_file = Path(cli_env["BATCH_CLASSIFIER_STATE_DIR"]) / "server.json"
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_classifier_cli", "serve"],
        cwd=ROOT,
        env=cli_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240  # a busy two-core machine takes a while to import and deploy
        while not server_file.exists():
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        time.sleep(0.2)
        yield json.loads(server_file.read_text())
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.mark.skipif(not Path(AWS_CLI).exists(), reason="the AWS CLI is not installed (make test installs it)")
def test_the_aws_cli_drops_files_sees_their_executions_and_redrives_one(served, tmp_path, cli_env):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    endpoint = served["endpoint"]
    bucket = served["outputs"]["CustomerBucketName"]
    machine = served["state_machine_arn"]

    def aws(*args: str) -> str:
        done = subprocess.run(
            [AWS_CLI, "--endpoint-url", endpoint, *args], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    aws("s3", "cp", str(SAMPLE), f"s3://{bucket}/input_data/from-the-cli.csv")
    deadline = time.monotonic() + 240
    while True:
        executions = json.loads(aws("stepfunctions", "list-executions", "--state-machine-arn", machine))["executions"]
        statuses = {e["status"] for e in executions}
        if executions and statuses <= {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}:
            break
        assert time.monotonic() < deadline, f"still running: {executions}"
        time.sleep(1)
    assert [e["status"] for e in executions] == ["SUCCEEDED"]
    listed = aws("s3", "ls", "--recursive", f"s3://{bucket}/output_data/")
    assert "from-the-cli" in listed and "summary.json" in listed

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "batch_classifier_cli", *args],
            cwd=ROOT,
            env=cli_env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    name = executions[0]["name"]
    assert name in cli("executions") and "input_data/from-the-cli.csv" in cli("executions")
    shown = cli("show", name)
    assert "status   SUCCEEDED" in shown and "FinalizeRun" in shown
    counted = cli("query", "SELECT count(*) AS n FROM results")
    assert counted.split() == ["n", "223"]

    # RedriveExecution: a succeeded execution is refused, as Step Functions refuses it.
    succeeded = executions[0]["executionArn"]
    refused = subprocess.run(
        [AWS_CLI, "--endpoint-url", endpoint, "stepfunctions", "redrive-execution", "--execution-arn", succeeded],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "ExecutionNotRedrivable" in refused.stderr, refused.stderr

    # A file the product cannot read fails in RunFailed; `batch-classifier redrive` refuses it (it would fail the
    # same way), while the AWS CLI's redrive does what Step Functions does: the same execution replays RunFailed.
    unreadable = tmp_path / "unreadable.csv"
    unreadable.write_text("ticket,body\n1,hello\n", encoding="utf-8")
    aws("s3", "cp", str(unreadable), f"s3://{bucket}/input_data/unreadable.csv")

    def described(arn: str) -> dict:
        return json.loads(aws("stepfunctions", "describe-execution", "--execution-arn", arn))

    deadline = time.monotonic() + 120
    while True:
        listed = json.loads(aws("stepfunctions", "list-executions", "--state-machine-arn", machine))["executions"]
        failed = [e for e in listed if e["executionArn"] != succeeded and e["status"] == "FAILED"]
        if failed:
            break
        assert time.monotonic() < deadline, f"no failed execution: {listed}"
        time.sleep(1)
    arn, name = failed[0]["executionArn"], failed[0]["name"]
    assert described(arn)["error"] == "MissingColumnError"
    by_cli = subprocess.run(
        [sys.executable, "-m", "batch_classifier_cli", "redrive", name],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert by_cli.returncode != 0
    assert "failed on its input (MissingColumnError)" in by_cli.stderr and "upload it again" in by_cli.stderr
    assert described(arn)["redriveCount"] == 0
    assert "redriveDate" in json.loads(aws("stepfunctions", "redrive-execution", "--execution-arn", arn))
    deadline = time.monotonic() + 60
    while (after := described(arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the redriven execution is still running"
        time.sleep(0.5)
    assert (after["status"], after["error"], after["redriveCount"]) == ("FAILED", "MissingColumnError", 1)
    events = json.loads(aws("stepfunctions", "get-execution-history", "--execution-arn", arn))["events"]
    redriven = [i for i, e in enumerate(events) if e["type"] == "ExecutionRedriven"]
    assert len(redriven) == 1
    assert [e["type"] for e in events[redriven[0] :]] == [
        "ExecutionRedriven",
        "FailStateEntered",
        "ExecutionFailed",
    ]

    # Fault plans from the command line: set, show what is left, refuse a bad one, clear.
    plan = {"job_statuses": {"shard-00001": "Failed"}, "functions": {"FinalizeRun": {"crash": 1}}}
    shown = json.loads(cli("faults", "set", json.dumps(plan)))
    assert shown["job_statuses"] == plan["job_statuses"] and shown["functions"]["finalizerun"]["crash"] == 1
    assert json.loads(cli("faults", "show")) == shown
    bad = subprocess.run(
        [sys.executable, "-m", "batch_classifier_cli", "faults", "set", '{"functions": {"FinalizeRun": {"boom": 1}}}'],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "unknown fields ['boom']" in bad.stderr, bad.stderr
    cleared = json.loads(cli("faults", "clear"))
    assert cleared["job_statuses"] == {} and cleared["functions"] == {}
