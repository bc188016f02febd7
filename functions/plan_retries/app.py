"""PlanRetries: send the records that failed for a retryable reason again, within the retry budget."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import plan_retries
from batch_classifier.settings import settings
from batch_classifier.workflow import RoundInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RoundInput.model_validate(event)
    annotate(request.run.run_id)
    plan = plan_retries(request.run, request.plan, aws.s3(), aws.status_store(), settings())
    metrics.add_metric(name="RetryShards", unit=MetricUnit.Count, value=plan.shards if plan.retry else 0)
    return dump(plan)
