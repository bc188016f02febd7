"""`batch-classifier serve` used the way a user would: the AWS CLI copies a file into input_data/ and then sees
the execution it started succeed."""

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
def served(tmp_path: Path):
    """A `serve` process in a copy-free way: it runs from the project folder and writes .local-runtime/server.json."""
    server_file = ROOT / ".local-runtime" / "server.json"
    server_file.unlink(missing_ok=True)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_classifier_cli", "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
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
def test_the_aws_cli_drops_a_file_and_sees_its_execution_succeed(served, tmp_path):
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
            [sys.executable, "-m", "batch_classifier_cli", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return done.stdout

    name = executions[0]["name"]
    assert name in cli("executions") and "input_data/from-the-cli.csv" in cli("executions")
    shown = cli("show", name)
    assert "status   SUCCEEDED" in shown and "FinalizeRun" in shown
    counted = cli("query", "SELECT count(*) AS n FROM results")
    assert counted.split() == ["n", "223"]
