import pytest

from batch_classifier.labels import LabelMatcher, MatchMethod, normalise
from batch_classifier.tasks import load_task


@pytest.fixture(scope="module")
def matcher() -> LabelMatcher:
    return LabelMatcher(load_task("travel"))


@pytest.mark.parametrize(
    ("answer", "category", "method"),
    [
        ("Booking Inquiry", "Booking Inquiry", MatchMethod.EXACT),
        ("  Complaint ", "Complaint", MatchMethod.EXACT),
        ("booking inquiry", "Booking Inquiry", MatchMethod.NORMALISED),
        ('"Refund  Issues"', "Refund Issues", MatchMethod.NORMALISED),
        ("refund-issues.", "Refund Issues", MatchMethod.NORMALISED),
        ("Hotel/Flight Booking Inquiry", "Booking Inquiry", MatchMethod.ALIAS),
        ("tech support", "Technical Support", MatchMethod.ALIAS),
        ("Booking Inquiries", "Booking Inquiry", MatchMethod.FUZZY),
        ("Cancelation Request", "Cancellation Request", MatchMethod.FUZZY),
        ("Loyalty Programme", "Loyalty Program", MatchMethod.ALIAS),
    ],
)
def test_matching_order(matcher, answer, category, method):
    found = matcher.match(answer)
    assert (found.category, found.method) == (category, method)


@pytest.mark.parametrize("answer", ["Weather", "I cannot classify this", "", "   ", "Other"])
def test_off_list_answers_are_not_substituted(matcher, answer):
    found = matcher.match(answer)
    assert found.category is None
    assert found.method is MatchMethod.NONE


def test_normalise():
    assert normalise("  Café & Bar / Lounge! ") == "cafe and bar lounge"
    assert normalise("“Complaint”") == "complaint"


def test_fuzzy_threshold_is_the_tasks():
    strict = load_task("travel").model_copy(update={"fuzzy_threshold": 0.99})
    assert LabelMatcher(strict).match("Booking Inquiries").category is None
