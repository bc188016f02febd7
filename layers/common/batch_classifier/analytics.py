"""The analytics table: one row per input row of every run, and one per control row, as FinalizeRun writes them to
``analytics/results/dt=<YYYY-MM-DD>/<run_id>.parquet`` in the internal bucket (the Glue table
``AnalyticsResultsTable`` of template.yaml, queried with Athena; locally with ``batch-classifier query``).

A control row (:mod:`.controls`) has ``control`` true, its label and whether the answer was ``correct``: control
accuracy by run, task version or model is ``avg(correct)`` over ``WHERE control``, and queries of the user's rows say
``WHERE NOT coalesce(control, false)`` (files written before the column existed read it as NULL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .confidence import CONFIDENCE_COLUMN, NEEDS_REVIEW_COLUMN
from .records import CanonicalRecord
from .tasks import Task
from .workflow import RunRef

#: The analytics table's columns and types: those of the Glue table ``AnalyticsResultsTable`` in template.yaml.
ANALYTICS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("task", pa.string()),
        ("source_key", pa.string()),
        ("row_id", pa.string()),
        ("class", pa.string()),
        ("rationale", pa.string()),
        ("status", pa.string()),
        ("match", pa.string()),
        ("label", pa.string()),
        ("correct", pa.bool_()),
        ("truncated", pa.bool_()),
        ("model_id", pa.string()),
        ("processed_at", pa.string()),
        ("task_version", pa.string()),
        (CONFIDENCE_COLUMN, pa.float64()),
        (NEEDS_REVIEW_COLUMN, pa.bool_()),
        ("control", pa.bool_()),
    ]
)
ANALYTICS_COLUMNS = tuple(ANALYTICS_SCHEMA.names)


def analytics_rows(
    run: RunRef, task: Task, processed_at: str
) -> Callable[[CanonicalRecord, dict[str, Any]], dict[str, Any]]:
    """The analytics row of one results row (or of a control row: ``record.control``) of ``run``; what is the same
    for every row (the task's version is a hash of the task) is worked out once."""
    version = task.version_id

    def analytics_row(record: CanonicalRecord, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "task": task.name,
            "source_key": run.key,
            "row_id": record.id,
            "class": row.get("class"),
            "rationale": row.get("rationale"),
            "status": row["status"],
            "match": row.get("match"),
            "label": record.label,
            "correct": row.get("correct"),
            "truncated": record.truncated,
            "model_id": task.model_id,
            "processed_at": processed_at,
            "task_version": version,
            CONFIDENCE_COLUMN: row.get(CONFIDENCE_COLUMN),
            NEEDS_REVIEW_COLUMN: bool(row.get(NEEDS_REVIEW_COLUMN)),
            "control": record.control,
        }

    return analytics_row
