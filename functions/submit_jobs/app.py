"""SubmitJob (one iteration of the SubmitJobs Map): create the batch inference job of one shard.

Idempotent: a shard that already has a job keeps it, and a redriven execution never bills a second job. A
quota refusal leaves the shard queued for CheckJobs; a request Bedrock rejects for good raises
``JobSubmissionError``. The Map discards the result; it is returned for logs and tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier.bedrock import Submission, run_invocation, submit_shard
from batch_classifier.settings import settings
from batch_classifier.status import StatusStore
from batch_classifier.workflow import ShardInput, dump

logger = Logger()
tracer = Tracer()
metrics = Metrics()

_METRIC_NAMES = {
    Submission.SUBMITTED: "JobsSubmitted",
    Submission.EXISTING: "JobsAlreadySubmitted",
    Submission.QUEUED: "JobsQueued",
}


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
    payload = ShardInput.model_validate(event)
    run, shard = payload.run, payload.shard
    logger.append_keys(run_id=run.run_id, shard=shard.name)
    tracer.put_annotation(key="run_id", value=run.run_id)
    tracer.put_annotation(key="shard", value=shard.name)
    config = settings()
    model_id, invocation_type = run_invocation(_s3(), config, run.run_id)
    outcome = submit_shard(
        _bedrock(),
        _store(),
        config,
        run,
        shard,
        model_id,
        invocation_type,
        max_open=config.limits.max_concurrent_jobs,
    )
    logger.append_keys(job_arn=outcome.job_arn, job_name=outcome.job_name)
    logger.info("shard submission", extra={"outcome": outcome.outcome.value, "records": shard.records})
    metrics.add_metric(name=_METRIC_NAMES[outcome.outcome], unit=MetricUnit.Count, value=1)
    return dump(outcome)
