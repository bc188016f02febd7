"""The review queue of a run: ``review.xlsx``, a review workbook holding only the rows flagged ``needs_review``.

``collect`` writes it beside its results file and ``FinalizeRun`` in the run's output folder, in the layout of any
review workbook (``review_label`` drop-down of the task's categories, ``verdict``, ``review_note``; see
:mod:`.writers`). A run where no row needs review has none: the sink is dropped rather than published empty, and
the summary's ``review_queue`` says so. The marked workbook goes back into the results with
``batch-classifier merge-reviews`` (:mod:`.training`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .confidence import NEEDS_REVIEW_COLUMN
from .formats import FileFormat
from .writer_base import Row, TableSink, Target
from .writers import open_sink

#: The review queue's file name, beside the results.
REVIEW_QUEUE_NAME = "review.xlsx"
NO_QUEUE_NOTE = "no row needs review: review.xlsx was not written"


def flagged(row: Row) -> bool:
    """Whether a results row is flagged ``needs_review`` (a boolean, or its text as a results file read back)."""
    value = row.get(NEEDS_REVIEW_COLUMN)
    if isinstance(value, str):
        return value.strip().casefold() in {"true", "1", "yes"}
    return bool(value)


class ReviewQueue:
    """Writes the flagged rows of a results table to a review workbook, published at ``close`` only when it holds a
    row (an empty one is dropped)."""

    def __init__(
        self, target: Target, columns: Sequence[str], categories: Sequence[str], max_rows: int | None = None
    ) -> None:
        self.sink: TableSink = open_sink(
            FileFormat.XLSX, target, columns, xlsx_max_rows=max_rows, review_categories=list(categories)
        )

    @property
    def rows(self) -> int:
        return self.sink.rows

    def add(self, row: Row) -> bool:
        """Write ``row`` if it is flagged; whether it was."""
        if not flagged(row):
            return False
        self.sink.write(row)
        return True

    def close(self) -> int:
        """Publish the workbook if it holds a row (else drop it); the number of rows."""
        if self.sink.rows:
            return self.sink.close()
        self.sink.abort()
        return 0

    def abort(self) -> None:
        self.sink.abort()


def queue_summary(rows: int, written: str | None) -> dict[str, Any]:
    """The summary's ``review_queue``: the rows flagged and the workbook holding them (None, and why, when none)."""
    if rows and written:
        return {"rows": rows, "file": written}
    return {"rows": rows, "file": None, "note": NO_QUEUE_NOTE if not rows else "review.xlsx could not be written"}
