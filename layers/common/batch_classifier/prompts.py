"""Prompt rendering: a task's system prompt (categories as XML nodes) and the per-record user message.

The system prompt is rendered once per task; the user message is split around the text placeholder so that
building a million batch records only pastes each record's text between two fixed pieces.

A packed request (``texts_per_request`` above 1) carries several texts in one user message, each in a numbered
``<text number="N">`` element, after the same system prompt with an output format that asks for one
``<answer number="N">`` per text, each holding the usual ``<classification>`` and ``<explanation>`` (and
``<confidence>`` when the task asks for one, see :mod:`.confidence`)::

    Classify each of these 3 texts on its own.
    <text number="1">
    ...
    </text>
    <text number="2">
    ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape

from .confidence import CONFIDENCE_TAG, confidence_format_line
from .tasks import TEXT_PLACEHOLDER, Category, Task


@dataclass(frozen=True, slots=True)
class Prompt:
    """A task's rendered prompt: the system text and the user message around the record's text."""

    system: str
    user_prefix: str
    user_suffix: str

    def user_message(self, text: str) -> str:
        return f"{self.user_prefix}{text}{self.user_suffix}"


@cache
def render_prompt(task: Task) -> Prompt:
    """Render a task's prompt (cached: tasks are immutable)."""
    system = (
        task.system_template.replace("{{persona}}", task.persona.strip())
        .replace("{{categories}}", categories_xml(task.categories))
        .replace("{{instructions}}", task.instructions.strip())
        .replace("{{output_format}}", output_format(task))
    )
    prefix, suffix = task.user_template.split(TEXT_PLACEHOLDER)
    return Prompt(system=_tidy(system), user_prefix=prefix, user_suffix=suffix)


#: The element that wraps each answer of a packed reply, and its number attribute.
ANSWER_TAG = "answer"
NUMBER_ATTRIBUTE = "number"


@dataclass(frozen=True, slots=True)
class PackedPrompt:
    """A task's prompt for requests of several texts: the system text and the numbered user message."""

    system: str

    @staticmethod
    def intro(count: int) -> str:
        """The user message's first line, before the numbered texts."""
        return f"Classify each of these {count} texts on its own."

    @staticmethod
    def text_open(number: int) -> str:
        """What comes before the ``number``-th text (a line break ends the previous part)."""
        return f'\n<text {NUMBER_ATTRIBUTE}="{number}">\n'

    TEXT_CLOSE = "\n</text>"

    def user_message(self, texts: Sequence[str]) -> str:
        parts = [self.intro(len(texts))]
        for number, text in enumerate(texts, start=1):
            parts.extend((self.text_open(number), text, self.TEXT_CLOSE))
        return "".join(parts)


@cache
def render_packed_prompt(task: Task) -> PackedPrompt:
    """The system prompt of a task's packed requests (cached): the task's own, asking for numbered answers."""
    system = (
        task.system_template.replace("{{persona}}", task.persona.strip())
        .replace("{{categories}}", categories_xml(task.categories))
        .replace("{{instructions}}", task.instructions.strip())
        .replace("{{output_format}}", packed_output_format(task))
    )
    return PackedPrompt(system=_tidy(system))


def packed_output_format(task: Task) -> str:
    label, explanation = task.output_tags.label, task.output_tags.explanation
    answer = f"<{ANSWER_TAG} {NUMBER_ATTRIBUTE}="
    asked = task.review.confidence
    confidence = confidence_format_line() + "\n" if asked else ""
    confidence_again = f"<{CONFIDENCE_TAG}>...</{CONFIDENCE_TAG}>\n" if asked else ""
    return (
        f'Each request holds several texts, each in a <text {NUMBER_ATTRIBUTE}="N"> element. The texts are unrelated: '
        "classify each one on its own, as if it were the only one.\n"
        "Answer every text, in order, in exactly this format and nothing else:\n"
        f'{answer}"1">\n'
        f"<{label}>one category name from the list above, written exactly as listed</{label}>\n"
        f"<{explanation}>one sentence on why</{explanation}>\n"
        f"{confidence}"
        f"</{ANSWER_TAG}>\n"
        f'{answer}"2">\n'
        f"<{label}>...</{label}>\n"
        f"<{explanation}>...</{explanation}>\n"
        f"{confidence_again}"
        f"</{ANSWER_TAG}>\n"
        f"and so on: one <{ANSWER_TAG}> for each text, numbered as its text is."
    )


def categories_xml(categories: tuple[Category, ...]) -> str:
    return "<categories>\n" + "\n".join(_category_xml(c) for c in categories) + "\n</categories>"


def output_format(task: Task) -> str:
    label, explanation = task.output_tags.label, task.output_tags.explanation
    return (
        "Answer in exactly this format and nothing else:\n"
        f"<{label}>one category name from the list above, written exactly as listed</{label}>\n"
        f"<{explanation}>one or two sentences on why</{explanation}>"
        + ("\n" + confidence_format_line() if task.review.confidence else "")
    )


def _category_xml(category: Category) -> str:
    lines = [
        "<category>",
        f"<name>{escape(category.name)}</name>",
        f"<description>{escape(category.description)}</description>",
    ]
    if category.examples:
        lines.append("<good_examples>")
        lines.extend(
            f"<example><text>{escape(e.text)}</text><reasoning>{escape(e.reasoning)}</reasoning></example>"
            for e in category.examples
        )
        lines.append("</good_examples>")
    if category.bad_examples:
        lines.append("<bad_examples>")
        lines.extend(
            f"<example><text>{escape(b.text)}</text><correct_category>{escape(b.correct)}</correct_category>"
            f"<reasoning>{escape(b.reasoning)}</reasoning></example>"
            for b in category.bad_examples
        )
        lines.append("</bad_examples>")
    lines.append("</category>")
    return "\n".join(lines)


def _tidy(text: str) -> str:
    """Collapse the blank lines an empty placeholder leaves behind."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()
