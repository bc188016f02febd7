"""Prompt rendering: a task's system prompt (categories as XML nodes) and the per-record user message.

The system prompt is rendered once per task; the user message is split around the text placeholder so that
building a million batch records only pastes each record's text between two fixed pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape

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


def categories_xml(categories: tuple[Category, ...]) -> str:
    return "<categories>\n" + "\n".join(_category_xml(c) for c in categories) + "\n</categories>"


def output_format(task: Task) -> str:
    label, explanation = task.output_tags.label, task.output_tags.explanation
    return (
        "Answer in exactly this format and nothing else:\n"
        f"<{label}>one category name from the list above, written exactly as listed</{label}>\n"
        f"<{explanation}>one or two sentences on why</{explanation}>"
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
