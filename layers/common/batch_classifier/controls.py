"""Control rows: labelled rows of the task's own, mixed into every run to measure its accuracy.

A task with ``controls:`` (:class:`~.tasks.ControlSettings`) names a labelled control file: in the workflow a key in
the customer bucket under ``config/controls/``, for ``prepare`` a path. Each run draws ``rows`` of its usable rows (a
text in the task's text columns, a label that is one of the task's categories) with a generator seeded by the run
(the run id; ``prepare``: the input file's name), so a run drawn again draws the same rows and two runs draw
different ones. A control file that is missing, cannot be read, lacks a column, has labels that are not categories
or has fewer usable rows than asked for is a :class:`~.errors.ControlFileError` before anything is submitted.

The drawn rows are mixed into the input as it is read (:func:`mix_controls`): each goes in at a position drawn in its
own slice of the input (the share of it read so far), so they spread over the run's texts and are cut into the same
jobs, packed into the same requests and retried like the user's texts. Each control row's text gets a text index of
its own (never shared with a user's text, see :meth:`~.mapping.TextIndex.reserve`), and its record goes to
``controls.jsonl``, never to ``records.jsonl``: the rows the user's outputs, row counts, statuses, review queue and
evaluation are made of hold no control row. Control records' ids are ``control:<row of the control file>``.

When results are joined (FinalizeRun, ``collect``) :class:`ControlTally` picks the control texts' verdicts out of the
merged verdicts and scores them (:func:`~.evaluation.evaluate`): ``summary.json``'s ``controls`` holds the rows, how
many were right, the accuracy, ``min_accuracy`` and ``degraded`` (accuracy below ``min_accuracy``).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from .errors import BatchClassifierError, ControlFileError, MissingColumnError
from .evaluation import evaluate
from .mapping import RecordMapper
from .readers import Table, open_table
from .records import CanonicalRecord, RowStatus, record_index
from .tasks import ControlSettings, InputMapping, Task

T = TypeVar("T")

#: Where the workflow reads control files: keys under this prefix of the customer bucket.
CONTROLS_PREFIX = "config/controls"
#: The ids of control records: a namespace of their own (they never reach a file the user's ids are in).
CONTROL_ID_PREFIX = "control:"
#: The control records of a run (beside ``records.jsonl``) or of a prepared folder.
CONTROLS_NAME = "controls.jsonl"
#: A control file is read whole to draw from: at most this many rows.
MAX_CONTROL_FILE_ROWS = 100_000
#: Wrong control answers the summary lists.
_WRONG_EXAMPLES = 10


def control_key(task: Task) -> str:
    """The customer-bucket key of the task's control file (:class:`ControlFileError` unless under
    ``config/controls/``)."""
    settings = _settings(task)
    key = settings.file.lstrip("/")
    if not key.startswith(f"{CONTROLS_PREFIX}/") or ".." in key.split("/"):
        raise ControlFileError(
            f"task {task.name!r} names the control file {settings.file!r}: the workflow reads control files from the "
            f"customer bucket under {CONTROLS_PREFIX}/; put it there (for example {CONTROLS_PREFIX}/{task.name}.csv) "
            "and name that key in controls.file."
        )
    return key


def read_controls(
    source: str | Path | IO[bytes], task: Task, seed: str, *, origin: str, name: str | None = None
) -> list[CanonicalRecord]:
    """The control rows a run mixes in: ``controls.rows`` usable rows of the control file ``source``, drawn with a
    generator seeded by ``seed``, in the file's order. ``origin`` names the file in messages."""
    settings = _settings(task)
    try:
        with open_table(source, name=name) as table:
            usable = _usable_rows(table, task, settings, origin)
    except ControlFileError:
        raise
    except (BatchClassifierError, OSError) as error:
        raise ControlFileError(f"the task's control file {origin} cannot be read: {error}") from None
    if len(usable) < settings.rows:
        raise ControlFileError(
            f"the task's control file {origin} has {len(usable):,} usable rows (a text and a label), fewer than the "
            f"{settings.rows:,} each run mixes in (controls.rows); add rows or lower controls.rows."
        )
    chosen = sorted(_rng(seed, "rows").sample(range(len(usable)), settings.rows))
    return [usable[i] for i in chosen]


def local_controls(task: Task, seed: str) -> list[CanonicalRecord]:
    """The control rows of ``prepare``: ``controls.file`` as a path (none when the task has no controls)."""
    if task.controls is None:
        return []
    path = Path(task.controls.file)
    if not path.is_file():
        raise ControlFileError(
            f"task {task.name!r} names the control file {task.controls.file!r}, which is not a file here; "
            "give its path (relative to the current folder) in controls.file."
        )
    return read_controls(path, task, seed, origin=repr(task.controls.file))


def _settings(task: Task) -> ControlSettings:
    if task.controls is None:
        raise ValueError(f"task {task.name!r} has no controls")
    return task.controls


