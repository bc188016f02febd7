"""One Powertools setup for every function: logger, tracer and metrics, with the run's business keys.

Handlers import these instances (module scope, shared by a container's invocations). Record text is never
logged: only ids, counts and statuses.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "annotate", "logger", "metrics", "tracer"]


def annotate(run_id: str, shard: str | None = None) -> None:
    """Put the run (and shard) on every log line and on the trace, so both can be searched by them."""
    logger.append_keys(run_id=run_id)
    tracer.put_annotation(key="run_id", value=run_id)
    if shard is not None:
        logger.append_keys(shard=shard)
        tracer.put_annotation(key="shard", value=shard)
