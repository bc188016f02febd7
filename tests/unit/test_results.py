import pytest

from batch_classifier.labels import LabelMatcher, MatchMethod
from batch_classifier.outputs import ModelResult
from batch_classifier.records import CanonicalRecord, RowStatus, record_id
from batch_classifier.results import (
    MISSING_REASON,
    ResultsJoinError,
    Verdict,
    join_verdicts,
    judge,
    judge_results,
    merge_verdicts,
    read_verdicts,
)
from batch_classifier.tasks import load_task

TASK = load_task("travel")
MATCHER = LabelMatcher(TASK)
OK = Verdict(RowStatus.CLASSIFIED, category="Complaint", rationale="r", match=MatchMethod.EXACT, answer="Complaint")
ERR = Verdict(RowStatus.MODEL_ERROR, reason="error 429", retryable=True)


def reply(rid: str, text: str, stop: str = "end_turn") -> ModelResult:
    return ModelResult(record_id=rid, text=text, input_tokens=10, output_tokens=2, stop_reason=stop)


@pytest.mark.parametrize(
    ("result", "status", "category"),
    [
        (reply("R1", "<classification>Complaint</classification>"), RowStatus.CLASSIFIED, "Complaint"),
        (reply("R1", "<classification>Weather</classification>"), RowStatus.OFF_LIST, None),
        (reply("R1", "no tags at all"), RowStatus.UNPARSEABLE, None),
        (ModelResult(record_id="R1", error_code="500", error_message="boom"), RowStatus.MODEL_ERROR, None),
        (None, RowStatus.MODEL_ERROR, None),
    ],
)
def test_judge(result, status, category):
    verdict = judge(result, MATCHER, TASK)
    assert (verdict.status, verdict.category) == (status, category)


def test_off_list_keeps_the_raw_answer_and_cut_off_replies_say_so():
    assert judge(reply("R1", "<classification>Weather</classification>"), MATCHER, TASK).answer == "Weather"
    cut = judge(reply("R1", "I think", stop="max_tokens"), MATCHER, TASK)
    assert "cut off at max_tokens" in cut.reason


def test_verdict_lines_round_trip():
    for verdict in (OK, ERR, Verdict(RowStatus.UNPARSEABLE)):
        assert Verdict.from_json(verdict.to_json(7)) == (7, verdict)


def test_judge_results_prefers_answers_and_counts_foreign_ids():
    results = [
        ModelResult(record_id=record_id(1), error_code="429"),
        reply(record_id(1), "<classification>Complaint</classification>"),
        ModelResult(record_id=record_id(2), error_code="429"),
        reply("XYZ", "<classification>Complaint</classification>"),
        reply(record_id(99), "<classification>Complaint</classification>"),
    ]
    judged = judge_results(results, MATCHER, TASK, known=lambda i: 0 < i <= 10)
    assert judged.verdicts[1].status is RowStatus.CLASSIFIED
    assert judged.verdicts[2].status is RowStatus.MODEL_ERROR
    assert judged.unknown_records == 2
    assert list(read_verdicts(judged.sorted_lines())) == [(1, judged.verdicts[1]), (2, judged.verdicts[2])]


def test_merge_prefers_an_answer_then_the_latest_error():
    later_error = Verdict(RowStatus.MODEL_ERROR, reason="error 500")
    merged = list(merge_verdicts([[(1, ERR), (3, OK)], [(1, OK), (2, ERR)], [(2, later_error), (3, ERR)]]))
    assert merged == [(1, OK), (2, later_error), (3, OK)]


def _record(row: int, index: int | None, first: bool) -> CanonicalRecord:
    return CanonicalRecord(row=row, id=str(row), text="t", rid=record_id(index) if index else None, first=first)


def test_join_fans_shared_verdicts_out_and_marks_missing_records():
    records = [
        _record(1, 1, True),
        _record(2, 2, True),
        _record(3, 1, False),
        _record(4, None, False),
        _record(5, 3, True),
        _record(6, 3, False),
    ]
    joined = list(join_verdicts(records, [(1, OK), (3, ERR)], shared={1, 3}))
    assert [r.row for r, _ in joined] == [1, 2, 3, 4, 5, 6]
    assert joined[0][1] is OK and joined[2][1] is OK
    assert joined[1][1].reason == MISSING_REASON
    assert joined[3][1] is None
    assert joined[4][1] is ERR and joined[5][1] is ERR


def test_join_refuses_records_that_do_not_match_their_shared_list():
    with pytest.raises(ResultsJoinError, match="row 2 repeats text R0000000001"):
        list(join_verdicts([_record(1, 1, True), _record(2, 1, False)], [(1, OK)], shared=set()))
