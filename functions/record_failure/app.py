"""RecordFailure (EventBridge: an execution FAILED, TIMED_OUT or ABORTED): mark its run FAILED and tell the topic.

Only ConvertInput's input errors are caught inside the workflow; every other failure stops the execution where it
happened, so a redrive resumes there. This function records and announces those stops, and stops the Bedrock
batch jobs of an aborted or timed-out execution (a failed one keeps them for its redrive).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.failures import record_failure
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = record_failure(
        event, aws.status_store(), aws.sns(), settings().run_events_topic_arn, bedrock=aws.bedrock()
    )
    if result["run_id"]:
        annotate(result["run_id"])
    logger.append_keys(execution=result["execution"])
    logger.info("execution failure", extra={k: v for k, v in result.items() if k not in {"execution", "run_id"}})
    if result["recorded"]:
        metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    if result["notified"] and not result["recorded"]:
        metrics.add_metric(name="UnregisteredRunsFailed", unit=MetricUnit.Count, value=1)
    if result.get("jobs_stopped"):
        metrics.add_metric(name="BatchJobsStopped", unit=MetricUnit.Count, value=len(result["jobs_stopped"]))
    return result
