"""CheckJob (in a shard's WaitForJob loop): submit the shard if still queued, else read its job's status.

Returns the shard's new ``$.job``: ``{status, done, wait_seconds}``; ``JobEnded?`` loops back to the Wait until
``done``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.bedrock import check_job, run_invocation
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.settings import settings
from batch_classifier.workflow import JobInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = JobInput.model_validate(event)
    run, shard = request.run, request.shard
    annotate(run.run_id, shard.name)
    config = settings()
    job = check_job(
        aws.bedrock(),
        aws.status_store(),
        config,
        run,
        shard,
        request.job,
        invocation=partial(run_invocation, aws.s3(), config, run.run_id),
    )
    logger.info("job checked", extra={"status": job.status, "done": job.done, "wait_seconds": job.wait_seconds})
    metrics.add_metric(name="JobChecks", unit=MetricUnit.Count, value=1)
    return dump(job)
