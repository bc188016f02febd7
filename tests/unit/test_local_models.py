"""The local runtime's models: the offline classifier, the OpenAI-compatible client and choosing one by spec."""

from __future__ import annotations

import csv
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batch_classifier.labels import LabelMatcher
from batch_classifier.outputs import ModelResult, extract_answer, split_packed_reply
from batch_classifier.prompts import PackedPrompt, render_prompt
from batch_classifier.readers import open_table
from batch_classifier.records import RowStatus, packed_model_input
from batch_classifier.results import judge
from batch_classifier.tasks import OutputTags, Task, load_task
from batch_classifier_local.lexicon import GROUPS
from batch_classifier_local.models import (
    Completion,
    ModelError,
    ModelRequestInvalid,
    ModelThrottled,
    ModelUnavailable,
    OfflineClassifier,
    OpenAICompatibleModel,
    measure,
    measure_accuracy,
    model_from_env,
    model_from_spec,
)
from batch_classifier_local.offline import (
    _FIELD_OF,
    numbered_texts,
    parse_prompt,
    record_text,
    split_turns,
    stem,
    words,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "travel_calls.csv"
SEED_FILE = "travel_conversations_labeled.xlsx"

# Floors a little under the accuracies measured with the lexicon of general English (sample 0.776, seed 0.880).
# These sets are not held out (the scorer's weights were tuned on them): the floors catch regressions, nothing more.
SAMPLE_FLOOR = 0.74
SEED_FLOOR = 0.85

CALL = (
    "User: Hi, I booked a hotel in Porto for next week and my card was declined twice when I tried to pay the "
    "balance.\nAgent: I'm sorry about that. Let's try another card.\nUser: OK, here is my other card."
)


def _ask(model: Any, task: Task, text: str, max_tokens: int = 300) -> Completion:
    prompt = render_prompt(task)
    return model.complete(prompt.system, [{"role": "user", "content": prompt.user_message(text)}], max_tokens)


def _labelled(path: Path) -> list[tuple[str, str]]:
    with open_table(path) as table:
        return [(str(row.values["conversation"]), str(row.values["class"])) for row in table.rows()]


# --------------------------------------------------------------------------------------------------------
# The offline classifier: reading the prompt
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task_name", "count"), [("travel", 10), ("support-root-cause", 6)])
def test_parses_the_categories_of_a_rendered_prompt(task_name: str, count: int) -> None:
    task = load_task(task_name)
    parsed = parse_prompt(render_prompt(task).system)
    assert [c.name for c in parsed.categories] == task.category_names
    assert len(parsed.categories) == count
    for category, source in zip(parsed.categories, task.categories, strict=True):
        assert category.description == source.description
        assert [e.text for e in category.examples] == [e.text for e in source.examples]
        assert [(b.text, b.correct) for b in category.bad_examples] == [
            (b.text, b.correct) for b in source.bad_examples
        ]
    assert (parsed.label_tag, parsed.explanation_tag) == ("classification", "explanation")


def test_parses_aliases_when_a_prompt_lists_them() -> None:
    system = (
        "<categories>\n<category>\n<name>Refunds &amp; Credits</name><description>Money back.</description>"
        "<aliases><alias>Refund</alias><alias>Credit</alias></aliases>\n</category>\n"
        "<category>\n<name>Other</name><description>Anything else.</description>\n</category>\n</categories>"
    )
    parsed = parse_prompt(system)
    assert [c.name for c in parsed.categories] == ["Refunds & Credits", "Other"]
    assert parsed.categories[0].aliases == ("Refund", "Credit")
    label, _ = OfflineClassifier().classify(system, "I want a credit for the missed night")
    assert label == "Refunds & Credits"


def test_strips_the_instruction_wrapper_around_the_record() -> None:
    prompt = render_prompt(load_task("travel"))
    assert record_text(prompt.user_message("User: hello")) == "User: hello"
    assert record_text("no wrapper here") == "no wrapper here"


def test_splits_transcripts_on_one_line_or_many() -> None:
    one_line = "User: I want to cancel. Agent: Sure. User: Thanks."
    many = "User: I want to cancel.\nAgent: Sure.\nUser: Thanks."
    for text in (one_line, many):
        turns = split_turns(text)
        assert [t.customer for t in turns] == [True, False, True]
        assert turns[0].text == "I want to cancel."
    assert [t.customer for t in split_turns("plain text without roles")] == [True]


def test_words_are_stemmed_and_grouped_the_same_however_often_they_come() -> None:
    text = "I'd like to CANCEL my bookings, the bookings I booked: 2 cancelled flights and a refund. Refund it!"
    expected = []
    for raw in ["cancel", "bookings", "bookings", "booked", "cancelled", "flights", "refund", "refund"]:
        expected.append((stem(raw), raw, False))
        if (field := _FIELD_OF.get(stem(raw, inflections=True))) is not None:
            expected.append(("~" + field, raw, True))
    assert [w for w in words(text) if w[1] not in {"like"}] == expected
    assert words(text) == words(text)


def test_a_prompt_without_categories_is_refused() -> None:
    with pytest.raises(ModelRequestInvalid, match="no <category>"):
        OfflineClassifier().complete("You are helpful.", [{"role": "user", "content": "hi"}], 100)
    assert issubclass(ModelRequestInvalid, ModelError)


# --------------------------------------------------------------------------------------------------------
# The offline classifier: answering
# --------------------------------------------------------------------------------------------------------


def test_answers_in_the_prompt_format_that_extract_answer_reads() -> None:
    task = load_task("travel")
    reply = _ask(OfflineClassifier(), task, CALL)
    answer = extract_answer(reply.text, task.output_tags)
    assert answer.label == "Payment Problem"
    assert answer.explanation is not None and answer.explanation.startswith("Offline classifier: strongest cues")
    assert re.fullmatch(
        r"<classification>Payment Problem</classification>\n"
        r'<explanation>Offline classifier: strongest cues "[^"]+"(, "[^"]+")* for Payment Problem\.</explanation>',
        reply.text,
    )
    assert reply.stop_reason == "end_turn"


def test_answers_in_the_tags_the_prompt_asks_for() -> None:
    task = load_task("travel").model_copy(update={"output_tags": OutputTags(label="category", explanation="why")})
    reply = _ask(OfflineClassifier(), task, CALL)
    assert reply.text.startswith("<category>Payment Problem</category>\n<why>Offline classifier:")
    assert extract_answer(reply.text, task.output_tags).label == "Payment Problem"


@pytest.mark.parametrize("task_name", ["travel", "support-root-cause"])
def test_classifies_the_prompt_s_own_examples_as_the_prompt_says(task_name: str) -> None:
    task = load_task(task_name)
    model = OfflineClassifier()
    for category in task.categories:
        for example in category.examples:
            assert extract_answer(_ask(model, task, example.text).text, task.output_tags).label == category.name
        for bad in category.bad_examples:
            assert extract_answer(_ask(model, task, bad.text).text, task.output_tags).label == bad.correct


def test_is_deterministic() -> None:
    task = load_task("travel")
    first = _ask(OfflineClassifier(), task, CALL)
    model = OfflineClassifier()
    assert [_ask(model, task, CALL) for _ in range(3)] == [first] * 3


def test_reads_anthropic_converse_and_plain_message_content() -> None:
    prompt = render_prompt(load_task("travel"))
    message = prompt.user_message(CALL)
    shapes = [
        message,
        [{"type": "text", "text": message}],  # Anthropic Messages
        [{"text": message}],  # Converse
        [{"text": message[:40]}, {"text": message[40:]}],  # split over blocks
    ]
    model = OfflineClassifier()
    replies = {model.complete(prompt.system, [{"role": "user", "content": c}], 300).text for c in shapes}
    assert len(replies) == 1
    # The last user message is the one classified.
    history = [
        {"role": "user", "content": prompt.user_message("User: I want to cancel my cruise.")},
        {"role": "assistant", "content": "<classification>Cancellation Request</classification>"},
        {"role": "user", "content": [{"type": "text", "text": message}]},
    ]
    assert model.complete(prompt.system, history, 300).text in replies


def test_reports_token_counts_like_bedrock() -> None:
    prompt = render_prompt(load_task("travel"))
    message = prompt.user_message(CALL)
    reply = OfflineClassifier().complete(prompt.system, [{"role": "user", "content": message}], 300)
    assert reply.input_tokens == pytest.approx(len(prompt.system + message) / 4, abs=1)
    assert reply.output_tokens == pytest.approx(len(reply.text) / 4, abs=1)
    assert reply.input_tokens >= 1 and reply.output_tokens >= 1
    short = OfflineClassifier().complete(prompt.system, [{"role": "user", "content": message}], 5)
    assert short.stop_reason == "max_tokens" and short.output_tokens <= 5


@pytest.mark.parametrize("text", ["", "Hello there, thanks a lot.", "xyzzy qwerty 12345"])
def test_a_text_without_evidence_gets_no_category(text: str) -> None:
    task = load_task("travel")
    reply = _ask(OfflineClassifier(), task, text)
    answer = extract_answer(reply.text, task.output_tags)
    assert answer.label == "none" and answer.label not in task.category_names
    assert answer.explanation == "Offline classifier: abstains: no word of the text matches any category."


def test_an_abstention_ends_off_list_with_its_answer_kept_and_counts_as_unanswered() -> None:
    task = load_task("travel")
    reply = _ask(OfflineClassifier(), task, "Hello there.")
    result = ModelResult(record_id="R0000000001", text=reply.text, stop_reason=reply.stop_reason)
    verdict = judge(result, LabelMatcher(task), task)
    assert verdict.status is RowStatus.OFF_LIST and verdict.category is None and verdict.answer == "none"
    assert verdict.rationale is not None and "abstains" in verdict.rationale
    assert not verdict.retryable


def test_categories_that_tie_get_no_category() -> None:
    system = (
        "<categories>\n<category>\n<name>Alpha</name><description>Trains and timetables.</description>\n</category>\n"
        "<category>\n<name>Beta</name><description>Trains and timetables.</description>\n</category>\n</categories>"
    )
    model = OfflineClassifier()
    assert model.classify(system, "the trains") == (None, ["trains"])
    assert model.classify(system, "something about alpha trains") == ("Alpha", ["alpha", "trains"])
    reply = model.complete(system, [{"role": "user", "content": "the trains"}], 100)
    assert reply.text == (
        "<classification>none</classification>\n"
        '<explanation>Offline classifier: abstains: the cues "trains" favour no category over another.</explanation>'
    )


def test_abstains_with_another_word_when_a_category_is_called_none() -> None:
    system = (
        "<categories>\n<category>\n<name>None</name><description>Nothing to do.</description>\n</category>\n"
        "<category>\n<name>Rail</name><description>Trains.</description>\n</category>\n</categories>"
    )
    reply = OfflineClassifier().complete(system, [{"role": "user", "content": "hello"}], 100)
    assert reply.text.startswith("<classification>no category</classification>")


@pytest.mark.parametrize("task_name", ["travel", "support-root-cause"])
def test_a_text_that_names_a_category_is_classified(task_name: str) -> None:
    # The fault suite's generated texts (tests/workflow_helpers.py, write_calls) read like this one.
    task = load_task(task_name)
    model = OfflineClassifier()
    for number, name in enumerate(task.category_names):
        answer = extract_answer(_ask(model, task, f"User: ticket {number} is about my {name}.").text, task.output_tags)
        assert answer.label == name


# --------------------------------------------------------------------------------------------------------
# The lexicon: general English, not the labelled sets
# --------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower().replace("\u2019", "'")))


@pytest.mark.seed
def test_the_lexicon_holds_no_word_of_the_labelled_sets_that_no_prompt_uses(seed_data: Path) -> None:
    """A lexicon word that the labelled sets use (as written or by its stem) must be a word of a bundled task's
    prompt: otherwise the sets' own wording would have leaked into the classifier."""
    prompts: set[str] = set()
    for name in ("travel", "support-root-cause"):
        prompts |= _tokens(render_prompt(load_task(name)).system)
    labelled: set[str] = set()
    for path in (SAMPLE, seed_data / SEED_FILE):
        for text, _ in _labelled(path):
            labelled |= _tokens(text)
    prompt_stems = {stem(w, inflections=True) for w in prompts}
    labelled_stems = {stem(w, inflections=True) for w in labelled}
    leaked = sorted(
        word
        for members in GROUPS.values()
        for word in members.split()
        if (word in labelled or stem(word, inflections=True) in labelled_stems)
        and word not in prompts
        and stem(word, inflections=True) not in prompt_stems
    )
    assert leaked == []


def test_the_lexicon_is_small_and_names_no_category() -> None:
    words = [w for members in GROUPS.values() for w in members.split()]
    assert len(words) == len(set(words)) <= 120
    names = {n.casefold() for t in ("travel", "support-root-cause") for n in load_task(t).category_names}
    assert not names & {g.casefold() for g in GROUPS}


# --------------------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------------------


def test_sample_file_is_well_formed() -> None:
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        assert not handle.read(1).startswith("\ufeff")
        handle.seek(0)
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["conversation_id", "conversation", "class"]
    assert len(rows) >= 220
    assert [r["conversation_id"] for r in rows] == [f"T{i:04d}" for i in range(1, len(rows) + 1)]
    assert len({r["conversation"] for r in rows}) == len(rows)
    counts = Counter(r["class"] for r in rows)
    assert set(counts) == set(load_task("travel").category_names)
    assert all(20 <= n <= 25 for n in counts.values())
    for row in rows:
        lines = row["conversation"].split("\n")
        assert 4 <= len(lines) <= 10
        assert all(line.startswith("User: " if i % 2 == 0 else "Agent: ") for i, line in enumerate(lines))


def test_accuracy_on_the_sample_file() -> None:
    measured = measure(OfflineClassifier(), load_task("travel"), _labelled(SAMPLE))
    print(f"\noffline classifier on {SAMPLE.name} (not held out): {measured}")
    assert measured.accuracy >= SAMPLE_FLOOR and measured.accuracy > 3 * measured.baseline


@pytest.mark.seed
def test_accuracy_on_the_seed_file(seed_data: Path) -> None:
    path = seed_data / SEED_FILE
    if not path.is_file():
        pytest.skip(f"{SEED_FILE} is absent")
    measured = measure(OfflineClassifier(), load_task("travel"), _labelled(path))
    print(f"\noffline classifier on {SEED_FILE} (not held out): {measured}")
    assert measured.accuracy >= SEED_FLOOR and measured.accuracy > 3 * measured.baseline


def test_measure_accuracy_counts_aliases_and_handles_no_rows() -> None:
    task = load_task("travel")
    rows = [("User: I need to cancel my cruise next month.\nAgent: I can cancel it.", "Cancellation")]
    assert measure_accuracy(OfflineClassifier(), task, rows) == 1.0
    assert measure_accuracy(OfflineClassifier(), task, []) == 0.0
    rows += [("Hello there.", "Complaint"), ("User: my card was declined.", "Cancellation Request")]
    measured = measure(OfflineClassifier(), task, rows)
    assert (measured.rows, measured.answered, measured.correct, measured.majority) == (3, 2, 1, 2)
    assert measured.coverage == pytest.approx(2 / 3) and measured.accuracy_answered == 0.5


# --------------------------------------------------------------------------------------------------------
# The OpenAI-compatible client, against a fake server
# --------------------------------------------------------------------------------------------------------


class _FakeOpenAI:
    """A tiny OpenAI-compatible server: records each request and answers with the next queued response."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responses: list[tuple[int, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status, doc = fake.responses.pop(0) if fake.responses else (200, _reply("ok"))
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _reply(text: str, finish: str = "stop", usage: dict[str, int] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
    }
    if usage is not None:
        doc["usage"] = usage
    return doc


@pytest.fixture
def fake_openai() -> Iterator[_FakeOpenAI]:
    server = _FakeOpenAI()
    try:
        yield server
    finally:
        server.close()


def test_openai_request_and_reply_mapping(fake_openai: _FakeOpenAI) -> None:
    fake_openai.responses.append(
        (
            200,
            _reply("<classification>Complaint</classification>", usage={"prompt_tokens": 321, "completion_tokens": 9}),
        )
    )
    model = OpenAICompatibleModel(fake_openai.base_url, "llama3", api_key="secret-key", timeout=5)
    assert model.name == "openai-compatible:llama3"
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "first "}, {"type": "text", "text": "part"}]},
        {"role": "assistant", "content": [{"text": "noted"}]},
        {"role": "user", "content": "classify this"},
    ]
    reply = model.complete("the system prompt", messages, 42)
    assert reply == Completion("<classification>Complaint</classification>", 321, 9, "end_turn")
    [request] = fake_openai.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "model": "llama3",
        "messages": [
            {"role": "system", "content": "the system prompt"},
            {"role": "user", "content": "first part"},
            {"role": "assistant", "content": "noted"},
            {"role": "user", "content": "classify this"},
        ],
        "max_tokens": 42,
        "temperature": 0,
    }


def test_openai_without_key_or_usage_and_cut_short(fake_openai: _FakeOpenAI) -> None:
    fake_openai.responses.append((200, _reply("<classification>Comp", finish="length")))
    model = OpenAICompatibleModel(fake_openai.base_url + "/", "m", timeout=5)
    reply = model.complete("system text", [{"role": "user", "content": "hello there"}], 3)
    assert "Authorization" not in fake_openai.requests[0]["headers"]
    assert fake_openai.requests[0]["path"] == "/v1/chat/completions"
    assert reply.stop_reason == "max_tokens"
    assert reply.input_tokens >= 1 and reply.output_tokens >= 1  # estimated when usage is absent
    assert reply.output_tokens == pytest.approx(len(reply.text) / 4, abs=1)


def test_openai_429_is_throttling(fake_openai: _FakeOpenAI) -> None:
    fake_openai.responses.append((429, {"error": {"message": "Rate limit reached"}}))
    model = OpenAICompatibleModel(fake_openai.base_url, "m", timeout=5)
    with pytest.raises(ModelThrottled, match=re.escape(model.url)) as caught:
        model.complete("s", [{"role": "user", "content": "x"}], 10)
    assert "Rate limit reached" in str(caught.value)
    assert isinstance(caught.value, ModelError)


def test_openai_500_is_unavailable(fake_openai: _FakeOpenAI) -> None:
    fake_openai.responses.append((500, {"error": "boom"}))
    model = OpenAICompatibleModel(fake_openai.base_url, "m", timeout=5)
    with pytest.raises(ModelUnavailable, match=r"HTTP 500: boom") as caught:
        model.complete("s", [{"role": "user", "content": "x"}], 10)
    assert model.url in str(caught.value)


def test_openai_reply_without_choices_is_unavailable(fake_openai: _FakeOpenAI) -> None:
    fake_openai.responses.append((200, {"object": "chat.completion"}))
    model = OpenAICompatibleModel(fake_openai.base_url, "m", timeout=5)
    with pytest.raises(ModelUnavailable, match="choices"):
        model.complete("s", [{"role": "user", "content": "x"}], 10)


def test_openai_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAICompatibleModel(f"http://127.0.0.1:{port}/v1", "m", timeout=5)
    with pytest.raises(ModelUnavailable, match="could not be reached") as caught:
        model.complete("s", [{"role": "user", "content": "x"}], 10)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in str(caught.value)


# --------------------------------------------------------------------------------------------------------
# Choosing a model
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, "", "  ", "offline"])
def test_spec_for_the_offline_classifier(spec: str | None) -> None:
    model = model_from_spec(spec)
    assert isinstance(model, OfflineClassifier)
    assert model.name == "offline-classifier"


def test_spec_for_an_openai_compatible_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_MODEL_API_KEY", raising=False)
    model = model_from_spec("openai:http://127.0.0.1:8000/v1#llama3")
    assert isinstance(model, OpenAICompatibleModel)
    assert (model.base_url, model.model, model.api_key) == ("http://127.0.0.1:8000/v1", "llama3", None)
    assert model.name == "openai-compatible:llama3"
    monkeypatch.setenv("LOCAL_MODEL_API_KEY", "k-123")
    model = model_from_spec("openai:https://models.example.com/v1#org/model-7b")
    assert isinstance(model, OpenAICompatibleModel)
    assert (model.url, model.model, model.api_key) == (
        "https://models.example.com/v1/chat/completions",
        "org/model-7b",
        "k-123",
    )


@pytest.mark.parametrize(
    "spec", ["gpt", "openai:", "openai:http://127.0.0.1:8000/v1", "openai:127.0.0.1:8000#m", "openai:http://h/v1#"]
)
def test_unknown_specs_are_refused_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match=r'"offline".*"openai:<base_url>#<model>"'):
        model_from_spec(spec)


def test_model_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCH_CLASSIFIER_MODEL", raising=False)
    assert isinstance(model_from_env(), OfflineClassifier)
    monkeypatch.setenv("BATCH_CLASSIFIER_MODEL", "openai:http://127.0.0.1:9/v1#tiny")
    model = model_from_env()
    assert isinstance(model, OpenAICompatibleModel) and model.model == "tiny"
    monkeypatch.setenv("BATCH_CLASSIFIER_MODEL", "nonsense")
    with pytest.raises(ValueError, match="Unknown model spec 'nonsense'"):
        model_from_env()


# --------------------------------------------------------------------------------------------------------
# Packed requests: several numbered texts in one message
# --------------------------------------------------------------------------------------------------------


def _packed_body(task: Task, texts: list[str]) -> tuple[str, list[dict[str, Any]], int]:
    body = packed_model_input(task, texts)
    return body["system"], body["messages"], body["max_tokens"]


def test_the_offline_classifier_answers_each_text_of_a_packed_request_as_if_alone() -> None:
    task = load_task("travel")
    rows = _labelled(SAMPLE)[:7]
    texts = [text for text, _ in rows]
    model = OfflineClassifier()
    system, messages, max_tokens = _packed_body(task, texts)
    reply = model.complete(system, messages, max_tokens)
    split = split_packed_reply(reply.text, len(texts), reply.stop_reason)
    assert split.unanswered == {} and sorted(split.answers) == list(range(1, 8))
    for number, text in enumerate(texts, start=1):
        alone = extract_answer(_ask(model, task, text).text, task.output_tags)
        assert extract_answer(split.answers[number], task.output_tags) == alone
    # Tokens as the local Bedrock counts them: everything the request holds, about 4 characters a token.
    seen = system + messages[0]["content"][0]["text"]
    assert reply.input_tokens == (len(seen) + 3) // 4 and reply.output_tokens == (len(reply.text) + 3) // 4


def test_each_text_of_a_packed_request_abstains_on_its_own() -> None:
    task = load_task("travel")
    texts = ["User: I want to cancel my cruise.", "", "Hello there.", "User: my card was declined when I paid."]
    system, messages, max_tokens = _packed_body(task, texts)
    reply = OfflineClassifier().complete(system, messages, max_tokens)
    split = split_packed_reply(reply.text, len(texts), reply.stop_reason)
    assert split.unanswered == {}
    labels = [extract_answer(split.answers[n], task.output_tags).label for n in (1, 2, 3, 4)]
    assert labels == ["Cancellation Request", "none", "none", "Payment Problem"]


def test_numbered_texts_keep_each_text_whole() -> None:
    texts = ["User: one\nAgent: two", "a </text> inside", ""]
    message = PackedPrompt(system="").user_message(texts)
    assert numbered_texts(message) == [(1, texts[0]), (2, texts[1]), (3, "")]
    assert numbered_texts("Classify the following text.\n<text>\nhi\n</text>") == []


def test_openai_client_forwards_a_packed_request_and_its_reply_splits_by_number(fake_openai: _FakeOpenAI) -> None:
    task = load_task("travel")
    answers = "".join(
        f'<answer number="{n}"><classification>{label}</classification><explanation>x</explanation></answer>'
        for n, label in ((1, "Complaint"), (2, "Refund Issues"), (3, "Booking Inquiry"))
    )
    fake_openai.responses.append((200, _reply(answers, usage={"prompt_tokens": 2400, "completion_tokens": 60})))
    model = OpenAICompatibleModel(fake_openai.base_url, "llama3", timeout=5)
    system, messages, max_tokens = _packed_body(task, ["call one", "call two", "call three"])
    reply = model.complete(system, messages, max_tokens)
    [request] = fake_openai.requests
    assert request["body"]["messages"][0] == {"role": "system", "content": system}
    assert request["body"]["messages"][1]["content"].count("<text number=") == 3
    assert request["body"]["max_tokens"] == 3 * task.max_tokens
    split = split_packed_reply(reply.text, 3, reply.stop_reason)
    labels = [extract_answer(split.answers[n], task.output_tags).label for n in (1, 2, 3)]
    assert labels == ["Complaint", "Refund Issues", "Booking Inquiry"]
    assert (reply.input_tokens, reply.output_tokens) == (2400, 60)


def test_the_openai_client_passes_a_packed_reply_with_confidences_through_unchanged(fake_openai: _FakeOpenAI) -> None:
    task = load_task("travel")
    asked = task.model_copy(update={"review": task.review.model_copy(update={"confidence": True})})
    reply = (
        '<answer number="1">\n<classification>Complaint</classification>\n<explanation>rude</explanation>\n'
        "<confidence>83</confidence>\n</answer>\n"
        '<answer number="2">\n<classification>Refund Issues</classification>\n<explanation>money</explanation>\n'
        "<confidence>55%</confidence>\n</answer>"
    )
    fake_openai.responses.append((200, _reply(reply)))
    system, messages, max_tokens = _packed_body(asked, ["the staff were rude", "I want my money back"])
    assert "<confidence>" in system  # the prompt asks for it
    completion = OpenAICompatibleModel(fake_openai.base_url, "m", timeout=5).complete(system, messages, max_tokens)
    assert completion.text == reply
