"""ConvertInput: stream the uploaded file into canonical records, distinct texts and rejects."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import convert_input
from batch_classifier.settings import settings
from batch_classifier.workflow import RunInput


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RunInput.model_validate(event)
    annotate(request.run.run_id)
    counts = convert_input(request.run, aws.s3(), aws.status_store(), settings())
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=counts["rows"])
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=counts["invalid"])
    return counts
