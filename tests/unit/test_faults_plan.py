"""The local runtime's fault plan: its JSON form, its checks, and function faults counted down in order."""

from __future__ import annotations

import pytest

from batch_classifier_local.faults import FaultPlan, FunctionFault, function_key


def test_a_plan_round_trips_through_its_json_form() -> None:
    plan = FaultPlan.from_dict(
        {
            "job_statuses": {"shard-00001": "Expired"},
            "record_errors": {"429": 2},
            "malformed_lines": 1,
            "slow_on_demand_seconds": 0.5,
            "functions": {"process_shard": {"crash": 1, "timeout": 2}},
        }
    )
    assert FaultPlan.from_dict(plan.to_dict()) == plan
    assert plan.to_dict()["functions"] == {
        "processshard": {"fail": 0, "crash": 1, "timeout": 2, "error": "Lambda.ServiceException"}
    }


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"surprise": 1}, "unknown fault plan fields"),
        ({"functions": {"FinalizeRun": {"explode": 1}}}, "unknown fields"),
        ({"functions": {"FinalizeRun": 3}}, "must be an object"),
        ({"functions": {"FinalizeRun": {"fail": -1}}}, "whole number"),
        ({"slow_on_demand_seconds": "fast"}, "number of seconds"),
        ({"malformed_lines": 1.5}, "whole number"),
        ({"job_statuses": {"shard-": "Done"}}, "use one of"),
    ],
)
def test_a_bad_plan_is_refused_with_what_is_wrong(plan: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.from_dict(plan)


def test_function_faults_are_taken_in_order_and_counted_down() -> None:
    plan = FaultPlan.from_dict({"functions": {"ProcessShard": {"fail": 1, "crash": 1, "timeout": 1, "error": "Boom"}}})
    taken = [plan.function_fault("ProcessShardFunction") for _ in range(4)]
    assert taken == [(FunctionFault.FAIL, "Boom"), (FunctionFault.CRASH, "Boom"), (FunctionFault.TIMEOUT, "Boom"), None]
    assert plan.function_fault("FinalizeRunFunction") is None


def test_a_function_is_named_by_its_state_logical_id_or_folder() -> None:
    assert function_key("ProcessShard") == function_key("ProcessShardFunction") == function_key("process_shard")
