"""Settings of the deployed functions, read once from the environment.

``settings()`` reads and validates every variable the first time it is called and fails fast with a
message naming the missing or bad one; tests build a :class:`Settings` directly (or set the environment and
call ``settings.cache_clear()``), so no module needs reloading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from .errors import BatchClassifierError
from .formats import FileFormat
from .tasks import BatchLimits


class ConfigurationError(BatchClassifierError):
    """A setting the function needs is missing or invalid."""


@dataclass(frozen=True)
class Settings:
    runs_table: str
    customer_bucket: str
    internal_bucket: str
    default_task: str = "travel"
    model_id: str | None = None
    limits: BatchLimits = field(default_factory=BatchLimits)
    poll_min_seconds: int = 60
    poll_max_seconds: int = 900
    job_timeout_hours: int = 24
    max_retry_rounds: int = 2
    output_formats: tuple[FileFormat, ...] = (FileFormat.CSV,)
    #: Above this many rows FinalizeRun skips the XLSX output (with a warning): 2 sheets of 1,048,575 rows.
    xlsx_max_rows: int = 2_097_150
    max_upload_bytes: int = 10 * 1024**3
    max_rows_per_run: int = 5_000_000
    error_rows_percent: float = 5.0
    #: A run whose estimated cost is above this many US dollars is refused before anything is submitted (0: no cap).
    max_run_cost_usd: float = 0.0
    bedrock_role_arn: str = ""
    stage: str = "sandbox"
    run_events_topic_arn: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        try:
            limits = BatchLimits(
                min_records_per_job=_int(env, "MIN_RECORDS_PER_JOB", 100),
                max_records_per_job=_int(env, "MAX_RECORDS_PER_JOB", 50_000),
                max_bytes_per_file=_int(env, "MAX_BYTES_PER_FILE", 1_000_000_000),
                max_concurrent_jobs=_int(env, "MAX_CONCURRENT_JOBS", 10),
            )
        except ValueError as exc:
            raise ConfigurationError(f"the batch limits in the environment are invalid: {exc}") from None
        formats = []
        for name in _text(env, "OUTPUT_FORMATS", "csv").split(","):
            try:
                formats.append(FileFormat(name.strip().lower()))
            except ValueError:
                raise ConfigurationError(
                    f"OUTPUT_FORMATS names an unknown format {name.strip()!r}; "
                    f"use some of {', '.join(f.value for f in FileFormat)}."
                ) from None
        return cls(
            runs_table=_required(env, "RUNS_TABLE"),
            customer_bucket=_required(env, "CUSTOMER_BUCKET"),
            internal_bucket=_required(env, "INTERNAL_BUCKET"),
            default_task=_text(env, "DEFAULT_TASK", "travel"),
            model_id=_text(env, "MODEL_ID", "") or None,
            limits=limits,
            poll_min_seconds=_int(env, "POLL_MIN_SECONDS", 60),
            poll_max_seconds=_int(env, "POLL_MAX_SECONDS", 900),
            job_timeout_hours=_int(env, "JOB_TIMEOUT_HOURS", 24),
            max_retry_rounds=_int(env, "MAX_RETRY_ROUNDS", 2),
            output_formats=tuple(dict.fromkeys(formats)),
            xlsx_max_rows=_int(env, "XLSX_MAX_ROWS", 2_097_150),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 10 * 1024**3),
            max_rows_per_run=_int(env, "MAX_ROWS_PER_RUN", 5_000_000),
            error_rows_percent=_int(env, "ERROR_ROWS_PERCENT", 5),
            max_run_cost_usd=_number(env, "MAX_RUN_COST_USD", 0.0),
            bedrock_role_arn=_text(env, "BEDROCK_ROLE_ARN", ""),
            stage=_text(env, "STAGE", "sandbox"),
            run_events_topic_arn=_text(env, "RUN_EVENTS_TOPIC_ARN", ""),
        )


@cache
def settings() -> Settings:
    """The process's settings (read on first use)."""
    return Settings.from_env()


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"the environment variable {name} is not set; the template sets it for every function."
        )
    return value


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"the environment variable {name} must be a whole number, not {raw!r}.") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"the environment variable {name} must be a number, not {raw!r}.") from None
    if not value >= 0:
        raise ConfigurationError(f"the environment variable {name} must be 0 or more, not {raw!r}.")
    return value
