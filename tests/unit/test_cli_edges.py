"""What a user trips over on the command line: a column scored against itself, an empty outputs folder, a failed
prepare over a good folder, a task file given to run, a file run twice, output cut short by `| head`, read-only
commands outside the project, the local stack's outputs, and a task with one category."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_fixtures import CUSTOMER, ENVIRONMENT, REGION, TABLE, create_cloud
from moto import mock_aws
from test_pipeline import answer_jobs, one_text_task_file, write_input

from batch_classifier.status import run_key
from batch_classifier.tasks import load_task
from batch_classifier_cli import local_commands, run_command, runtimes
from batch_classifier_cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _unlabelled_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An input without a ground-truth column, prepared, answered and collected into results.csv."""
    labelled = tmp_path / "labelled.csv"
    write_input(labelled, 120)
    source = tmp_path / "calls.csv"
    with labelled.open(encoding="utf-8", newline="") as stream, source.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["conversation_id", "conversation", "agent"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv.DictReader(stream))  # every column but the ground truth, "class"
    assert (
        main(["prepare", str(source), "--task", str(one_text_task_file(tmp_path)), "--out", str(tmp_path / "prep")])
        == 0
    )
    answer_jobs(tmp_path / "prep", tmp_path / "outputs")
    results = tmp_path / "results" / "results.csv"
    assert main(["collect", str(tmp_path / "prep"), "--outputs", str(tmp_path / "outputs"), "--out", str(results)]) == 0
    capsys.readouterr()
    return results


# --- 1. evaluate ---------------------------------------------------------------------------------------------


def test_evaluate_refuses_to_score_the_prediction_against_itself(tmp_path, capsys):
    results = _unlabelled_results(tmp_path, capsys)
    assert main(["evaluate", str(results), "--label-column", "class"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: the ground truth and the prediction are the same column 'class' of ")
    assert captured.err.count("\n") == 1 and "Accuracy" not in captured.err


# --- 2. collect ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest_only", [False, True])
def test_collect_without_batch_output_files_fails(tmp_path, capsys, manifest_only):
    source = tmp_path / "calls.csv"
    write_input(source, 120)
    assert main(["prepare", str(source), "--out", str(tmp_path / "prep")]) == 0
    outputs = tmp_path / "outputs"
    (outputs / "job-1").mkdir(parents=True)
    if manifest_only:  # a job folder with its manifest but no record outputs
        (outputs / "job-1" / "manifest.json.out").write_text("{}", encoding="utf-8")
    capsys.readouterr()
    results = tmp_path / "results" / "calls.csv"
    assert main(["collect", str(tmp_path / "prep"), "--outputs", str(outputs), "--out", str(results)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: found no batch output files (*.out) in {outputs} or its subfolders")
    assert not results.exists()


# --- 4. prepare ------------------------------------------------------------------------------------------------


def test_a_failed_prepare_leaves_the_previous_folder_as_it_was(tmp_path, capsys):
    source = tmp_path / "calls.csv"
    write_input(source, 250)
    prepared = tmp_path / "prepared"
    task = one_text_task_file(tmp_path)
    assert main(["prepare", str(source), "--task", str(task), "--out", str(prepared), "--label-column", "class"]) == 0
    before = _snapshot(prepared)
    assert "records.jsonl" in before and any(name.startswith("jobs/") for name in before)

    assert main(["prepare", str(tmp_path / "missing.csv"), "--out", str(prepared)]) == 1
    assert "No such file or directory" in capsys.readouterr().err
    assert _snapshot(prepared) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calls.csv",
        "prepared",
        "travel.yaml",
    ]  # no staging folder left

    # A bad option fails after the input was opened: the same.
    assert main(["prepare", str(source), "--out", str(prepared), "--text-column", "body"]) == 1
    assert _snapshot(prepared) == before


def test_prepare_replaces_its_folder_as_a_whole_when_it_succeeds(tmp_path, capsys):
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    write_input(big, 250)
    write_input(small, 20)
    prepared = tmp_path / "prepared"
    task = str(one_text_task_file(tmp_path))
    assert main(["prepare", str(big), "--task", task, "--out", str(prepared)]) == 0
    assert list((prepared / "jobs").glob("*.jsonl"))
    assert main(["prepare", str(small), "--out", str(prepared)]) == 0
    assert not list((prepared / "jobs").glob("*.jsonl"))  # the bigger file's jobs are gone with the old folder
    assert json.loads((prepared / "plan.json").read_text())["rows"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "prepared", "small.csv", "travel.yaml"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(small), "--out", str(empty)]) == 0
    assert (empty / "plan.json").is_file()


def test_prepare_refuses_a_folder_it_did_not_write_and_leaves_no_new_folders(tmp_path, capsys):
    source = tmp_path / "calls.csv"
    write_input(source, 20)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["prepare", str(source), "--out", str(mine)]) == 1
    assert "holds files prepare did not write (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    assert main(["prepare", str(source), "--out", str(tmp_path / "a-file")]) == 1
    assert "is a file" in capsys.readouterr().err

    assert main(["prepare", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "new" / "deep" / "prep")]) == 1
    assert not (tmp_path / "new").exists()


