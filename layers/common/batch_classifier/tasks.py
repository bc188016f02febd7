"""Classification tasks: what to classify into, how to ask the model, and how to read the input.

A task is a YAML document validated by the models below. Tasks ship with the package (``tasks/*.yaml``) and
users add their own as files; :func:`load_task` takes either a bundled name or a path.
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import TaskError
from .formats import FileFormat

_BUNDLED = "tasks"
TEXT_PLACEHOLDER = "{{text}}"
OUTPUT_FORMAT_PLACEHOLDER = "{{output_format}}"

# The system prompt: the same for every record of a task. Placeholders: {{persona}}, {{categories}} (the
# category list as XML), {{instructions}}, {{output_format}}.
DEFAULT_SYSTEM_TEMPLATE = """{{persona}}

Here are the categories, each with its description, examples that belong to it and examples that look like
it but belong elsewhere:
{{categories}}

{{instructions}}

{{output_format}}"""

#: Texts per model request when a task does not say: one, as before packed requests existed. Packing changes what the
#: model sees, and how well a model answers several texts at once depends on the model and the task (see the README),
#: so a task packs only when it says so, after its accuracy has been measured at its ``texts_per_request``; a task
#: with its own ``system_template`` may not ask for numbered answers. The bundled tasks say 6 (below).
DEFAULT_TEXTS_PER_REQUEST = 1
#: The value to start from when a task packs: Cheng et al., "Batch Prompting" (EMNLP 2023), report accuracy comparable
#: to one text a request at 6 texts a request, with up to 5 times fewer tokens; accuracy falls as k grows.
SUGGESTED_TEXTS_PER_REQUEST = 6
#: The most texts one request may carry: 50 answers of about 60 tokens fit the 4,096-token reply of the smallest model.
MAX_TEXTS_PER_REQUEST = 50

# The user message, one per record. {{text}} is replaced by the record's text.
DEFAULT_USER_TEMPLATE = """Classify the following text.
<text>
{{text}}
</text>"""


class InvocationType(StrEnum):
    """How Bedrock is asked: the model's own InvokeModel body (Anthropic models) or the Converse shape."""

    INVOKE_MODEL = "InvokeModel"
    CONVERSE = "Converse"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    """A text that belongs to the category, and why."""

    text: str = Field(min_length=1)
    reasoning: str = Field(min_length=1)


class BadExample(_Strict):
    """A text that looks like this category but is not: the category it belongs to, and why."""

    text: str = Field(min_length=1)
    correct: str = Field(min_length=1)
    reasoning: str = Field(min_length=1)


class Category(_Strict):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    bad_examples: tuple[BadExample, ...] = ()

    @field_validator("name")
    @classmethod
    def _no_tag_characters(cls, value: str) -> str:
        if any(ch in value for ch in "<>\n"):
            raise ValueError(f"category name {value!r} must not contain '<', '>' or a line break")
        return value.strip()


class InputMapping(_Strict):
    """How a file's columns become records.

    ``text_columns``: one column, or several joined as ``name: value`` lines. ``id_column``: optional, else ids
    are the data row numbers. ``label_column``: optional ground truth; when not set, the one column named like
    one of ``label_candidates`` (any case) is the ground truth. ``carry_columns``: columns copied to the output;
    ``None`` means every column of the input.
    """

    text_columns: tuple[str, ...] = Field(min_length=1)
    id_column: str | None = None
    label_column: str | None = None
    label_candidates: tuple[str, ...] = ("label", "class", "category", "ground_truth", "true_label")
    carry_columns: tuple[str, ...] | None = None
    max_text_chars: int = Field(default=20_000, gt=0)

    def with_overrides(
        self,
        *,
        text_columns: tuple[str, ...] | None = None,
        id_column: str | None = None,
        label_column: str | None = None,
    ) -> InputMapping:
        """A copy with the options a user gave on the command line (or the event) taking precedence."""
        update: dict[str, Any] = {}
        if text_columns:
            update["text_columns"] = text_columns
        if id_column:
            update["id_column"] = id_column
        if label_column:
            update["label_column"] = label_column
        return self.model_copy(update=update)


