"""The local runtime's fault plan: what to break, for tests and for users who rehearse failures.

One plan holds the faults of the local Bedrock (jobs, records, quotas, throttling, a slow model) and of the
Lambda functions (an error, a crash, a timeout, the next N invocations of a named function). Replace it at any
time: ``runtime.bedrock.faults = FaultPlan(...)``, ``POST /_local/faults`` on the local Bedrock, or
``batch-classifier faults set '<json>'`` against a running ``serve``. Its JSON form is :meth:`FaultPlan.to_dict`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

OPEN_STATUSES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
TERMINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
# Terminal statuses a fault plan may give a job.
INJECTABLE_STATUSES = TERMINAL_STATUSES
# The error a function fault raises unless the plan names another: a transient Lambda error, which the workflow
# retries (each Lambda task's Retry); a name it does not retry stops the execution for a redrive.
DEFAULT_FUNCTION_ERROR = "Lambda.ServiceException"


class FunctionFault(StrEnum):
    """How an invocation of a function goes wrong."""

    FAIL = "fail"  # Lambda answers with ``error`` without running the handler
    CRASH = "crash"  # the container dies as the invocation starts: Runtime.ExitError, nothing done
    TIMEOUT = "timeout"  # the handler runs to its end, then Lambda reports Sandbox.Timedout: its result is lost


@dataclass
class FunctionFaults:
    """The faults of one function: how many of its next invocations fail, crash or time out (in that order)."""

    fail: int = 0
    crash: int = 0
    timeout: int = 0
    error: str = DEFAULT_FUNCTION_ERROR

    def __post_init__(self) -> None:
        for kind in FunctionFault:
            setattr(self, kind.value, _count(kind.value, getattr(self, kind.value)))
        if not isinstance(self.error, str) or not self.error.strip():
            raise ValueError("error must be an error name such as 'Lambda.ServiceException'.")

    def take(self) -> FunctionFault | None:
        """The fault of the next invocation (counted down), or None."""
        for kind in FunctionFault:
            left = getattr(self, kind.value)
            if left > 0:
                setattr(self, kind.value, left - 1)
                return kind
        return None


@dataclass
class FaultPlan:
    """Faults to inject. A job's fate (status, record errors, missing and malformed lines) is fixed by the plan in
    force when it is created; the counters (quota refusals, throttled calls, function faults) go down as used.

    - ``job_statuses``: a substring of a job's name or input S3 URI → the terminal status the job ends with
      (Completed, Failed, PartiallyCompleted, Expired, Stopped); the first matching entry wins.
    - ``record_errors``: error code → how many records of every job fail with it (``{"429": 2, "400": 1}``);
      the first records of the job in input order get them, codes in the order given. A code of digits is
      written as a number (``"errorCode": 429``), any other as a string.
    - ``missing_records``: the last N records of every job are answered and counted, but their lines are
      absent from the output.
    - ``malformed_lines``: the first N output lines of every job are cut short (not JSON).
    - ``quota_refusals``: the next N CreateModelInvocationJob calls are refused (ServiceQuotaExceededException).
    - ``throttle_on_demand``: the next N InvokeModel/Converse calls get ThrottlingException (HTTP 429).
    - ``slow_on_demand_seconds``: every InvokeModel/Converse call takes at least this long (a slow model).
    - ``functions``: a function (its state name ``ProcessShard``, logical id ``ProcessShardFunction`` or folder
      ``process_shard``) → ``{"fail": N, "crash": N, "timeout": N, "error": "Lambda.ServiceException"}``.
    """

    job_statuses: dict[str, str] = field(default_factory=dict)
    record_errors: dict[str, int] = field(default_factory=dict)
    missing_records: int = 0
    malformed_lines: int = 0
    quota_refusals: int = 0
    throttle_on_demand: int = 0
    slow_on_demand_seconds: float = 0.0
    functions: dict[str, FunctionFaults] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.job_statuses, Mapping):
            raise ValueError("job_statuses must map a job name or input URI substring to a status.")
        for key, status in self.job_statuses.items():
            if not isinstance(key, str) or not key:
                raise ValueError("job_statuses keys must be non-empty strings.")
            if status not in INJECTABLE_STATUSES:
                raise ValueError(
                    f"job_statuses[{key!r}] is {status!r}; use one of {', '.join(sorted(INJECTABLE_STATUSES))}."
                )
        self.job_statuses = dict(self.job_statuses)
        if not isinstance(self.record_errors, Mapping):
            raise ValueError("record_errors must map an error code to a number of records.")
        errors: dict[str, int] = {}
        for code, count in self.record_errors.items():
            if not str(code).strip():
                raise ValueError("record_errors keys must be error codes such as '429'.")
            errors[str(code).strip()] = _count(f"record_errors[{code!r}]", count)
        self.record_errors = errors
        for name in ("missing_records", "malformed_lines", "quota_refusals", "throttle_on_demand"):
            setattr(self, name, _count(name, getattr(self, name)))
        slow = self.slow_on_demand_seconds
        if isinstance(slow, bool) or not isinstance(slow, int | float) or not 0 <= slow <= 900:
            raise ValueError(f"slow_on_demand_seconds must be a number of seconds from 0 to 900, not {slow!r}.")
        self.slow_on_demand_seconds = float(slow)
        if not isinstance(self.functions, Mapping):
            raise ValueError("functions must map a function name to its faults.")
        functions: dict[str, FunctionFaults] = {}
        for name, given in self.functions.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError("functions keys must be function names such as 'ProcessShard'.")
            functions[function_key(name)] = _function_faults(name, given)
        self.functions = functions

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        """A plan from its JSON form; unknown fields are refused (ValueError)."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault plan is a JSON object.")
        known = set(cls().to_dict())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault plan fields {unknown}; known: {sorted(known)}.")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_statuses": dict(self.job_statuses),
            "record_errors": dict(self.record_errors),
            "missing_records": self.missing_records,
            "malformed_lines": self.malformed_lines,
            "quota_refusals": self.quota_refusals,
            "throttle_on_demand": self.throttle_on_demand,
            "slow_on_demand_seconds": self.slow_on_demand_seconds,
            "functions": {
                name: {"fail": f.fail, "crash": f.crash, "timeout": f.timeout, "error": f.error}
                for name, f in self.functions.items()
            },
        }

    def status_for(self, *subjects: str) -> str | None:
        """The injected terminal status of a job whose name or input URI contains a key of ``job_statuses``."""
        for key, status in self.job_statuses.items():
            if any(key in subject for subject in subjects):
                return status
        return None

    def function_fault(self, logical_id: str) -> tuple[FunctionFault, str] | None:
        """The fault of the next invocation of the function ``logical_id`` (``ProcessShardFunction``), counted down,
        with the error name of a :attr:`FunctionFault.FAIL`."""
        with self._lock:
            faults = self.functions.get(function_key(logical_id))
            kind = faults.take() if faults is not None else None
            return None if kind is None or faults is None else (kind, faults.error)


def _function_faults(name: str, given: Any) -> FunctionFaults:
    if isinstance(given, FunctionFaults):
        return given
    if not isinstance(given, Mapping):
        raise ValueError(f'functions[{name!r}] must be an object such as {{"fail": 1}}.')
    unknown = sorted(set(given) - {"fail", "crash", "timeout", "error"})
    if unknown:
        raise ValueError(f"functions[{name!r}] has unknown fields {unknown}; known: crash, error, fail, timeout.")
    return FunctionFaults(**dict(given))


def function_key(name: str) -> str:
    """``ProcessShard``, ``ProcessShardFunction`` and ``process_shard`` → ``processshard``."""
    key = name.strip().replace("_", "").replace("-", "").lower()
    return key.removesuffix("function")


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, not {value!r}.")
    return value
