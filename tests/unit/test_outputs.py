import io
import json

import pytest

from batch_classifier.outputs import (
    _tag_value,
    extract_answer,
    parse_manifest,
    parse_output_line,
    read_output_lines,
)
from batch_classifier.tasks import OutputTags

# The examples of the Bedrock user guide ("View the results of a batch inference job"), both spellings it
# has used: strict JSON, and single-quoted keys inside modelOutput.
DOC_SUCCESS_JSON = (
    '{ "recordId" : "3223593EFGH", "modelInput" : {"inputText": "Roses are red, violets are"}, '
    '"modelOutput" : {"inputTextTokenCount": 8, "results": [{"tokenCount": 3, "outputText": "blue\\n", '
    '"completionReason": "FINISH"}]}}'
)
DOC_SUCCESS_QUOTED = (
    '{ "recordId" : "3223593EFGH", "modelInput" : {"inputText": "Roses are red, violets are"}, '
    "\"modelOutput\" : {'inputTextTokenCount': 8, 'results': [{'tokenCount': 3, 'outputText': 'blue\\n', "
    "'completionReason': 'FINISH'}]}}"
)
DOC_ERROR = (
    '{ "recordId" : "1223213ABCD", "modelInput" : {"inputText": "Hello world"}, '
    '"error" : {"errorCode" : 400, "errorMessage" : "bad request" }}'
)
DOC_MANIFEST = (
    '{ "totalRecordCount" : 10, "processedRecordCount" : 9, "successRecordCount": 8, '
    '"errorRecordCount": 1, "inputTokenCount": 1234, "outputTokenCount" : 567 }'
)
ANTHROPIC = (
    '{"recordId": "R0000000001", "modelInput": {}, "modelOutput": {"id": "msg_1", "type": "message", '
    '"role": "assistant", "content": [{"type": "text", "text": "<classification>Complaint</classification>'
    '<explanation>Angry.</explanation>"}], "stop_reason": "end_turn", '
    '"usage": {"input_tokens": 2100, "output_tokens": 31}}}'
)
CONVERSE = (
    '{"recordId": "R0000000002", "modelInput": {}, "modelOutput": {"output": {"message": {"role": "assistant", '
    '"content": [{"text": "<classification>Refund Issues</classification>"}]}}, "stopReason": "end_turn", '
    '"usage": {"inputTokens": 1900, "outputTokens": 12, "totalTokens": 1912}, "metrics": {"latencyMs": 400}}}'
)


@pytest.mark.parametrize("line", [DOC_SUCCESS_JSON, DOC_SUCCESS_QUOTED])
def test_documentation_success_line(line):
    result = parse_output_line(line)
    assert result.record_id == "3223593EFGH"
    assert result.text == "blue\n"
    assert (result.input_tokens, result.output_tokens) == (8, 3)
    assert not result.failed


def test_documentation_error_line():
    result = parse_output_line(DOC_ERROR)
    assert result.record_id == "1223213ABCD"
    assert result.failed
    assert (result.error_code, result.error_message) == ("400", "bad request")
    assert not result.retryable


def test_documentation_manifest():
    manifest = parse_manifest(DOC_MANIFEST)
    assert manifest.to_dict() == {
        "total_records": 10,
        "processed_records": 9,
        "success_records": 8,
        "error_records": 1,
        "input_tokens": 1234,
        "output_tokens": 567,
    }


def test_anthropic_and_converse_shapes():
    a = parse_output_line(ANTHROPIC)
    assert "<classification>Complaint" in a.text
    assert (a.input_tokens, a.output_tokens, a.stop_reason) == (2100, 31, "end_turn")
    c = parse_output_line(CONVERSE)
    assert c.text == "<classification>Refund Issues</classification>"
    assert (c.input_tokens, c.output_tokens, c.stop_reason) == (1900, 12, "end_turn")


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("429", True), ("500", True), ("ThrottlingException", True), ("ModelTimeoutException", True), ("400", False)],
)
def test_string_and_number_error_codes(code, retryable):
    quoted = code if code.isdigit() else f'"{code}"'
    result = parse_output_line('{"recordId": "R1", "error": {"errorCode": ' + quoted + ', "errorMessage": "m"}}')
    assert result.error_code == code
    assert result.retryable is retryable


