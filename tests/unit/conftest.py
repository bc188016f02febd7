"""What the unit tests share: the environment the handlers expect (fixtures of every test: tests/conftest.py)."""

from __future__ import annotations

import os

# Powertools reads these when the handlers' module-level logger, tracer and metrics are made: set them before any
# test imports a handler. Tracing is off (no X-Ray daemon here); metrics go to stdout as EMF, as in Lambda.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "batch-classifier")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BatchClassifier")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
