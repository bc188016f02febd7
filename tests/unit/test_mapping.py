from datetime import date

import pytest

from batch_classifier.errors import MissingColumnError
from batch_classifier.mapping import Converter, ConvertStats, RecordMapper, duplicate_id_examples
from batch_classifier.readers import Row
from batch_classifier.readers.table import Block
from batch_classifier.records import CanonicalRecord, RowStatus
from batch_classifier.tasks import InputMapping

COLUMNS = ["ticket", "subject", "body", "truth", "team"]


def rows(*values: dict) -> list[Row]:
    return [Row(number=i, values=v) for i, v in enumerate(values, start=1)]


def test_missing_column_lists_the_file_columns():
    with pytest.raises(MissingColumnError) as caught:
        RecordMapper(InputMapping(text_columns=("text",), id_column="id"), COLUMNS, source="'a.csv'")
    message = str(caught.value)
    assert "'text', 'id'" in message
    assert "'ticket', 'subject', 'body', 'truth', 'team'" in message
    assert "'a.csv'" in message


def test_ids_of_any_type_become_strings_and_default_to_row_numbers():
    mapper = RecordMapper(InputMapping(text_columns=("body",), id_column="ticket"), COLUMNS)
    ids = [
        mapper.map(r).id
        for r in rows(
            {"ticket": 7, "body": "a"},
            {"ticket": 7.0, "body": "a"},
            {"ticket": " X-1 ", "body": "a"},
            {"ticket": date(2024, 1, 2), "body": "a"},
        )
    ]
    assert ids == ["7", "7", "X-1", "2024-01-02"]
    by_row = RecordMapper(InputMapping(text_columns=("body",)), COLUMNS)
    assert [by_row.map(r).id for r in rows({"body": "a"}, {"body": "b"})] == ["1", "2"]


def test_several_text_columns_are_joined_with_their_names():
    mapper = RecordMapper(InputMapping(text_columns=("subject", "body")), COLUMNS)
    record = mapper.map(Row(1, {"subject": "Login", "body": "It fails"}))
    assert record.text == "subject: Login\nbody: It fails"
    assert mapper.map(Row(2, {"subject": "", "body": "only body"})).text == "body: only body"


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_empty_text_is_invalid_input_with_a_reason(text):
    mapper = RecordMapper(InputMapping(text_columns=("body",)), COLUMNS)
    record = mapper.map(Row(5, {"body": text}, sheet="Cases"))
    assert record.status is RowStatus.INVALID_INPUT
    assert record.reason == "sheet 'Cases', row 5: no text in 'body'"


def test_empty_id_is_invalid_input():
    mapper = RecordMapper(InputMapping(text_columns=("body",), id_column="ticket"), COLUMNS)
    record = mapper.map(Row(3, {"ticket": None, "body": "text"}))
    assert record.status is RowStatus.INVALID_INPUT
    assert "'ticket' is empty" in record.reason


def test_long_text_is_truncated_and_flagged():
    mapper = RecordMapper(InputMapping(text_columns=("body",), max_text_chars=10), COLUMNS)
    record = mapper.map(Row(1, {"body": "x" * 25}))
    assert record.text == "x" * 10 and record.truncated
    assert record.status is RowStatus.PENDING


def test_label_and_carried_columns():
    mapping = InputMapping(text_columns=("body",), id_column="ticket", label_column="truth")
    mapper = RecordMapper(mapping, COLUMNS)
    record = mapper.map(Row(1, {"ticket": 1, "subject": "s", "body": "b", "truth": " Bug ", "team": "core"}))
    assert record.label == "Bug"
    # Every column but the id comes back; the single text column is restored from the record's text.
    assert mapper.layout.columns == ("subject", "body", "truth", "team")
    assert mapper.layout.text_column == "body"
    assert record.carry == {"subject": "s", "truth": " Bug ", "team": "core"}


def test_explicit_carry_columns_always_include_the_label():
    mapping = InputMapping(text_columns=("body",), label_column="truth", carry_columns=("team",))
    mapper = RecordMapper(mapping, COLUMNS)
    assert mapper.layout.columns == ("team", "truth")
    assert mapper.layout.text_column is None


def convert(blocks: list[list[Row]], mapper: RecordMapper, stats: ConvertStats) -> list[bytes]:
    """The record lines of ``blocks`` of rows, converted one block at a time."""
    converter = Converter(mapper, stats)
    lines = [line for rows in blocks for line in converter.block(Block.of(rows, COLUMNS)).records]
    converter.finish()
    return lines


def test_conversion_dedups_texts_and_reports_duplicate_ids():
    mapper = RecordMapper(InputMapping(text_columns=("body",), id_column="ticket"), COLUMNS)
    stats = ConvertStats()
    given = rows(
        {"ticket": 1, "body": "same"},
        {"ticket": 2, "body": "other"},
        {"ticket": 1, "body": "same"},
        {"ticket": 3, "body": ""},
        {"ticket": 4, "body": "other"},
    )
    records = [CanonicalRecord.from_json(line) for line in convert([given[:2], given[2:]], mapper, stats)]
    assert [r.rid for r in records] == ["R0000000001", "R0000000002", "R0000000001", None, "R0000000002"]
    assert [r.first for r in records] == [True, True, False, False, False]
    assert (stats.rows, stats.invalid, stats.distinct_texts, stats.duplicate_texts) == (5, 1, 2, 2)
    assert stats.duplicate_ids == 1
    assert duplicate_id_examples((r.id for r in records), stats.duplicate_id_hashes) == ["1"]
    assert stats.text_chars == len("same") + len("other")
    assert stats.shared == {1, 2}