def _usable_rows(table: Table, task: Task, settings: ControlSettings, origin: str) -> list[CanonicalRecord]:
    mapping = InputMapping(
        text_columns=task.input.text_columns,
        label_column=settings.label_column,
        carry_columns=(),
        max_text_chars=task.input.max_text_chars,
    )
    try:
        mapper = RecordMapper(mapping, table.columns, source=f"the task's control file {origin}")
    except MissingColumnError as error:
        raise ControlFileError(str(error)) from None
    categories = {name.casefold(): name for name in task.category_names}
    usable: list[CanonicalRecord] = []
    unknown: Counter[str] = Counter()
    for row in table.rows():
        if row.number > MAX_CONTROL_FILE_ROWS:
            raise ControlFileError(
                f"the task's control file {origin} has more than {MAX_CONTROL_FILE_ROWS:,} rows; keep a smaller one."
            )
        record = mapper.map(row)
        if record.status is RowStatus.INVALID_INPUT or record.label is None:
            continue
        category = categories.get(record.label.casefold())
        if category is None:
            unknown[record.label] += 1
            continue
        record.id, record.label, record.carry, record.control = f"{CONTROL_ID_PREFIX}{row.number}", category, {}, True
        usable.append(record)
    if unknown:
        shown = ", ".join(f"{label!r} ({count})" for label, count in unknown.most_common(5))
        raise ControlFileError(
            f"the task's control file {origin} has labels that are not categories of task {task.name!r}: {shown}; "
            f"its categories are {', '.join(task.category_names)}."
        )
    return usable


def _rng(seed: str, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{purpose}\x00{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def mix_controls(
    rows: Iterable[T], controls: Sequence[CanonicalRecord], fraction: Callable[[], float | None], seed: str
) -> Iterator[T | CanonicalRecord]:
    """The input's rows (or blocks of rows) with the control records mixed in: the i-th of n goes in once
    ``fraction()`` (the share of the input read) reaches a point drawn in ``[i/n, (i+1)/n)``; when the input cannot
    tell its share, or is read before a point is reached, the controls left go in at the end."""
    if not controls:
        yield from rows
        return
    rng, count = _rng(seed, "positions"), len(controls)
    pending = deque(((i + rng.random()) / count, control) for i, control in enumerate(controls))
    for row in rows:
        if pending:
            done = fraction()
            while pending and done is not None and done >= pending[0][0]:
                yield pending.popleft()[1]
        yield row
    for _, control in pending:
        yield control


def write_controls(out: IO[str], controls: Iterable[CanonicalRecord]) -> None:
    """The control records (with their text's record id) as JSON lines."""
    for control in controls:
        out.write(control.to_json())
        out.write("\n")


def load_controls(lines: Iterable[bytes | str]) -> list[CanonicalRecord]:
    controls = [CanonicalRecord.from_json(line) for line in lines if line.strip()]
    for control in controls:
        control.control = True
    return controls


@dataclass
class ControlTally:
    """The control rows' verdicts, picked out of a run's merged verdicts, and their score."""

    controls: Sequence[CanonicalRecord]
    categories: Sequence[str]
    min_accuracy: float | None = None
    found: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_index = {record_index(c.rid): c for c in self.controls if c.rid}

    def tap(self, verdicts: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """``verdicts`` passed through, keeping those of control texts (the join skips them: no record has them)."""
        for index, verdict in verdicts:
            if index in self._by_index:
                self.found[index] = verdict
            yield index, verdict

    def rows(self) -> Iterator[tuple[CanonicalRecord, Any]]:
        """Each control record with its verdict (None: missing from the model output)."""
        for control in self.controls:
            yield control, self.found.get(record_index(control.rid)) if control.rid else None

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``'s ``controls``: rows, correct, accuracy, min_accuracy, degraded, and what went wrong."""
        pairs: list[tuple[str | None, str | None]] = []
        by_status: Counter[str] = Counter()
        wrong: list[dict[str, Any]] = []
        for control, verdict in self.rows():
            status = verdict.status.value if verdict is not None else RowStatus.MODEL_ERROR.value
            answer = verdict.category if verdict is not None else None
            by_status[status] += 1
            pairs.append((control.label, answer))
            if answer != control.label and len(wrong) < _WRONG_EXAMPLES:
                wrong.append({"id": control.id, "label": control.label, "class": answer, "status": status})
        scored = evaluate(pairs, self.categories)
        accuracy = round(scored.accuracy, 4)
        degraded = self.min_accuracy is not None and scored.accuracy < self.min_accuracy
        return {
            "rows": scored.rows,
            "correct": scored.correct,
            "accuracy": accuracy,
            "min_accuracy": self.min_accuracy,
            "degraded": degraded,
            "by_status": dict(sorted(by_status.items())),
            "wrong": wrong,
        }


def degraded_note(controls: dict[str, Any] | None) -> str | None:
    """``degraded: control accuracy 62% below 80%`` for a summary's ``controls`` below its minimum, else None."""
    if not controls or not controls.get("degraded"):
        return None
    return f"degraded: control accuracy {controls['accuracy']:.0%} below {controls['min_accuracy']:.0%}"


def controls_from_plan(plan: dict[str, Any]) -> int:
    """How many control rows a run's (or a prepared folder's) plan says it mixed in."""
    return int(plan.get("controls") or 0)


def dumps_controls(controls: Iterable[CanonicalRecord]) -> bytes:
    out = io.StringIO()
    write_controls(out, controls)
    return out.getvalue().encode()