class BatchLimits(_Strict):
    """Bedrock batch quotas as this task uses them (all adjustable per account and model)."""

    min_records_per_job: int = Field(default=100, ge=1)
    max_records_per_job: int = Field(default=50_000, ge=1)
    max_bytes_per_file: int = Field(default=1_000_000_000, ge=1024)
    max_concurrent_jobs: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_records_per_job > self.max_records_per_job:
            raise ValueError("min_records_per_job must not exceed max_records_per_job")
        return self


class OutputTags(_Strict):
    """The XML tags the prompt asks the model to answer in."""

    label: str = "classification"
    explanation: str = "explanation"


class ReviewSettings(_Strict):
    """The review queue: whether the prompt asks the model for a confidence with each answer, and below which
    confidence (0 to 1) a classified row is flagged ``needs_review``. The threshold applies only when a confidence is
    asked; rows matched only by alias or fuzzy matching are flagged whatever this says (see :mod:`.confidence`)."""

    confidence: bool = False
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)


class ControlSettings(_Strict):
    """Control rows: labelled rows of the task's own, mixed into every run and answered like the user's rows, so
    that each run measures its accuracy (:mod:`.controls`). ``file``: a key in the customer bucket under
    ``config/controls/`` for the workflow, a path for ``prepare`` (relative to the current folder); it has the task's
    text columns and ``label_column``. ``rows``: how many of its rows each run mixes in (drawn afresh per run, seeded
    by the run). Below ``min_accuracy`` (0 to 1; unset: never) the run's outcome is ``degraded``."""

    file: str = Field(min_length=1)
    rows: int = Field(default=20, ge=1, le=10_000)
    label_column: str = Field(default="label", min_length=1)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)


class Task(_Strict):
    """A complete, validated classification task."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    # A label of the user's for this version of the task (the content hash tells versions apart without one).
    version: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    description: str = ""
    persona: str = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=2)
    instructions: str = ""
    model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    invocation_type: InvocationType = InvocationType.INVOKE_MODEL
    max_tokens: int = Field(default=512, gt=0, le=8192)
    # Texts a model request carries (numbered in one message; the categories and examples sent once). 1: a request
    # per text. Texts a packed reply leaves unanswered are sent again alone, never guessed.
    texts_per_request: int = Field(default=DEFAULT_TEXTS_PER_REQUEST, ge=1, le=MAX_TEXTS_PER_REQUEST)
    # A run of this task whose estimated cost (USD) is above this is refused before anything is submitted.
    max_cost_usd: float | None = Field(default=None, gt=0)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    output_tags: OutputTags = OutputTags()
    system_template: str = Field(default=DEFAULT_SYSTEM_TEMPLATE, min_length=1)
    user_template: str = Field(default=DEFAULT_USER_TEMPLATE, min_length=1)
    input: InputMapping
    output_formats: tuple[FileFormat, ...] = (FileFormat.CSV,)
    batch: BatchLimits = BatchLimits()
    fuzzy_threshold: float = Field(default=0.85, gt=0.0, le=1.0)
    # Ask for a confidence with each answer, and flag rows below the threshold for review (default: not asked).
    review: ReviewSettings = ReviewSettings()
    # Labelled control rows mixed into every run, to measure its accuracy (default: none).
    controls: ControlSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: dict[str, str] = {}
        for category in self.categories:
            for label in (category.name, *category.aliases):
                key = label.casefold().strip()
                if key in seen and seen[key] != category.name:
                    raise ValueError(f"label {label!r} is used by both {seen[key]!r} and {category.name!r}")
                seen[key] = category.name
        names = {c.name for c in self.categories}
        for category in self.categories:
            for bad in category.bad_examples:
                if bad.correct not in names or bad.correct == category.name:
                    raise ValueError(
                        f"a bad example of {category.name!r} must name another category as correct, not {bad.correct!r}"
                    )
        if self.user_template.count(TEXT_PLACEHOLDER) != 1:
            raise ValueError(f"user_template must contain {TEXT_PLACEHOLDER} exactly once")
        if self.texts_per_request > 1 and OUTPUT_FORMAT_PLACEHOLDER not in self.system_template:
            raise ValueError(
                f"a task that packs texts (texts_per_request {self.texts_per_request}) needs "
                f"{OUTPUT_FORMAT_PLACEHOLDER} in its system_template: that is where a packed request asks for one "
                "numbered answer a text"
            )
        if self.review.confidence and OUTPUT_FORMAT_PLACEHOLDER not in self.system_template:
            raise ValueError(
                f"a task that asks for a confidence (review.confidence) needs {OUTPUT_FORMAT_PLACEHOLDER} in its "
                "system_template: that is where the answer's format asks for one"
            )
        if self.invocation_type is InvocationType.INVOKE_MODEL and not _is_anthropic(self.model_id):
            raise ValueError(
                f"invocation_type InvokeModel is built for Anthropic models; use Converse for {self.model_id!r}"
            )
        return self

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        if data.get("controls") is None:  # a task without controls reads as it did before they existed
            data.pop("controls", None)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)

    @property
    def content_hash(self) -> str:
        """12 hex digits of the SHA-256 of what shapes the answers (prompt, categories, examples, model, inference
        settings): the same task classifies the same way; the batch limits, spend cap, output formats and the
        ``version`` label are left out."""
        shaping = self.model_dump(mode="json", exclude=_NOT_SHAPING)
        # Only asking for a confidence changes the prompt (the threshold decides which rows are flagged, not the
        # answers), and a task that does not ask keeps the hash it had before the setting existed.
        if self.review.confidence:
            shaping["review"] = {"confidence": True}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]

    @property
    def version_id(self) -> str:
        """The task's version as runs record it: ``<version>@<hash>``, or the hash alone without a label."""
        return f"{self.version}@{self.content_hash}" if self.version else self.content_hash


