"""CheckJobs (in the WaitForJobs loop): poll the round's batch jobs and submit queued shards into free slots.

Returns the new ``$.poll``: ``{done, wait_seconds, open, queued, statuses}``; ``AllJobsDone?`` loops back to
the Wait until ``done``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier.bedrock import check_jobs, run_invocation
from batch_classifier.settings import settings
from batch_classifier.status import StatusStore
from batch_classifier.workflow import PollInput, dump

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _bedrock() -> Any:
    return boto3.client("bedrock")


@cache
def _s3() -> Any:
    return boto3.client("s3")


@cache
def _store() -> StatusStore:
    return StatusStore(boto3.resource("dynamodb").Table(settings().runs_table))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    payload = PollInput.model_validate(event)
    run = payload.run
    logger.append_keys(run_id=run.run_id)
    tracer.put_annotation(key="run_id", value=run.run_id)
    config = settings()
    model_id, invocation_type = run_invocation(_s3(), config, run.run_id)
    poll = check_jobs(
        _bedrock(),
        _store(),
        config,
        run,
        payload.poll,
        task_model_id=model_id,
        invocation_type=invocation_type,
    )
    logger.info(
        "jobs checked",
        extra={"done": poll.done, "open": poll.open, "queued": poll.queued, "statuses": poll.statuses},
    )
    metrics.add_metric(name="OpenJobs", unit=MetricUnit.Count, value=poll.open)
    metrics.add_metric(name="QueuedJobs", unit=MetricUnit.Count, value=poll.queued)
    return dump(poll)
