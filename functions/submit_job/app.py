"""SubmitJob (in a shard's child workflow of ProcessShards): write the shard's job input and create its job.

Idempotent: a shard that already has a job keeps it, and a redriven execution never bills a second job. A
quota refusal leaves the shard queued for CheckJob; a request Bedrock rejects for good raises
``JobSubmissionError``. Returns the shard's ``$.job``: ``{status, done, wait_seconds}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import submit_job
from batch_classifier.settings import settings
from batch_classifier.workflow import ShardInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ShardInput.model_validate(event)
    run, shard = request.run, request.shard
    annotate(run.run_id, shard.name)
    job = submit_job(run, shard, aws.s3(), aws.bedrock(), aws.status_store(), settings())
    logger.info("shard submission", extra={"status": job.status, "records": shard.records})
    metrics.add_metric(name="JobsQueued" if job.status == "QUEUED" else "JobsSubmitted", unit=MetricUnit.Count, value=1)
    return dump(job)
