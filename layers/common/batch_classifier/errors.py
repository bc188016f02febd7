"""Named errors of the domain.

Every error a user can cause has its own class, and its message is one sentence that says what went wrong,
where (file, row, column) and what to do. The class names double as the Step Functions error names that a
workflow's Catch matches, so renaming one is a breaking change.
"""

from __future__ import annotations


class BatchClassifierError(Exception):
    """Base of every error this package raises on purpose."""


class InputFormatError(BatchClassifierError):
    """The input file's format is unknown, or its content does not match its extension."""


class InputEncodingError(BatchClassifierError):
    """A text file cannot be decoded with the detected or requested encoding."""


class MalformedInputError(BatchClassifierError):
    """The file has the right format but its content is broken (bad JSON line, ragged structure)."""


class EmptyInputError(BatchClassifierError):
    """The file has no data rows (or no header)."""


class InputNotFoundError(BatchClassifierError):
    """The uploaded object is gone (deleted before the run read it)."""


class InputChangedError(BatchClassifierError):
    """The uploaded object was replaced by a newer upload before the run read it."""


class InputTooLargeError(BatchClassifierError):
    """The upload is larger than one run handles (its bytes, or its rows once read): split it into several."""


class MissingColumnError(BatchClassifierError):
    """A column named in the input mapping is not in the file."""


class TaskError(BatchClassifierError):
    """A task definition is missing or invalid."""


class OutputFormatError(BatchClassifierError):
    """A results file was requested in a format we cannot write."""


class PriceNotFoundError(BatchClassifierError):
    """No price is known for a model id."""


class PriceFileError(BatchClassifierError):
    """A prices file is missing, is not YAML, or does not have the expected structure."""


class SpendCapError(BatchClassifierError):
    """A run's estimated cost is above the cap (MaxRunCostUsd or the task's max_cost_usd): nothing was submitted."""


class ControlFileError(BatchClassifierError):
    """A task's control file (``controls.file``) is missing, unreadable, or has too few usable labelled rows."""
