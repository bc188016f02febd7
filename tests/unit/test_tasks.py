from pathlib import Path

import pytest

from batch_classifier.errors import TaskError
from batch_classifier.prompts import render_prompt
from batch_classifier.tasks import InvocationType, bundled_task_names, load_task, parse_task

TRAVEL_CLASSES = [
    "Booking Inquiry",
    "Reservation Change",
    "Cancellation Request",
    "Refund Issues",
    "Travel Information",
    "Complaint",
    "Payment Problem",
    "Loyalty Program",
    "Special Accommodation",
    "Technical Support",
]
SUPPORT_CLASSES = [
    "Billing Inquiry",
    "Security Awareness",
    "Feature Request",
    "Software Defect",
    "Documentation Improvement",
    "Customer Education",
]

MINIMAL = """
name: tiny
persona: You sort fruit.
input: {text_columns: [text]}
categories:
  - {name: Apple, description: red or green}
  - {name: Pear, description: pear-shaped}
"""


def test_bundled_tasks_have_the_seed_categories():
    assert bundled_task_names() == ["support-root-cause", "travel"]
    assert load_task("travel").category_names == TRAVEL_CLASSES
    assert load_task("support-root-cause").category_names == SUPPORT_CLASSES


@pytest.mark.parametrize("name", ["travel", "support-root-cause"])
def test_bundled_tasks_have_good_and_bad_examples(name):
    task = load_task(name)
    for category in task.categories:
        assert category.examples and category.bad_examples, category.name
        assert category.aliases, category.name


def test_task_file_by_path_and_defaults(tmp_path: Path):
    path = tmp_path / "tiny.yaml"
    path.write_text(MINIMAL)
    task = load_task(path)
    assert task.name == "tiny"
    assert task.invocation_type is InvocationType.INVOKE_MODEL
    assert task.batch.min_records_per_job == 100
    assert task.batch.max_records_per_job == 50_000
    assert task.batch.max_bytes_per_file == 1_000_000_000


def test_unknown_task_lists_bundled_names():
    with pytest.raises(TaskError, match="support-root-cause, travel"):
        load_task("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("categories:\n  - {name: Apple, description: x}\n", "categories"),
        ("max_tokens: 0\n", "max_tokens"),
        ("temperature: 3\n", "temperature"),
        ("invocation_type: Carrier\n", "invocation_type"),
        ("model_id: amazon.nova-lite-v1:0\n", "use Converse"),
        ("user_template: no placeholder\n", "exactly once"),
        ("unknown_setting: 1\n", "unknown_setting"),
        ("batch: {min_records_per_job: 10, max_records_per_job: 5}\n", "must not exceed"),
    ],
)
def test_invalid_tasks_are_rejected_with_the_field(change: str, message: str):
    with pytest.raises(TaskError, match=message):
        parse_task(MINIMAL + change, "tiny.yaml")


def test_alias_shared_by_two_categories_is_rejected():
    text = MINIMAL.replace("{name: Pear, description: pear-shaped}", "{name: Pear, description: p, aliases: [apple]}")
    with pytest.raises(TaskError, match="used by both"):
        parse_task(text)


def test_bad_example_must_name_another_category():
    text = MINIMAL.replace(
        "{name: Pear, description: pear-shaped}",
        "{name: Pear, description: p, bad_examples: [{text: t, correct: Plum, reasoning: r}]}",
    )
    with pytest.raises(TaskError, match="another category"):
        parse_task(text)


def test_converse_allows_any_model():
    task = parse_task(MINIMAL + "model_id: amazon.nova-lite-v1:0\ninvocation_type: Converse\n")
    assert task.invocation_type is InvocationType.CONVERSE


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(TaskError, match="not valid YAML"):
        parse_task("a: [", "x.yaml")
    with pytest.raises(TaskError, match="mapping"):
        parse_task("- 1\n- 2\n", "x.yaml")


def test_prompt_lists_categories_as_xml_with_examples():
    task = load_task("travel")
    prompt = render_prompt(task)
    for name in TRAVEL_CLASSES:
        assert f"<name>{name}</name>" in prompt.system
    assert prompt.system.count("<category>") == 10
    assert "<good_examples>" in prompt.system and "<bad_examples>" in prompt.system
    assert "<correct_category>Reservation Change</correct_category>" in prompt.system
    assert "<classification>" in prompt.system and "<explanation>" in prompt.system
    assert prompt.user_message("hello") == prompt.user_prefix + "hello" + prompt.user_suffix
    assert "{{" not in prompt.system


def test_task_round_trips_through_yaml():
    task = load_task("travel")
    assert parse_task(task.to_yaml()) == task


def test_overrides_keep_the_rest_of_the_mapping():
    mapping = load_task("travel").input.with_overrides(label_column="class")
    assert mapping.label_column == "class"
    assert mapping.text_columns == ("conversation",)
    assert mapping.id_column == "conversation_id"
