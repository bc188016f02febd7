"""CheckJobs (in the WaitForJobs loop): poll the round's batch jobs and submit queued shards into free slots.

Returns the new ``$.poll``: ``{done, wait_seconds, open, queued, statuses}``; ``AllJobsDone?`` loops back to
the Wait until ``done``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_classifier import aws
from batch_classifier.bedrock import check_jobs, run_invocation
from batch_classifier.observability import MetricUnit, annotate, logger, metrics, tracer
from batch_classifier.settings import settings
from batch_classifier.workflow import PollInput, dump


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    payload = PollInput.model_validate(event)
    run = payload.run
    annotate(run.run_id)
    config = settings()
    model_id, invocation_type = run_invocation(aws.s3(), config, run.run_id)
    poll = check_jobs(
        aws.bedrock(),
        aws.status_store(),
        config,
        run,
        payload.poll,
        task_model_id=model_id,
        invocation_type=invocation_type,
    )
    logger.info(
        "jobs checked",
        extra={"done": poll.done, "open": poll.open, "queued": poll.queued, "statuses": poll.statuses},
    )
    metrics.add_metric(name="OpenJobs", unit=MetricUnit.Count, value=poll.open)
    metrics.add_metric(name="QueuedJobs", unit=MetricUnit.Count, value=poll.queued)
    return dump(poll)
