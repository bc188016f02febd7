"""FinalizeRun: merge the verdicts in input order and write the results, summary and analytics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.finalize import finalize_run
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.settings import settings
from batch_classifier.workflow import RunInput


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RunInput.model_validate(event)
    annotate(request.run.run_id)
    result = finalize_run(request.run, aws.s3(), aws.status_store(), settings())
    metrics.add_metric(name="RowsWritten", unit=MetricUnit.Count, value=result["rows"])
    return result