def test_unreadable_lines_are_reported_not_fatal():
    stream = io.BytesIO(
        b"\n".join([ANTHROPIC.encode(), b"{not json", b'{"modelOutput": {}}', b"", CONVERSE.encode(), b"[1]"])
    )
    bad = []
    results = list(read_output_lines(stream, "x.jsonl.out", bad))
    assert [r.record_id for r in results] == ["R0000000001", "R0000000002"]
    assert [(b.file, b.line) for b in bad] == [("x.jsonl.out", 2), ("x.jsonl.out", 3), ("x.jsonl.out", 6)]


TAGS = OutputTags()


@pytest.mark.parametrize(
    ("reply", "label", "explanation"),
    [
        (
            "<classification>Complaint</classification><explanation>Rude staff.</explanation>",
            "Complaint",
            "Rude staff.",
        ),
        (
            "Sure!\n<classification>\n  Complaint\n</classification>\n\n<explanation>\nRude.\n</explanation>\nThanks",
            "Complaint",
            "Rude.",
        ),
        ('<classification>"Refund Issues"</classification>', "Refund Issues", None),
        ("<Classification>Complaint.</Classification>", "Complaint", None),
        (
            "<class>Software Defect</class> The export is broken since 4.2.",
            "Software Defect",
            "The export is broken since 4.2.",
        ),
        ("<class>Software Defect</class>\n<rationale>Broken.</rationale>", "Software Defect", "Broken."),
        ("<classification>Complaint", "Complaint", None),
        ("<classification>Complaint\n<explanation>cut off", "Complaint", "cut off"),
        ("I think it is a complaint.", None, None),
        ("<classification></classification>", None, None),
    ],
)
def test_extract_answer(reply, label, explanation):
    answer = extract_answer(reply, TAGS)
    assert answer.label == label
    if label is not None:
        assert answer.explanation == explanation


@pytest.mark.parametrize("line", [DOC_SUCCESS_JSON, DOC_ERROR, ANTHROPIC, CONVERSE])
def test_fast_path_on_bytes_agrees_with_the_full_parse(line):
    assert parse_output_line(line.encode()) == parse_output_line(line)


def test_text_that_mentions_the_keys_does_not_fool_the_parser():
    sneaky = 'He typed "modelOutput": {"content": []} and "error": {"errorCode": 500} in chat'
    model_in = {"messages": [{"role": "user", "content": [{"type": "text", "text": sneaky}]}]}
    answer = {"content": [{"type": "text", "text": "<classification>Complaint</classification>"}]}
    line = json.dumps({"recordId": "R0000000009", "modelInput": model_in, "modelOutput": answer})
    result = parse_output_line(line.encode())
    assert result.text == "<classification>Complaint</classification>"
    assert not result.failed
    failed = json.dumps({"recordId": "R0000000009", "modelInput": model_in, "error": {"errorCode": 429}})
    assert parse_output_line(failed.encode()).error_code == "429"


@pytest.mark.parametrize(
    "reply",
    [
        "<classification>Refund Issues</classification><explanation>Asked for money back.</explanation>",
        "<Classification> Refund Issues </CLASSIFICATION>\n<explanation>x</explanation>",
        "< classification >Refund</classification><classification>Other</classification>",
        "<classification>the classification is Refund</classification>",
        "<classification>Refund< /classification>tail</classification>",
        "<classification>Refund</ classification>",
        "classification: Refund <classification>Refund</classification>",
        "<classification>Refund",
        "<classification></classification><explanation>empty label</explanation>",
        "<explanation>first</explanation><classification>Complaint</classification><confidence>85</confidence>",
        "<classification>Refund</classification>" * 2,
        "no tags at all",
    ],
)
def test_a_tag_found_without_a_search_is_the_one_the_search_finds(reply):
    for tag in ("classification", "explanation", "confidence", "rationale"):
        assert _tag_value(reply, tag, reply.lower()) == _tag_value(reply, tag)
