"""The local runtime's settings on `run` and `serve`: parameter overrides checked against template.yaml, the
simulated batch job duration and the time scale; and how an upload's execution is told from the others."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from batch_classifier_cli.main import _parser
from batch_classifier_cli.runtimes import (
    LocalRuntimeError,
    RunSettings,
    parse_duration,
    parse_overrides,
    parse_time_scale,
)
from batch_classifier_local.runtime import ParameterError, check_parameters, is_execution_of
from batch_classifier_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(ROOT / "template.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("48h", 172_800), ("2d", 172_800), ("1.5h", 5400), (" 10 S ", 10), (".5m", 30)],
)
def test_durations_take_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["48", "h", "48 hours", "-1h", "1w", ""])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="90s, 30m, 48h, 2d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "-0.1", "nan", "inf", "fast"])
def test_the_time_scale_is_a_positive_number(text: str) -> None:
    assert parse_time_scale("1e-5") == 1e-5
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time_scale(text)


def test_overrides_are_key_value_pairs_as_sam_deploy_takes_them() -> None:
    assert parse_overrides(["MaxRecordsPerJob=100", "ParameterKey=OutputFormats,ParameterValue=csv,json"]) == {
        "MaxRecordsPerJob": "100",
        "OutputFormats": "csv,json",
    }
    assert parse_overrides(["ModelId="]) == {"ModelId": ""}
    assert parse_overrides(None) == {}
    with pytest.raises(LocalRuntimeError, match="Key=Value"):
        parse_overrides(["sample.csv"])


def test_overrides_are_checked_against_the_template(template: dict) -> None:
    check_parameters(template, {"MaxRecordsPerJob": "100", "MinRecordsPerJob": "10", "MaxConcurrentJobs": "3"})
    check_parameters(template, {"Stage": "dev", "OutputFormats": "csv,parquet", "JobTimeoutHours": "72"})
    refused = {
        "MaxRecordPerJob": "no parameter 'MaxRecordPerJob'; its parameters are: ",
        "Stage": "Stage must be one of sandbox, dev, prod, not 'qa'.",
        "OutputFormats": "OutputFormats must match",
        "JobTimeoutHours": "JobTimeoutHours must be from 24 to 168, not 200.",
        "MaxConcurrentJobs": "MaxConcurrentJobs is a Number, not 'many'.",
        "MinRecordsPerJob": "MinRecordsPerJob must be at least 1, not 0.",
    }
    values = {"Stage": "qa", "OutputFormats": "csv,pdf", "JobTimeoutHours": "200", "MaxConcurrentJobs": "many"}
    for name, message in refused.items():
        with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
            check_parameters(template, {name: values.get(name, "0")})


def test_run_and_serve_take_the_runtime_settings() -> None:
    parser = _parser()
    args = parser.parse_args(
        [
            "run",
            "calls.csv",
            "--parameter-overrides",
            "MaxRecordsPerJob=100",
            "MinRecordsPerJob=10",
            "--job-duration",
            "48h",
            "--time-scale",
            "1e-5",
            "--parameter-overrides",
            "MaxConcurrentJobs=3",
        ]
    )
    assert args.file == "calls.csv"
    assert args.parameter_overrides == ["MaxRecordsPerJob=100", "MinRecordsPerJob=10", "MaxConcurrentJobs=3"]
    assert (args.job_duration, args.time_scale) == (172_800, 1e-5)
    served = parser.parse_args(["serve", "--job-duration", "30m"])
    assert (served.parameter_overrides, served.job_duration, served.time_scale) == (None, 1800, None)


def test_the_help_documents_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "serve"):
        with pytest.raises(SystemExit):
            _parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--parameter-overrides KEY=VALUE [KEY=VALUE ...]" in text
        assert "--job-duration DURATION" in text and "48h" in text
        assert "--time-scale FACTOR" in text


def test_an_unknown_override_fails_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    args = _parser().parse_args(["run", "calls.csv", "--parameter-overrides", "MaxRecords=100"])
    with pytest.raises(LocalRuntimeError, match=r"^template.yaml has no parameter 'MaxRecords'; .*\.$"):
        RunSettings.from_args(args)


def test_a_job_duration_past_the_job_timeout_is_announced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    settings = RunSettings.from_args(_parser().parse_args(["serve", "--job-duration", "48h"]))
    assert settings.runtime_options() == {"parameters": {}, "job_duration_seconds": 172_800}
    assert "outlast JobTimeoutHours=24: they will end Expired at 24h" in capsys.readouterr().err
    RunSettings.from_args(
        _parser().parse_args(["serve", "--job-duration", "48h", "--parameter-overrides", "JobTimeoutHours=72"])
    )
    assert capsys.readouterr().err == ""


def test_run_refuses_settings_a_running_serve_was_not_started_with() -> None:
    served = {"parameters": {"MaxRecordsPerJob": "100"}, "job_duration_seconds": 3600.0, "time_scale": 0.001}
    RunSettings().check_served(served)  # nothing asked: serve's settings apply
    RunSettings({"MaxRecordsPerJob": "100"}, 3600.0, 0.001).check_served(served)  # the same: fine
    with pytest.raises(LocalRuntimeError, match=r"--parameter-overrides \(serve has: MaxRecordsPerJob=100\)"):
        RunSettings({"MaxRecordsPerJob": "50"}).check_served(served)
    with pytest.raises(LocalRuntimeError, match=r"--job-duration \(serve has: 1h\), --time-scale \(serve has: 0.001\)"):
        RunSettings(job_duration_seconds=7200.0, time_scale=1e-5).check_served(served)
    with pytest.raises(LocalRuntimeError, match=r"serve has: none"):
        RunSettings({"MaxConcurrentJobs": "3"}).check_served({})


def test_an_execution_is_told_by_the_key_and_etag_of_its_upload() -> None:
    execution_input = json.dumps({"bucket": "b", "key": "input_data/calls.csv", "etag": "abc-2", "size": 9})
    assert is_execution_of(execution_input, "input_data/calls.csv", '"abc-2"')
    assert not is_execution_of(execution_input, "input_data/calls.csv", "abc-3")
    assert not is_execution_of(execution_input, "input_data/other.csv", "abc-2")
    encoded = json.dumps({"key": "input_data/my+calls%282%29.csv", "etag": "e"})
    assert is_execution_of(encoded, "input_data/my calls(2).csv", "e")
    assert not is_execution_of("not json", "k", "e")
    assert not is_execution_of(None, "k", "e")
