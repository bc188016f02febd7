"""The AWS clients of a function, made once per container on first use.

Handlers take their clients from here; tests either pass clients to the domain functions directly or call
``reset()`` inside a moto context so the next call builds clients against the mock.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from .settings import settings
from .status import StatusStore

# Bedrock runtime calls are retried by our own backoff (per record, within the invocation's time budget), so the
# SDK makes one attempt: SDK retries under our retries would multiply the time one record can take.
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=60)


@cache
def s3() -> Any:
    return boto3.client("s3")


@cache
def status_store() -> StatusStore:
    return StatusStore(boto3.resource("dynamodb").Table(settings().runs_table))


@cache
def sns() -> Any:
    return boto3.client("sns")


@cache
def bedrock() -> Any:
    return boto3.client("bedrock")


@cache
def bedrock_runtime() -> Any:
    return boto3.client("bedrock-runtime", config=_RUNTIME_CONFIG)


def reset() -> None:
    """Forget every client (and the settings), e.g. between tests."""
    for made in (s3, status_store, sns, bedrock, bedrock_runtime, settings):
        made.cache_clear()
