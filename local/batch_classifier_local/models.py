"""The models behind the local Bedrock service, and how to pick and measure one.

- :class:`OfflineClassifier` (:mod:`.offline`) is a deterministic keyword scorer, a stand-in for tests and demos
  that reads everything it knows from the request itself and abstains rather than guess.
- :class:`OpenAICompatibleModel` (:mod:`.openai_client`) forwards each request to any server speaking the OpenAI
  chat API.

Both answer the :class:`Model` protocol (:mod:`.model_protocol`), re-exported here with its :class:`Completion` and
errors. :func:`model_from_spec` and :func:`model_from_env` pick one from a short spec string; :func:`measure` counts
how one does on labelled rows.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from batch_classifier.labels import LabelMatcher
from batch_classifier.outputs import extract_answer
from batch_classifier.prompts import render_prompt
from batch_classifier.tasks import Task

from .model_protocol import (
    Completion,
    Model,
    ModelError,
    ModelRequestInvalid,
    ModelThrottled,
    ModelUnavailable,
    message_text,
)
from .offline import OfflineClassifier
from .openai_client import OpenAICompatibleModel

__all__ = [
    "API_KEY_ENV",
    "MODEL_ENV",
    "Completion",
    "Measurement",
    "Model",
    "ModelError",
    "ModelRequestInvalid",
    "ModelThrottled",
    "ModelUnavailable",
    "OfflineClassifier",
    "OpenAICompatibleModel",
    "measure",
    "measure_accuracy",
    "message_text",
    "model_from_env",
    "model_from_spec",
]


# --------------------------------------------------------------------------------------------------------
# Measuring a model on labelled rows
# --------------------------------------------------------------------------------------------------------


def _share(part: int, whole: int) -> float:
    """``part / whole``, or 0.0 when there is no whole."""
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Measurement:
    """How a model did on labelled rows: ``answered`` rows got a category (the rest abstained or were off the
    list), ``correct`` got the labelled one; ``majority`` rows carry the most frequent label (the baseline of
    always answering it)."""

    rows: int
    answered: int
    correct: int
    majority: int

    @property
    def accuracy(self) -> float:
        return _share(self.correct, self.rows)

    @property
    def coverage(self) -> float:
        return _share(self.answered, self.rows)

    @property
    def accuracy_answered(self) -> float:
        return _share(self.correct, self.answered)

    @property
    def baseline(self) -> float:
        """The accuracy of always answering the most frequent label."""
        return _share(self.majority, self.rows)

    def __str__(self) -> str:
        return (
            f"accuracy {self.accuracy:.1%} ({self.correct} of {self.rows}), coverage {self.coverage:.1%} "
            f"({self.rows - self.answered} abstained or off the list), accuracy on answered rows "
            f"{self.accuracy_answered:.1%}; majority-class baseline {self.baseline:.1%}"
        )


def measure(model: Model, task: Task, rows: Iterable[tuple[str, str]]) -> Measurement:
    """Ask the model about every ``(text, label)`` row as the pipeline would and count the answers.

    Answers and labels are both matched to the task's categories (names, aliases, spelling), so a label written
    as an alias still counts; an answer that matches no category (an abstention) counts against accuracy and
    coverage.
    """
    prompt = render_prompt(task)
    matcher = LabelMatcher(task)
    labels: Counter[str | None] = Counter()
    total = answered = correct = 0
    for text, label in rows:
        messages = [{"role": "user", "content": prompt.user_message(text)}]
        reply = model.complete(prompt.system, messages, task.max_tokens)
        answer = extract_answer(reply.text, task.output_tags).label
        truth = matcher.match(label).category
        labels[truth] += 1
        total += 1
        predicted = matcher.match(answer).category if answer is not None else None
        if predicted is not None:
            answered += 1
            correct += predicted == truth
    majority = max((n for category, n in labels.items() if category is not None), default=0)
    return Measurement(total, answered, correct, majority)


def measure_accuracy(model: Model, task: Task, rows: Iterable[tuple[str, str]]) -> float:
    """The share of ``(text, label)`` rows the model classifies as labelled (see :func:`measure`). No rows: 0.0."""
    return measure(model, task, rows).accuracy


# --------------------------------------------------------------------------------------------------------
# Choosing a model
# --------------------------------------------------------------------------------------------------------

MODEL_ENV = "BATCH_CLASSIFIER_MODEL"
API_KEY_ENV = "LOCAL_MODEL_API_KEY"
_SPEC_FORMS = '"offline" (the default) or "openai:<base_url>#<model>", e.g. "openai:http://127.0.0.1:8000/v1#llama3"'


def model_from_spec(spec: str | None) -> Model:
    """The model a spec names: empty or ``offline``, or ``openai:<base_url>#<model>`` (API key from the
    ``LOCAL_MODEL_API_KEY`` environment variable when set)."""
    text = (spec or "").strip()
    if text in {"", "offline"}:
        return OfflineClassifier()
    if text.startswith("openai:"):
        base_url, _, model = text.removeprefix("openai:").rpartition("#")
        if base_url.startswith(("http://", "https://")) and model.strip():
            return OpenAICompatibleModel(base_url, model.strip(), api_key=os.environ.get(API_KEY_ENV) or None)
    raise ValueError(f"Unknown model spec {spec!r}: use {_SPEC_FORMS}.")


def model_from_env() -> Model:
    """The model named by the ``BATCH_CLASSIFIER_MODEL`` environment variable (default: offline)."""
    return model_from_spec(os.environ.get(MODEL_ENV))
