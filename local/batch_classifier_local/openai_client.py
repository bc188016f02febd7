"""A model served by any OpenAI-compatible chat endpoint: :class:`OpenAICompatibleModel` forwards each request to
``POST {base_url}/chat/completions`` of any server speaking the OpenAI chat API (vLLM, llama.cpp, Ollama, LM Studio,
...); a packed request goes as it is, and the model answers it as the prompt asks."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from batch_classifier.cost import estimate_tokens

from .model_protocol import Completion, ModelThrottled, ModelUnavailable, message_text


class OpenAICompatibleModel:
    """A model served behind ``POST {base_url}/chat/completions`` (the OpenAI chat API), asked at temperature 0."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"openai-compatible:{model}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        chat = [{"role": "system", "content": system}] if system else []
        chat += [
            {"role": "assistant" if m.get("role") == "assistant" else "user", "content": message_text(m.get("content"))}
            for m in messages
        ]
        body = {"model": self.model, "messages": chat, "max_tokens": max_tokens, "temperature": 0}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code == 429:
                raise ModelThrottled(
                    f"The model endpoint {self.url} is throttling requests (HTTP 429){detail}."
                ) from None
            raise ModelUnavailable(f"The model endpoint {self.url} answered HTTP {exc.code}{detail}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelUnavailable(f"The model endpoint {self.url} answered with something that is not JSON.") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ModelUnavailable(f"The model endpoint {self.url} could not be reached ({reason}).") from None
        try:
            choice = doc["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ModelUnavailable(
                f"The model endpoint {self.url} answered without choices[0].message.content."
            ) from None
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        tokens_in = usage.get("prompt_tokens") or estimate_tokens("".join(m["content"] for m in chat))
        tokens_out = usage.get("completion_tokens") or estimate_tokens(text)
        stop = "max_tokens" if choice.get("finish_reason") == "length" else "end_turn"
        return Completion(text, int(tokens_in), int(tokens_out), stop)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """A short quote of the server's error message, when it sent one."""
    try:
        raw = exc.read().decode("utf-8", "replace")
    except OSError:
        return ""
    try:
        doc = json.loads(raw)
        message = doc.get("error", {}).get("message") if isinstance(doc.get("error"), dict) else doc.get("error")
        raw = str(message or doc.get("message") or raw)
    except (json.JSONDecodeError, AttributeError):
        pass
    raw = " ".join(raw.split())
    return f": {raw[:200]}" if raw else ""
