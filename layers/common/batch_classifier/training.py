"""From reviewed results to labelled data: ``merge-reviews`` puts a reviewer's marks back into a run's results, and
``export-training`` draws a class-balanced training set from the rows whose label can be trusted.

Merging (:class:`ReviewMerger`) matches the rows of a review workbook to the results by ``id`` and gives every row
a ``label`` and where it comes from, ``label_source``:

- a ``review_label`` is the row's label (``reviewed``), whatever the model said;
- ``verdict`` ``correct`` without a label keeps the prediction (``reviewed``);
- ``wrong`` or ``unsure`` without a label leaves the row unlabelled and still flagged ``needs_review``;
- a row no reviewer marked keeps the prediction (``model``) when it was classified and not flagged
  ``needs_review``; otherwise it stays unlabelled.

A review of an id the results do not have, a ``review_label`` that is not one of the task's categories, a verdict
other than correct / wrong / unsure, or two different reviews of one id are errors that name the rows
(:class:`ReviewMergeError`): nothing is written then.

The training set (:class:`TrainingSampler`) takes from a merged file the labelled rows (reviewed rows always, the
model's when their confidence is at least ``--min-confidence``), or from a results file the classified rows not
flagged ``needs_review``; then up to N rows a class, reviewed rows first, each group drawn by reservoir sampling with
a seeded generator (the same file and seed give the same rows), written in file order. Memory holds at most 2N
rows a class, whatever the file's size.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .confidence import CONFIDENCE_COLUMN, NEEDS_REVIEW_COLUMN
from .errors import BatchClassifierError
from .evaluation import REVIEW_LABEL_COLUMN, REVIEW_NOTE_COLUMN, VERDICT_COLUMN, ReviewVerdict
from .records import RowStatus
from .review_queue import flagged
from .xlsx_writer import with_review_columns

LABEL_COLUMN = "label"
LABEL_SOURCE_COLUMN = "label_source"
_SHOWN = 5  # rows named in an error


class LabelSource(StrEnum):
    MODEL = "model"
    REVIEWED = "reviewed"


class ReviewMergeError(BatchClassifierError):
    """A review workbook that cannot be merged into the results (unknown ids, labels not in the task, ...)."""


def row_key(value: Any) -> str | None:
    """A row id as both files hold it: text, a whole number read back as ``12.0`` as ``12``, without the quote a
    spreadsheet writer puts before a value that starts like a formula."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t\r":
        text = text[1:]
    return text or None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Review:
    """What a reviewer marked on one row."""

    label: str | None
    verdict: str | None
    note: str | None


def read_reviews(rows: Iterable[Mapping[str, Any]], categories: Sequence[str]) -> dict[str, Review]:
    """The marked rows of a review workbook by id (rows without a label, verdict or note are left out)."""
    known, verdicts = set(categories), {v.value for v in ReviewVerdict}
    reviews: dict[str, Review] = {}
    off_task: list[str] = []
    bad_verdicts: list[str] = []
    twice: list[str] = []
    for number, row in enumerate(rows, start=2):  # the header is the sheet's first row
        label, note = _text(row.get(REVIEW_LABEL_COLUMN)), _text(row.get(REVIEW_NOTE_COLUMN))
        verdict = (_text(row.get(VERDICT_COLUMN)) or "").lower() or None
        if label is None and verdict is None and note is None:
            continue
        key = row_key(row.get("id"))
        if key is None:
            raise ReviewMergeError(f"row {number} of the review workbook is marked but has no id.")
        if label is not None and label not in known:
            off_task.append(f"{key} ({label!r})")
        if verdict is not None and verdict not in verdicts:
            bad_verdicts.append(f"{key} ({verdict!r})")
        review = Review(label, verdict, note)
        if reviews.get(key, review) != review:
            twice.append(key)
        reviews[key] = review
    if off_task:
        raise ReviewMergeError(
            f"{len(off_task)} review labels are not categories of the task: {_names(off_task)}; "
            f"the task's categories are: {', '.join(categories)}."
        )
    if bad_verdicts:
        raise ReviewMergeError(
            f"{len(bad_verdicts)} verdicts are not correct, wrong or unsure: {_names(bad_verdicts)}."
        )
    if twice:
        raise ReviewMergeError(f"{len(twice)} ids are reviewed twice, differently: {_names(twice)}.")
    return reviews