@pytest.mark.parametrize(
    "values",
    [
        {"ticket": "a-1", "subject": "Login", "body": 'quotes " and \\ and \n and é \u2028 \x01', "team": None},
        {"ticket": " 7 ", "body": "x" * 30, "truth": " Bug "},  # truncated, label trimmed
        {"ticket": "", "body": "no id"},
        {"ticket": "8", "body": "  \t "},
        {"ticket": 9, "body": "a number id", "team": 3.5},  # a carried number: written by the json module
        {"ticket": "10", "body": "nan carried", "team": float("nan")},
        {"ticket": "11", "body": "a lone surrogate \ud800 in the text"},
    ],
)
def test_converted_lines_are_the_records_lines(values):
    """A block's lines, written the fast way where it can be, are those of its canonical records, byte for byte."""
    mapping = InputMapping(text_columns=("body",), id_column="ticket", label_column="truth", max_text_chars=20)
    mapper = RecordMapper(mapping, COLUMNS)
    plain = {"ticket": "p", "body": "a plain row before it"}
    lines = convert([rows(plain, values, plain)], mapper, ConvertStats())
    records = [mapper.map(row) for row in rows(plain, values, plain)]
    records[0].rid = records[2].rid = "R0000000001"
    records[0].first = True
    if records[1].status is RowStatus.PENDING:
        records[1].rid, records[1].first = "R0000000002", True
    assert lines == [record.to_line() + b"\n" for record in records]
    assert [CanonicalRecord.from_json(line).to_line() for line in lines] == [r.to_line() for r in records]


@pytest.mark.parametrize("label_column", ["truth", None])
def test_rows_alike_get_their_line_ends_from_one_format(label_column):
    """Every row of the block labelled (or none) and carrying text: the lines are still the records' own."""
    columns = ["ticket", "body", "truth", "100% team"]
    mapping = InputMapping(
        text_columns=("body",), id_column="ticket", label_column=label_column, carry_columns=("100% team",)
    )
    mapper = RecordMapper(mapping, columns)
    values = [
        {"ticket": "1", "body": "one", "truth": "Bug", "100% team": 'a "%s" \\ é'},
        {"ticket": "2", "body": "two", "truth": " Billing ", "100% team": ""},
    ]
    given = rows(*values)
    converter = Converter(mapper, ConvertStats())
    lines = converter.block(Block.of(given, columns)).records
    records = [mapper.map(row) for row in given]
    for number, record in enumerate(records, start=1):
        record.rid, record.first = f"R{number:010d}", True
    assert lines == [record.to_line() + b"\n" for record in records]


def test_a_label_column_is_found_by_name_when_not_given():
    mapper = RecordMapper(InputMapping(text_columns=("body",)), ["ticket", "body", "Class"])
    assert mapper.label_column == "Class"
    assert mapper.map(Row(1, {"body": "b", "Class": " Bug "})).label == "Bug"
    # Two candidates: ambiguous, so none is taken.
    assert RecordMapper(InputMapping(text_columns=("body",)), ["body", "label", "class"]).label_column is None
    # An explicit label column always wins.
    explicit = RecordMapper(InputMapping(text_columns=("body",), label_column="truth"), ["body", "truth", "class"])
    assert explicit.label_column == "truth"


def test_texts_get_indexes_in_order_of_their_first_row_within_and_across_blocks():
    mapper = RecordMapper(InputMapping(text_columns=("body",), id_column="ticket"), COLUMNS)
    stats = ConvertStats()
    converter = Converter(mapper, stats)
    bodies = [["a", "b", "a"], ["c", "", "b", "c", "d", "x" * 30_000, "d"]]
    lines, texts = [], []
    number = 0
    for block in bodies:
        rows_ = [Row(number + i + 1, {"ticket": f"t{number + i + 1}", "body": body}) for i, body in enumerate(block)]
        number += len(block)
        converted = converter.block(Block.of(rows_, COLUMNS))
        lines += converted.records
        texts += b"".join(converted.texts).splitlines()
    records = [CanonicalRecord.from_json(line) for line in lines]
    assert [r.row for r in records] == list(range(1, 11))
    assert [r.rid and int(r.rid[1:]) for r in records] == [1, 2, 1, 3, None, 2, 3, 4, 5, 4]
    assert [r.first for r in records] == [True, True, False, True, False, False, False, True, True, False]
    assert texts == [b'"a"', b'"b"', b'"c"', b'"d"', b'"' + b"x" * 20_000 + b'"']  # line k: the text of index k
    assert records[8].truncated and stats.truncated == 1
    assert (stats.distinct_texts, stats.duplicate_texts, stats.invalid) == (5, 4, 1)
    assert stats.shared == {1, 2, 3, 4}
