"""Pre-flight: a run's estimated cost against the lower of the stack's and the task's caps."""

from __future__ import annotations

import pytest

from batch_classifier.errors import SpendCapError
from batch_classifier.spending import Preflight, enforce, preflight, spend_cap
from batch_classifier.tasks import load_task

PLAN = {"rows": 1000, "distinct_texts": 900, "text_chars": 900 * 1500}


@pytest.mark.parametrize(
    ("stack", "task_cap", "expected"), [(0, None, None), (5, None, 5), (0, 3, 3), (5, 3, 3), (2, 3, 2)]
)
def test_the_cap_is_the_lower_of_the_stacks_and_the_tasks(stack: float, task_cap: float | None, expected) -> None:
    task = load_task("travel").model_copy(update={"max_cost_usd": task_cap})
    assert spend_cap(stack, task) == expected


def test_on_demand_requests_cost_more_than_batch_ones() -> None:
    task = load_task("travel")
    batch, on_demand = preflight(task, PLAN, 0.0, 0), preflight(task, PLAN, 1.0, 0)
    assert 0 < batch.estimated_usd < on_demand.estimated_usd
    assert batch.input_tokens == on_demand.input_tokens > 900 * 300


def test_above_the_cap_is_a_named_error_that_says_how_to_go_on() -> None:
    enforce(Preflight(10, 10, 1.5, None), "m")  # no cap
    enforce(Preflight(10, 10, 1.5, 1.5), "m")  # at the cap
    with pytest.raises(SpendCapError, match=r"about \$1\.50 .* above the cap of \$1\.00 .* redrive"):
        enforce(Preflight(10, 10, 1.5, 1.0), "m")