# --- 5 and 6. run: a task file, and a file run twice ------------------------------------------------------------


class _Duplicates:
    """Step Functions as cmd_run sees it: every upload's execution ends at once as a duplicate of ``earlier``."""

    def __init__(self, earlier: dict[str, Any]) -> None:
        self.output = json.dumps({"run": earlier, "duplicate": True})

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument name
        now = datetime.now(UTC)
        name = executionArn.rsplit(":", 1)[-1]
        return {
            "executionArn": executionArn,
            "name": name,
            "status": "SUCCEEDED",
            "startDate": now,
            "stopDate": now,
            "output": self.output,
        }

    def get_execution_history(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return {"events": []}


class _Runtime:
    """A runtime with moto's S3 and DynamoDB whose uploads all come back as duplicates of one earlier run."""

    def __init__(self, earlier: dict[str, Any]) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.stepfunctions = _Duplicates(earlier)
        self.stack = SimpleNamespace(outputs={"CustomerBucketName": CUSTOMER, "RunsTableName": TABLE})
        self.uploads: list[str] = []

    def client(self, service: str) -> Any:
        return getattr(self, service)

    def upload(self, path: Path, key: str) -> str:
        self.s3.upload_file(str(path), CUSTOMER, key)
        self.uploads.append(key)
        return f"arn:aws:states:us-east-1:123456789012:execution:machine:upload-{len(self.uploads)}"


@pytest.fixture
def runtime(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_cloud()
        earlier = {"run_id": "0123456789abcdef0123", "bucket": CUSTOMER, "key": "input_data/calls.csv", "etag": "e1"}
        item = {
            **run_key(earlier["run_id"]),
            "run_status": "SUCCEEDED",
            "execution": "arn:aws:states:us-east-1:123456789012:execution:machine:calls-first",
            "output_prefix": "output_data/2025-01-02/calls-0123456789abcdef0123/",
        }
        boto3.client("dynamodb", region_name=REGION).put_item(
            TableName=TABLE, Item={k: {"S": v} for k, v in item.items()}
        )
        fake = _Runtime(earlier)

        monkeypatch.setattr(run_command, "runtime_for_command", lambda *args, **kwargs: nullcontext(fake))
        yield fake


def test_run_uploads_a_task_file_where_the_workflow_reads_users_tasks(tmp_path, capsys, runtime):
    source = tmp_path / "calls.csv"
    write_input(source, 5)
    task_file = tmp_path / "tasks" / "mine.yaml"
    task_file.parent.mkdir()
    task_file.write_text(load_task("travel").to_yaml().replace("name: travel", "name: my-calls", 1), encoding="utf-8")

    main(["run", str(source), "--task", str(task_file), "--out", str(tmp_path / "results")])
    assert runtime.uploads == ["input_data/my-calls/calls.csv"]
    uploaded = runtime.s3.get_object(Bucket=CUSTOMER, Key="config/tasks/my-calls.yaml")["Body"].read()
    assert uploaded == task_file.read_bytes()
    assert f"task 'my-calls' from {task_file} uploaded to s3://{CUSTOMER}/config/tasks/my-calls.yaml" in (
        capsys.readouterr().out
    )

    # A task file that is not valid is refused before anything is uploaded.
    task_file.write_text("name: broken\n", encoding="utf-8")
    assert main(["run", str(source), "--task", str(task_file)]) == 1
    assert "is not a valid task" in capsys.readouterr().err
    assert runtime.uploads == ["input_data/my-calls/calls.csv"]


def test_a_duplicate_run_says_where_the_earlier_results_are_and_force_reruns(tmp_path, capsys, runtime, monkeypatch):
    source = tmp_path / "calls.csv"
    write_input(source, 5)
    results = tmp_path / "results"
    (results / "calls-0123456789abcdef0123").mkdir(parents=True)  # where `run` downloaded the earlier results

    assert main(["run", str(source), "--out", str(results)]) == 1
    out = capsys.readouterr().out
    assert "already has run 0123456789abcdef0123 (SUCCEEDED); nothing was done." in out
    assert f"results     s3://{CUSTOMER}/output_data/2025-01-02/calls-0123456789abcdef0123/" in out
    assert f"downloaded  {results / 'calls-0123456789abcdef0123'}/" in out
    assert "add --force: it is then uploaded as input_data/calls-rerun-<UTC time>.csv" in out

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    monkeypatch.setattr(run_command, "datetime", Frozen)
    main(["run", str(source), "--out", str(results), "--force"])
    main(["run", str(source), "--out", str(results), "--force"])  # in the same second: a key of its own again
    assert runtime.uploads[1:] == [
        "input_data/calls-rerun-20250102T030405Z.csv",
        "input_data/calls-rerun-20250102T030405Z-2.csv",
    ]


def test_run_help_explains_force():
    done = subprocess.run(
        [sys.executable, "-m", "batch_classifier_cli", "run", "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(done.stdout.split())
    assert "--force" in text and "ETag" in text and "<name>-rerun-<UTC time>.<ext>" in text


# --- 8. output cut short -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["tasks", "show", "travel"], ["tasks"]])
def test_a_reader_that_stops_reading_ends_the_command_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has its lines
    try:
        done = subprocess.run(
            [sys.executable, "-m", "batch_classifier_cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141  # what a shell reports for a command stopped by SIGPIPE


# --- 9. executions, show, query, serve ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["executions"], ["show", "calls-1"], ["query", "SELECT 1"], ["executions", "--json"]])
def test_read_only_commands_outside_the_project_say_no_runtime_is_found(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no local runtime found from here: `batch-classifier serve` records where it")
    assert "deploys that template" not in err and err.count("\n") == 1


class _History:
    """A served runtime's Step Functions with one finished execution of two states."""

    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    arn = "arn:aws:states:us-east-1:123456789012:execution:machine:calls-1"

    def get_paginator(self, operation: str) -> Any:
        """One page: the operation's whole answer."""
        return SimpleNamespace(paginate=lambda **kwargs: [getattr(self, operation)(**kwargs)])

    def list_state_machines(self) -> dict[str, Any]:
        return {"stateMachines": [{"name": "machine", "stateMachineArn": "arn:machine"}]}

    def list_executions(self, stateMachineArn: str) -> dict[str, Any]:  # noqa: N803
        return {"executions": [self._execution()]}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        return {**self._execution(), "input": json.dumps({"key": "input_data/calls.csv"})}

    def get_execution_history(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        at = self.started
        return {
            "events": [
                {"type": "TaskStateEntered", "timestamp": at, "stateEnteredEventDetails": {"name": "RegisterRun"}},
                {"type": "TaskStateExited", "timestamp": at, "stateExitedEventDetails": {"name": "RegisterRun"}},
            ]
        }

    def _execution(self) -> dict[str, Any]:
        return {
            "executionArn": self.arn,
            "name": "calls-1",
            "status": "SUCCEEDED",
            "startDate": self.started,
            "stopDate": self.started.replace(second=7),
        }


def test_executions_and_show_print_json(capsys, monkeypatch):
    served = SimpleNamespace(client=lambda service: _History())
    monkeypatch.setattr(runtimes, "running_server", lambda: served)
    assert main(["executions", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "name": "calls-1",
            "arn": _History.arn,
            "state_machine": "machine",
            "status": "SUCCEEDED",
            "started": "2025-01-02T03:04:05+00:00",
            "stopped": "2025-01-02T03:04:07+00:00",
            "seconds": 2.0,
            "file": "input_data/calls.csv",
        }
    ]
    assert main(["show", "calls-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["status"], shown["seconds"]) == ("calls-1", "SUCCEEDED", 2.0)
    assert [(s["name"], s["type"], s["status"]) for s in shown["states"]] == [("RegisterRun", "Task", "succeeded")]


def test_serve_gives_real_values_for_the_outputs_moto_leaves_out(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        lambda_ = boto3.client("lambda", region_name=REGION)
        layer = lambda_.publish_layer_version(
            LayerName="stack-CommonLayer0123-ABC", Content={"ZipFile": b"PK\x05\x06" + b"\x00" * 18}
        )
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput={"Name": "batch_classifier"})
        glue.create_table(DatabaseName="batch_classifier", TableInput={"Name": "results"})
        boto3.client("athena", region_name=REGION).create_work_group(Name="batch-classifier-local")
        outputs = {"RunsTableName": TABLE, "CommonLayerArn": "<moto.awslambda.models.LayerVersion object at 0x7f>"}

        fixed = local_commands.stack_outputs(lambda service: boto3.client(service, region_name=REGION), outputs)
    assert fixed == {
        "RunsTableName": TABLE,
        "CommonLayerArn": layer["LayerVersionArn"],
        "AnalyticsDatabaseName": "batch_classifier",
        "AnalyticsTableName": "results",
        "AthenaWorkGroupName": "batch-classifier-local",
    }
    assert fixed["CommonLayerArn"].startswith("arn:aws:lambda:") and fixed["CommonLayerArn"].endswith(":1")


# --- 10. a task with one category ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "count"), [("[{name: Only, description: the only one}]", 1), ("[]", 0), ("", 0)]
)
def test_a_task_with_too_few_categories_says_so_in_the_users_words(tmp_path, capsys, categories, count):
    task = tmp_path / "one.yaml"
    task.write_text(
        f"name: one\npersona: You classify.\ncategories: {categories}\ninput:\n  text_columns: [conversation]\n",
        encoding="utf-8",
    )
    source = tmp_path / "calls.csv"
    write_input(source, 5)
    assert main(["prepare", str(source), "--task", str(task), "--out", str(tmp_path / "prep")]) == 1
    assert capsys.readouterr().err == f"error: a task needs at least 2 categories; task file 'one.yaml' has {count}.\n"
