"""RegisterRun: record the run of an uploaded object; a second event for the same upload is a duplicate."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.runs import register_run
from batch_classifier.settings import settings
from batch_classifier.workflow import RegisterInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RegisterInput.model_validate(event)
    run = register_run(request.input, aws.status_store(), settings(), execution=request.execution)
    annotate(run.run_id)
    metrics.add_metric(name="DuplicateEvents" if run.duplicate else "RunsStarted", unit=MetricUnit.Count, value=1)
    return dump(run)
