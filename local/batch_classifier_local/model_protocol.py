"""What every local model shares: the :class:`Model` protocol, its :class:`Completion`, its errors and the
reading of a request's messages. :mod:`.models` re-exports all of it with the two models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Completion:
    """A model's reply to one request, with the token counts Bedrock would report."""

    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str = "end_turn"


class Model(Protocol):
    """Anything that answers a chat request: a system prompt and the conversation's messages."""

    name: str

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion: ...


class ModelError(Exception):
    """A model could not answer a request."""


class ModelThrottled(ModelError):
    """The model refused the request for now (too many requests); worth another attempt later."""


class ModelUnavailable(ModelError):
    """The model could not be reached or failed on its side."""


class ModelRequestInvalid(ModelError):
    """The request cannot be answered as it stands (for the offline classifier: no categories in the prompt)."""


def message_text(content: Any) -> str:
    """The text of one message's content: a string, or a list of blocks (Anthropic ``{"type": "text",
    "text": ...}`` or Converse ``{"text": ...}``); blocks without text (images, tool calls) are skipped."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return ""
