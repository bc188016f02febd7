"""ProcessShard (the end of a shard's child workflow): judge its batch output, or classify an on-demand shard."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import process_shard
from batch_classifier.settings import settings
from batch_classifier.workflow import ShardInput


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ShardInput.model_validate(event)
    annotate(request.run.run_id, request.shard.name)
    # On-demand calls work to the invocation's remaining time (a context without the method: Lambda's longest).
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    outcome = process_shard(
        request.run, request.shard, aws.s3(), aws.bedrock_runtime(), aws.status_store(), settings(), remaining_ms
    )
    metrics.add_metric(name="RetryableRecords", unit=MetricUnit.Count, value=outcome["retryable"])
    metrics.add_metric(name="UnsentRecords", unit=MetricUnit.Count, value=outcome["unsent"])
    return outcome