# Fields of a task that do not change how it classifies.
_NOT_SHAPING = {"version", "batch", "max_cost_usd", "output_formats", "review", "controls"}


def _is_anthropic(model_id: str) -> bool:
    return "anthropic." in model_id


def bundled_task_names() -> list[str]:
    """Names of the tasks that ship with the package."""
    folder = resources.files(__package__).joinpath(_BUNDLED)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_task(name_or_path: str | os.PathLike[str]) -> Task:
    """A bundled task by name, or a task file (YAML) by path."""
    text, origin = _task_source(name_or_path)
    return parse_task(text, origin)


def parse_task(text: str, origin: str = "task") -> Task:
    """Validate a task document; TaskError lists every problem with its location."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskError(f"{origin} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TaskError(f"{origin} must be a mapping of task settings, not {type(data).__name__}.")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        count = _too_few_categories(errors, data.get("categories"))
        if count is not None and len(errors) == 1:  # pydantic's words: "Tuple should have at least 2 items ..."
            raise TaskError(f"a task needs at least 2 categories; {origin} has {count}.") from None
        problems = "; ".join(
            f"categories: a task needs at least 2, not {count}"
            if count is not None and err["loc"] == ("categories",)
            else f"{'.'.join(str(p) for p in err['loc']) or 'task'}: {err['msg']}"
            for err in errors
        )
        raise TaskError(f"{origin} is not a valid task: {problems}.") from None


def _too_few_categories(errors: list[Any], categories: Any) -> int | None:
    """How many categories a task has when that is too few (an empty ``categories:`` is none), else None."""
    for err in errors:
        if err["loc"] != ("categories",):
            continue
        if err["type"] == "too_short":
            return int((err.get("ctx") or {}).get("actual_length", 0))
        if categories is None:
            return 0
    return None


def _task_source(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    raw = os.fspath(name_or_path)
    if raw in bundled_task_names():
        resource = resources.files(__package__).joinpath(_BUNDLED, f"{raw}.yaml")
        return resource.read_text(encoding="utf-8"), f"bundled task {raw!r}"
    path = Path(raw)
    if path.suffix.lower() in {".yaml", ".yml"} or path.exists():
        try:
            return path.read_text(encoding="utf-8"), f"task file {path.name!r}"
        except OSError as exc:
            raise TaskError(f"cannot read task file {raw!r}: {exc.strerror}.") from None
    names = ", ".join(bundled_task_names())
    raise TaskError(f"unknown task {raw!r}: give a task file (.yaml) or one of the bundled tasks: {names}.")
