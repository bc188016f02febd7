"""The console's pure parts: the state machine's layout and SVG (graph.py), and the event history with its poll
loops collapsed (history.py). Checked on the product's own ASL and on small definitions made for each case."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from workflow_helpers import HAPPY

from batch_classifier_local.console.graph import Graph, Node, NodeView, condition_text, layout, render_svg
from batch_classifier_local.console.history import history_rows

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "batch_classifier.asl.json"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return json.loads(ASL.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def graph(workflow: dict) -> Graph:
    return layout(workflow)


def inside(inner: Node, outer: Node) -> bool:
    return (
        outer.x <= inner.x
        and inner.x + inner.width <= outer.x + outer.width
        and outer.y <= inner.y
        and inner.y + inner.height <= outer.y + outer.height
    )


def overlap(a: Node, b: Node) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def edge(graph: Graph, source: str, target: str, kind: str):
    found = [e for e in graph.edges if (e.source, e.target, e.kind) == (source, target, kind)]
    assert len(found) == 1, f"no single {kind} edge {source} → {target}: {found}"
    return found[0]


# --- layout of the product's state machine ------------------------------------------------------------------


def test_every_state_is_placed_once_inside_the_drawing(workflow, graph):
    top = set(workflow["States"])
    inner = set(workflow["States"]["ProcessShards"]["ItemProcessor"]["States"])
    assert set(graph.nodes) == top | {f"ProcessShards/{name}" for name in inner}
    processor = workflow["States"]["ProcessShards"]["ItemProcessor"]["States"]
    for node in graph.nodes.values():
        assert node.width > 0 and node.height > 0
        assert node.x >= 0 and node.x + node.width <= graph.width
        assert node.y >= 0 and node.y + node.height <= graph.height
        assert node.type == (processor if node.parent else workflow["States"])[node.name]["Type"]
    assert graph.start == "RegisterRun" and graph.nodes["RegisterRun"].layer == 0


def test_states_of_one_scope_do_not_overlap(graph):
    by_scope: dict[str | None, list[Node]] = {}
    for node in graph.nodes.values():
        by_scope.setdefault(node.parent, []).append(node)
    for nodes in by_scope.values():
        for a, b in itertools.combinations(nodes, 2):
            assert not overlap(a, b), f"{a.id} overlaps {b.id}"


def test_the_maps_item_processor_is_drawn_inside_the_map(graph):
    holder = graph.nodes["ProcessShards"]
    assert holder.container
    children = graph.children("ProcessShards")
    assert {c.name for c in children} == {
        "IsBatchShard?",
        "SubmitJob",
        "WaitForJob",
        "CheckJob",
        "JobEnded?",
        "ProcessShard",
    }
    for child in children:
        assert child.parent == "ProcessShards"
        assert inside(child, holder), child.id
    # Nothing outside the map is drawn over it.
    for other in graph.nodes.values():
        if other.parent is None and other is not holder:
            assert not overlap(other, holder), other.id


def test_edges_follow_next_choices_default_and_catch(graph):
    assert edge(graph, "RegisterRun", "IsDuplicateRun?", "next").label == ""
    assert edge(graph, "IsDuplicateRun?", "DuplicateRunIgnored", "choice").label == "$.run.duplicate == true"
    assert edge(graph, "IsDuplicateRun?", "ConvertInput", "default").label == "default"
    caught = edge(graph, "ConvertInput", "MarkRunFailed", "catch")
    assert "MissingColumnError" in caught.label and caught.label.startswith("catch ")
    # Inside the map: its own edges, with the state paths.
    assert edge(graph, "ProcessShards/IsBatchShard?", "ProcessShards/SubmitJob", "choice").label == (
        '$.shard.kind == "batch"'
    )
    assert edge(graph, "ProcessShards/IsBatchShard?", "ProcessShards/ProcessShard", "default")
    assert edge(graph, "ProcessShards/JobEnded?", "ProcessShards/ProcessShard", "choice").label == "$.job.done == true"
    # A Catch to the state Next goes to is still an edge of its own.
    assert edge(graph, "NotifyRunFailed", "RunFailed", "next") and edge(graph, "NotifyRunFailed", "RunFailed", "catch")
    # No edge leaves its scope.
    for e in graph.edges:
        assert graph.nodes[e.source].parent == graph.nodes[e.target].parent


def test_loops_go_back_up_and_everything_else_goes_down(graph):
    back = {(e.source, e.target) for e in graph.edges if e.back}
    assert back == {("RetryNeeded?", "ProcessShards"), ("ProcessShards/JobEnded?", "ProcessShards/WaitForJob")}
    for e in graph.edges:
        source, target = graph.nodes[e.source], graph.nodes[e.target]
        assert len(e.points) >= 2
        if e.back:
            assert target.layer <= source.layer
            assert e.points[0][1] > e.points[-1][1]  # drawn upwards
        else:
            assert target.layer > source.layer
            assert e.points[0][1] <= e.points[-1][1]  # from the bottom of one to the top of the other
            assert e.points[0][1] == pytest.approx(source.y + source.height)
            assert e.points[-1][1] == pytest.approx(target.y)


def test_the_main_path_runs_top_to_bottom(graph):
    tops = [graph.nodes[name].y for name in HAPPY]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)


# --- layout of made-up definitions --------------------------------------------------------------------------


def test_unreachable_states_parallel_branches_and_self_loops_are_placed():
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                    {
                        "StartAt": "Poll",
                        "States": {
                            "Poll": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Poll"}],
                                "Default": "Right",
                            },
                            "Right": {"Type": "Succeed"},
                        },
                    },
                ],
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
            "Orphan": {"Type": "Fail", "Error": "Never", "Cause": "nothing goes here"},
        },
    }
    graph = layout(definition)
    assert set(graph.nodes) == {"Both", "Done", "Orphan", "Both/0/Left", "Both/1/Poll", "Both/1/Right"}
    assert inside(graph.nodes["Both/0/Left"], graph.nodes["Both"])
    assert inside(graph.nodes["Both/1/Right"], graph.nodes["Both"])
    assert not overlap(graph.nodes["Both/0/Left"], graph.nodes["Both/1/Poll"])
    loop = edge(graph, "Both/1/Poll", "Both/1/Poll", "choice")
    assert loop.back and loop.label == "$.n < 3"
    assert graph.nodes["Orphan"].layer == 0  # placed, with nothing leading to it


def test_long_edges_pass_between_the_states_they_skip():
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "D"}], "Default": "B"},
            "B": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Pass", "Next": "D"},
            "D": {"Type": "Succeed"},
        },
    }
    graph = layout(definition)
    skip = edge(graph, "A", "D", "choice")
    assert skip.label == "$.x is present"
    assert len(skip.points) == 2 + 2 * 2  # through the layers of B and C
    for x, y in skip.points[1:-1]:
        for name in ("B", "C"):
            node = graph.nodes[name]
            assert not (node.x <= x <= node.x + node.width and node.y < y < node.y + node.height)


def test_conditions_read_in_a_few_words():
    assert condition_text({"Variable": "$.job.done", "BooleanEquals": True}) == "$.job.done == true"
    assert condition_text({"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.max"}) == "$.n >= $.max"
    assert condition_text({"Variable": "$.s", "StringMatches": "a*"}) == '$.s matches "a*"'
    rule = {"And": [{"Variable": "$.a", "IsNull": False}, {"Not": {"Variable": "$.b", "StringEquals": "x"}}]}
    assert condition_text(rule) == '$.a is not null and not ($.b == "x")'
    assert condition_text(rule, short=True) == 'a is not null and not (b == "x")'
    assert condition_text({"Condition": "{% $states.input.n > 3 %}"}) == "$states.input.n > 3"


# --- SVG ------------------------------------------------------------------------------------------------------


def test_the_svg_colours_each_state_by_its_view(graph):
    views = {
        "RegisterRun": NodeView("succeeded"),
        "FinalizeRun": NodeView("failed", badge="Runtime.ExitError"),
        "ProcessShards": NodeView("succeeded", badge="2 items · 2 succeeded · 0 failed"),
        "ProcessShards/SubmitJob": NodeView("unrecorded"),
    }
    root = ET.fromstring(render_svg(graph, views))
    states = {g.get("data-state"): g for g in root.iter(f"{SVG}g") if g.get("data-state")}
    assert set(states) == set(graph.nodes)
    assert states["FinalizeRun"].get("data-status") == "failed"
    assert "status-failed" in states["FinalizeRun"].get("class", "")
    assert states["RegisterRun"].get("data-status") == "succeeded"
    assert states["RunSucceeded"].get("data-status") == "not-reached"
    assert states["ProcessShards/SubmitJob"].get("data-status") == "unrecorded"
    texts = ["".join(t.itertext()) for t in states["ProcessShards"].iter(f"{SVG}text")]
    assert "2 items · 2 succeeded · 0 failed" in texts
    assert len([g for g in root.iter(f"{SVG}g") if "edge" in (g.get("class") or "").split()]) == len(
        {(e.source, e.target) for e in graph.edges}
    )


def test_the_svg_escapes_names_labels_and_tooltips():
    hostile = '<img src=x onerror="alert(1)">&'
    definition = {
        "StartAt": hostile,
        "States": {
            hostile: {
                "Type": "Choice",
                "Comment": "</title><script>alert(2)</script>",
                "Choices": [{"Variable": "$.x", "StringEquals": "</text><script>", "Next": "End"}],
                "Default": "End",
            },
            "End": {"Type": "Succeed"},
        },
    }
    svg = render_svg(layout(definition), {hostile: NodeView("failed", badge="<b>", title="<script>alert(3)</script>")})
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    root = ET.fromstring(svg)  # well-formed XML, whatever the names hold
    names = [g.get("data-name") for g in root.iter(f"{SVG}g") if g.get("data-state")]
    assert hostile in names


# --- history with its poll loops collapsed -------------------------------------------------------------------

START = datetime(2026, 1, 1, tzinfo=UTC)


def events_of(*passages: tuple[str, str, list[str]]) -> list[dict]:
    """Events of an execution that passes through states: (state type, name, the task events in between)."""
    events: list[dict] = [{"type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}}]
    for kind, name, inner in passages:
        events.append({"type": f"{kind}StateEntered", "stateEnteredEventDetails": {"name": name, "input": "{}"}})
        for task_event in inner:
            detail = {"error": "Lambda.ServiceException", "cause": "boom"} if task_event == "TaskFailed" else {}
            events.append({"type": task_event, "taskFailedEventDetails" if detail else "other": detail})
        events.append({"type": f"{kind}StateExited", "stateExitedEventDetails": {"name": name, "output": "{}"}})
    events.append({"type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": "{}"}})
    for index, event in enumerate(events):
        event["id"] = index + 1
        event["timestamp"] = START + timedelta(seconds=index)
    return events


TASK = ["TaskScheduled", "TaskStarted", "TaskSucceeded"]
TURN = [("Wait", "WaitForJob", []), ("Task", "CheckJob", TASK), ("Choice", "JobEnded?", [])]


def test_a_poll_loop_is_one_row_with_its_count():
    events = events_of(("Task", "SubmitJob", TASK), *TURN * 5, ("Task", "ProcessShard", TASK))
    rows = history_rows(events)
    loops = [row for row in rows if row["kind"] == "loop"]
    assert len(loops) == 1
    loop = loops[0]
    assert loop["states"] == ["WaitForJob", "CheckJob", "JobEnded?"] and loop["count"] == 5
    assert loop["detail"] == "WaitForJob → CheckJob → JobEnded? ×5"
    assert loop["events"] == 5 * (2 + 5 + 2)
    assert (loop["first_id"], loop["last_id"]) == (7, 6 + loop["events"])  # after the start and SubmitJob (2-6)
    # Every other event is a row of its own, in order, and nothing is lost.
    singles = [row for row in rows if row["kind"] == "event"]
    assert len(singles) + loop["events"] == len(events)
    assert [row["type"] for row in singles][:2] == ["ExecutionStarted", "TaskStateEntered"]
    assert singles[2]["state"] == "SubmitJob" and singles[2]["type"] == "TaskScheduled"
    assert rows.index(loop) == 1 + 5  # after the start and SubmitJob's five events


def test_a_turn_that_differs_breaks_the_loop_and_is_shown_in_full():
    retried = [("Wait", "WaitForJob", []), ("Task", "CheckJob", ["TaskScheduled", "TaskStarted", "TaskFailed", *TASK])]
    events = events_of(*TURN * 3, *retried, ("Choice", "JobEnded?", []), *TURN * 2)
    rows = history_rows(events)
    loops = [row for row in rows if row["kind"] == "loop"]
    assert [loop["count"] for loop in loops] == [3, 2]
    failed = [row for row in rows if row["kind"] == "event" and row["failed"]]
    assert [(row["type"], row["state"], row["detail"]) for row in failed] == [
        ("TaskFailed", "CheckJob", "Lambda.ServiceException: boom")
    ]
    assert sum(row["events"] if row["kind"] == "loop" else 1 for row in rows) == len(events)


def test_a_loop_without_a_wait_is_not_a_poll_loop():
    retry_round = [("Map", "ProcessShards", []), ("Task", "PlanRetries", TASK), ("Choice", "RetryNeeded?", [])]
    rows = history_rows(events_of(*retry_round * 3))
    assert all(row["kind"] == "event" for row in rows)
