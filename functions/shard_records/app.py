"""ShardRecords: plan the distinct texts into Bedrock batch jobs and an on-demand remainder, listed in S3."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import shard_records
from batch_classifier.settings import settings
from batch_classifier.workflow import RunInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RunInput.model_validate(event)
    annotate(request.run.run_id)
    plan = shard_records(request.run, aws.s3(), aws.status_store(), settings())
    logger.info("shards planned", extra={"shards": plan.shards, "batch_jobs": plan.batch_jobs})
    metrics.add_metric(name="BatchShards", unit=MetricUnit.Count, value=plan.batch_jobs)
    return dump(plan)