def _names(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


@dataclass
class MergeCounts:
    rows: int = 0
    model: int = 0
    reviewed_label: int = 0
    reviewed_correct: int = 0
    still_flagged: int = 0  # unlabelled, and still needs review
    not_classified: int = 0  # unlabelled: no answer and no review


class ReviewMerger:
    """Gives each results row its ``label`` and ``label_source`` from the reviews (see the module's notes)."""

    def __init__(self, reviews: Mapping[str, Review], prediction_column: str = "class") -> None:
        self.reviews = reviews
        self.prediction = prediction_column
        self.counts = MergeCounts()
        self._unseen = set(reviews)

    @staticmethod
    def columns(columns: Sequence[str]) -> list[str]:
        """The merged file's columns: the results' (a column of their own named ``label`` or ``label_source``
        gets an ``input_`` prefix), the reviewer's, then ``label`` and ``label_source``."""
        kept = [f"input_{c}" if c in (LABEL_COLUMN, LABEL_SOURCE_COLUMN) else c for c in columns]
        if NEEDS_REVIEW_COLUMN not in kept:
            kept.append(NEEDS_REVIEW_COLUMN)
        return [*with_review_columns(kept), LABEL_COLUMN, LABEL_SOURCE_COLUMN]

    def merge(self, row: Mapping[str, Any]) -> dict[str, Any]:
        merged = {f"input_{k}" if k in (LABEL_COLUMN, LABEL_SOURCE_COLUMN) else k: v for k, v in row.items()}
        key = row_key(row.get("id"))
        review = self.reviews.get(key) if key is not None else None
        if key is not None:
            self._unseen.discard(key)
        prediction = _text(row.get(self.prediction))
        classified = str(row.get("status") or RowStatus.CLASSIFIED.value) == RowStatus.CLASSIFIED.value
        label: str | None = None
        source: LabelSource | None = None
        still_flagged = flagged(row)
        if review is not None:
            merged.update(
                {REVIEW_LABEL_COLUMN: review.label, VERDICT_COLUMN: review.verdict, REVIEW_NOTE_COLUMN: review.note}
            )
        if review is not None and review.label is not None:
            label, source, still_flagged = review.label, LabelSource.REVIEWED, False
            self.counts.reviewed_label += 1
        elif review is not None and review.verdict == ReviewVerdict.CORRECT and prediction is not None:
            label, source, still_flagged = prediction, LabelSource.REVIEWED, False
            self.counts.reviewed_correct += 1
        elif review is not None and review.verdict is not None:  # wrong or unsure, without the right label
            still_flagged = True
        elif classified and prediction is not None and not still_flagged:
            label, source = prediction, LabelSource.MODEL
            self.counts.model += 1
        if label is None:
            if still_flagged:
                self.counts.still_flagged += 1
            else:
                self.counts.not_classified += 1
        self.counts.rows += 1
        merged[NEEDS_REVIEW_COLUMN] = still_flagged
        merged[LABEL_COLUMN] = label
        merged[LABEL_SOURCE_COLUMN] = source.value if source else None
        return merged

    def check_all_found(self) -> None:
        """Every review's id was among the results (call after the last row)."""
        if self._unseen:
            unknown = sorted(self._unseen)
            raise ReviewMergeError(
                f"{len(unknown)} reviewed ids are not in the results: {_names(unknown)}; "
                "is the review workbook from this run?"
            )


# --- the training set ----------------------------------------------------------------------------------


def _confidence(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class _Group:
    """A reservoir of up to ``size`` rows (row number, row) and how many rows it saw."""

    size: int
    seen: int = 0
    kept: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def offer(self, item: tuple[int, dict[str, Any]], rng: random.Random) -> None:
        self.seen += 1
        if len(self.kept) < self.size:
            self.kept.append(item)
            return
        at = rng.randrange(self.seen)
        if at < self.size:
            self.kept[at] = item


@dataclass(frozen=True)
class ClassDraw:
    name: str
    eligible: int
    reviewed: int
    model: int

    @property
    def chosen(self) -> int:
        return self.reviewed + self.model


class TrainingSampler:
    """Draws up to ``per_class`` trusted rows a class (see the module's notes)."""

    def __init__(
        self,
        per_class: int,
        *,
        min_confidence: float | None = None,
        seed: int = 1,
        prediction_column: str = "class",
    ) -> None:
        if per_class < 1:
            raise BatchClassifierError(f"--per-class must be at least 1, not {per_class}.")
        self.per_class = per_class
        self.min_confidence = min_confidence
        self.prediction = prediction_column
        self.seed = seed
        self._rng = random.Random(seed)
        self._groups: dict[str, dict[LabelSource, _Group]] = {}
        self.rows = 0

    def trusted(self, row: Mapping[str, Any]) -> tuple[str, LabelSource] | None:
        """The row's label and its source when the row may go in the training set."""
        if LABEL_SOURCE_COLUMN in row:  # a merged file
            label, source = _text(row.get(LABEL_COLUMN)), _text(row.get(LABEL_SOURCE_COLUMN))
            if label is None or source not in (LabelSource.MODEL, LabelSource.REVIEWED):
                return None
            if source == LabelSource.REVIEWED:
                return label, LabelSource.REVIEWED
        else:  # a results file: the model's classified rows not flagged for review
            label = _text(row.get(self.prediction))
            if label is None or str(row.get("status") or "") != RowStatus.CLASSIFIED.value or flagged(row):
                return None
        if self.min_confidence is not None:
            sure = _confidence(row.get(CONFIDENCE_COLUMN))
            if sure is None or sure < self.min_confidence:
                return None
        return label, LabelSource.MODEL

    def offer(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        found = self.trusted(row)
        if found is None:
            return
        label, source = found
        groups = self._groups.setdefault(label, {s: _Group(self.per_class) for s in LabelSource})
        written = dict(row)
        written[LABEL_COLUMN], written[LABEL_SOURCE_COLUMN] = label, source.value
        groups[source].offer((self.rows, written), self._rng)

    def draw(self, classes: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[ClassDraw]]:
        """The chosen rows in file order, and each class's counts (``classes`` first, in their order, then the
        others found)."""
        chosen: list[tuple[int, dict[str, Any]]] = []
        counts: list[ClassDraw] = []
        for name in [*classes, *sorted(set(self._groups) - set(classes))]:
            groups = self._groups.get(name)
            if groups is None:
                counts.append(ClassDraw(name, 0, 0, 0))
                continue
            reviewed = sorted(groups[LabelSource.REVIEWED].kept, key=lambda item: item[0])
            pool = groups[LabelSource.MODEL].kept
            wanted = min(max(self.per_class - len(reviewed), 0), len(pool))
            # A uniform part of a uniform sample, drawn by a generator of the class's own: the same rows whatever
            # order the classes are listed in.
            model = random.Random(f"{self.seed}:{name}").sample(pool, wanted)
            chosen.extend(reviewed + model)
            eligible = groups[LabelSource.REVIEWED].seen + groups[LabelSource.MODEL].seen
            counts.append(ClassDraw(name, eligible, len(reviewed), len(model)))
        chosen.sort(key=lambda item: item[0])
        return [row for _, row in chosen], counts


def training_columns(columns: Sequence[str]) -> list[str]:
    """The training set's columns: the source's, then ``label`` and ``label_source`` unless it has them."""
    return [*columns, *(c for c in (LABEL_COLUMN, LABEL_SOURCE_COLUMN) if c not in columns)]
