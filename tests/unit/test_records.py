import json

import pytest

from batch_classifier.records import (
    ANTHROPIC_VERSION,
    BatchLineEncoder,
    CanonicalRecord,
    RowStatus,
    model_input,
    record_id,
    record_index,
)
from batch_classifier.tasks import InvocationType, load_task

TEXTS = [
    "User: hello\nAgent: hi",
    'quotes " and \\ backslash',
    "unicode: café, 東京, emoji 🚀",
    "control \x01 chars \t tab",
    "</text> trying to close the tag",
]


def test_record_ids_are_short_alphanumeric_and_reversible():
    rid = record_id(42)
    assert rid == "R0000000042"
    assert len(rid) == 11 and rid.isalnum()
    assert record_index(rid) == 42


def test_anthropic_model_input():
    task = load_task("travel")
    body = model_input(task, "User: hi")
    assert body["anthropic_version"] == ANTHROPIC_VERSION
    assert body["max_tokens"] == task.max_tokens
    assert body["temperature"] == task.temperature
    assert "<categories>" in body["system"]
    assert body["messages"][0]["role"] == "user"
    assert "User: hi" in body["messages"][0]["content"][0]["text"]


def test_converse_model_input():
    task = load_task("travel").model_copy(
        update={"invocation_type": InvocationType.CONVERSE, "model_id": "amazon.nova-lite-v1:0"}
    )
    body = model_input(task, "User: hi")
    assert set(body) == {"system", "messages", "inferenceConfig"}
    assert "<categories>" in body["system"][0]["text"]
    assert "User: hi" in body["messages"][0]["content"][0]["text"]
    assert body["inferenceConfig"] == {"maxTokens": task.max_tokens, "temperature": task.temperature}


@pytest.mark.parametrize("invocation", list(InvocationType))
@pytest.mark.parametrize("text", TEXTS)
def test_encoder_matches_plain_json(invocation, text):
    task = load_task("travel").model_copy(update={"invocation_type": invocation})
    line = BatchLineEncoder(task).encode("R0000000001", text)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"recordId": "R0000000001", "modelInput": model_input(task, text)}


def test_canonical_record_round_trip():
    record = CanonicalRecord(
        row=3,
        id="a-1",
        text="hi",
        rid="R0000000002",
        first=True,
        truncated=True,
        label="Complaint",
        carry={"n": 1, "when": None},
    )
    assert CanonicalRecord.from_json(record.to_json()) == record
    invalid = CanonicalRecord(row=4, id="x", text="", status=RowStatus.INVALID_INPUT, reason="no text")
    assert CanonicalRecord.from_json(invalid.to_json()) == invalid
