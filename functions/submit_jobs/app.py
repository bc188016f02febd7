"""SubmitJob (one iteration of the SubmitJobs Map): create the batch inference job of one shard.

Idempotent: a shard that already has a job keeps it, and a redriven execution never bills a second job. A
quota refusal leaves the shard queued for CheckJobs; a request Bedrock rejects for good raises
``JobSubmissionError``. The Map discards the result; it is returned for logs and tests.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.bedrock import Submission, run_invocation, submit_shard
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.settings import settings
from batch_classifier.workflow import ShardInput, dump

_METRIC_NAMES = {
    Submission.SUBMITTED: "JobsSubmitted",
    Submission.EXISTING: "JobsAlreadySubmitted",
    Submission.QUEUED: "JobsQueued",
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    payload = ShardInput.model_validate(event)
    run, shard = payload.run, payload.shard
    annotate(run.run_id, shard.name)
    config = settings()
    model_id, invocation_type = run_invocation(aws.s3(), config, run.run_id)
    outcome = submit_shard(
        aws.bedrock(),
        aws.status_store(),
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
