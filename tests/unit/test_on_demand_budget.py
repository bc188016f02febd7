"""On-demand shards work to the invocation's time: answers are kept, unsent records go to the next round.

The calls run against fake bedrock-runtime clients that are slow or throttle. Most tests drive a fake clock that
only the calls (and the backoff pauses) move, so what gets sent is exact; with one call at a time
(``concurrency=1``) the order of the calls is the order of the records. The handler test runs on the real clock
with a budget of a fraction of a second.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import boto3
import pytest
from aws_fixtures import CUSTOMER, ENVIRONMENT, INTERNAL, LambdaContext, conversations_csv, create_cloud, load_handler
from aws_fixtures import reply_for as answer_for
from moto import mock_aws

from batch_classifier import aws, bedrock, run_results, runs
from batch_classifier.bedrock import CallBudget, budget_margin, invoke_on_demand
from batch_classifier.finalize import finalize_run
from batch_classifier.records import record_id
from batch_classifier.results import NOT_SENT, OUT_OF_TIME, OUT_OF_TIME_REASON, UNSENT_REASON
from batch_classifier.runs import (
    ShardRetries,
    convert_input,
    last_round,
    plan_retries,
    process_shard,
    register_run,
    results_key,
    retries_key,
    shard_records,
)
from batch_classifier.settings import Settings
from batch_classifier.status import ShardStatus
from batch_classifier.storage import RunFiles
from batch_classifier.workflow import ObjectCreated, RoundPlan, RunRef, ShardRef

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
THROTTLED = boto3.client("bedrock-runtime", region_name="us-east-1").exceptions.ThrottlingException


class FakeClock:
    """Monotonic seconds that move only when a call or a pause says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeRuntime:
    """bedrock-runtime's InvokeModel as an Anthropic model answers it; each call takes ``seconds(text)`` on the
    clock, and the texts ``throttle(text)`` names get ThrottlingException."""

    def __init__(
        self,
        clock: FakeClock | None = None,
        seconds: Callable[[str], float] = lambda text: 30.0,
        throttle: Callable[[str], bool] = lambda text: False,
        real_seconds: float = 0.0,
    ) -> None:
        self.clock = clock
        self.seconds = seconds
        self.throttle = throttle
        self.real_seconds = real_seconds
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def invoke_model(self, modelId: str, body: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803 - boto3's names
        text = json.loads(body)["messages"][0]["content"][0]["text"]
        with self._lock:
            self.calls.append(text)
        if self.clock is not None:
            self.clock.advance(self.seconds(text))
        if self.real_seconds:
            time.sleep(self.real_seconds)
        if self.throttle(text):
            raise THROTTLED({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel")
        reply = {
            "content": [{"type": "text", "text": answer_for(text)}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1500, "output_tokens": 20},
        }
        return {"body": io.BytesIO(json.dumps(reply).encode())}


def lines(count: int) -> list[bytes]:
    """Batch input lines whose texts are ``text <n>``, record ids R1..Rcount."""
    return [
        json.dumps(
            {
                "recordId": record_id(n),
                "modelInput": {"messages": [{"role": "user", "content": [{"type": "text", "text": f"text {n}"}]}]},
            }
        ).encode()
        + b"\n"
        for n in range(1, count + 1)
    ]


# --- the budget ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining_ms", "budget"),
    [
        (900_000, 810.0),  # 10% of a long invocation: 90 s for the writes
        (300_000, 270.0),
        (100_000, 90.0),  # the floor from here down: 10 s
        (60_000, 50.0),
        (10_000, 0.0),
        (4_000, -6.0),  # less time than the margin: nothing is sent
    ],
)
def test_the_margin_is_the_larger_of_ten_seconds_and_a_tenth(remaining_ms: int, budget: float) -> None:
    clock = FakeClock()
    made = CallBudget.for_invocation(lambda: remaining_ms, clock)
    assert made.deadline - clock.now == pytest.approx(budget)
    assert budget_margin(remaining_ms / 1000) == pytest.approx(remaining_ms / 1000 - budget)


@pytest.mark.parametrize("remaining_ms", [None, lambda: "soon", lambda: None, lambda: float("nan")])
def test_without_a_usable_remaining_time_the_budget_is_lambdas_longest_timeout(remaining_ms: Any) -> None:
    clock = FakeClock()
    assert CallBudget.for_invocation(remaining_ms, clock).deadline - clock.now == pytest.approx(810.0)


def test_the_remaining_time_is_read_once_and_counted_down_on_the_clock() -> None:
    # The local runtime's context answers the function's whole timeout on every call: reading it once is right there.
    clock = FakeClock()
    reads = []
    budget = CallBudget.for_invocation(lambda: reads.append(1) or 60_000, clock)
    clock.advance(20)
    assert budget.left() == pytest.approx(30.0) and reads == [1]


def test_no_call_starts_when_there_is_no_time_left() -> None:
    clock = FakeClock()
    fake = FakeRuntime(clock)
    budget = CallBudget.for_invocation(lambda: 9_000, clock)

    results = list(invoke_on_demand(fake, MODEL, "InvokeModel", lines(5), budget=budget))

    assert fake.calls == []
    assert [(r.record_id, r.error_code) for r in results] == [(record_id(n), NOT_SENT) for n in range(1, 6)]


# --- the calls -----------------------------------------------------------------------------------------


def test_calls_stop_when_the_slowest_call_seen_no_longer_fits() -> None:
    clock = FakeClock()
    fake = FakeRuntime(clock, seconds=lambda text: 30.0)
    budget = CallBudget(100, clock)  # fits calls starting at 0, 30 and 60 s; not at 90 s (10 s left)
    start = clock.now

    results = {r.record_id: r for r in invoke_on_demand(fake, MODEL, "InvokeModel", lines(8), 1, budget=budget)}

    assert fake.calls == ["text 1", "text 2", "text 3"]
    assert sorted(results) == [record_id(n) for n in range(1, 9)]  # every record comes back, once
    assert [n for n in range(1, 9) if not results[record_id(n)].failed] == [1, 2, 3]
    assert {results[record_id(n)].error_code for n in range(4, 9)} == {NOT_SENT}
    assert clock.now - start == 90.0 <= budget.deadline - start


def test_a_throttled_record_is_tried_again_only_while_a_call_fits() -> None:
    clock = FakeClock()
    fake = FakeRuntime(clock, seconds=lambda text: 30.0, throttle=lambda text: True)
    budget = CallBudget(100, clock)

    results = {
        r.record_id: r for r in invoke_on_demand(fake, MODEL, "InvokeModel", lines(3), 1, 5, clock.advance, budget)
    }

    # Throttled at 30 s and at 60+ s (pauses under 1 and 2 s); after 90+ s no 30 s call fits: its error stands.
    assert fake.calls == ["text 1"] * 3
    assert results[record_id(1)].error_code == "ThrottlingException" and results[record_id(1)].retryable
    assert results[record_id(2)].error_code == results[record_id(3)].error_code == NOT_SENT
    assert clock.now <= budget.deadline


def test_sustained_throttling_with_several_calls_at_once_returns_every_record_within_the_budget() -> None:
    clock = FakeClock()
    fake = FakeRuntime(clock, seconds=lambda text: 3.0, throttle=lambda text: True)
    budget = CallBudget(120, clock)

    results = list(invoke_on_demand(fake, MODEL, "InvokeModel", lines(30), 4, 5, clock.advance, budget))

    assert sorted(r.record_id for r in results) == [record_id(n) for n in range(1, 31)]
    sent = {r.record_id for r in results if r.error_code == "ThrottlingException"}
    unsent = {r.record_id for r in results if r.error_code == NOT_SENT}
    assert sent and unsent and len(sent) + len(unsent) == 30
    assert {f"text {int(rid[1:])}" for rid in unsent}.isdisjoint(fake.calls)  # unsent means never sent
    assert clock.now <= budget.deadline + 4 * 3.0  # at most the calls already running end past it


class BlockingRuntime:
    """A call that does not return until released: a model far slower than the invocation's time."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.started.set()
        self.release.wait(30)
        raise THROTTLED({"Error": {"Code": "ThrottlingException", "Message": "late"}}, "InvokeModel")


def test_a_call_still_running_at_the_deadline_is_not_waited_for() -> None:
    fake = BlockingRuntime()
    try:
        results = invoke_on_demand(fake, MODEL, "InvokeModel", lines(3), 1, budget=CallBudget(0.3))
        got = {r.record_id: r.error_code for r in results}
        assert not fake.release.is_set()  # the blocked call was still running when everything came back
    finally:
        fake.release.set()
    assert fake.started.is_set()
    assert got == {record_id(1): OUT_OF_TIME, record_id(2): NOT_SENT, record_id(3): NOT_SENT}


# --- ProcessShard and PlanRetries ------------------------------------------------------------------------


@pytest.fixture
def cloud(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        aws.reset()
        yield create_cloud(texts_per_request=1)
        aws.reset()


@pytest.fixture
def one_call_at_a_time(monkeypatch):
    """ProcessShard's on-demand calls one at a time, so the fake clock decides exactly which records are sent."""

    def install(clock: FakeClock) -> None:
        calls = partial(bedrock.invoke_on_demand, concurrency=1, sleep=clock.advance)
        monkeypatch.setattr(run_results, "invoke_on_demand", calls)

    return install


def start_run(cloud, rows: int) -> tuple[RunRef, RoundPlan, ShardRef]:
    body = conversations_csv(rows)
    put = cloud.s3.put_object(Bucket=CUSTOMER, Key="input_data/calls.csv", Body=body)
    event = ObjectCreated(bucket=CUSTOMER, key="input_data/calls.csv", size=len(body), etag=put["ETag"].strip('"'))
    run = register_run(event, cloud.store, cloud.settings)
    convert_input(run, cloud.s3, cloud.store, cloud.settings)
    plan = shard_records(run, cloud.s3, cloud.store, cloud.settings)
    [shard] = round_shards(cloud, plan)
    assert shard.kind.value == "on_demand"
    return run, plan, shard


def round_shards(cloud, plan: RoundPlan) -> list[ShardRef]:
    items = json.loads(cloud.s3.get_object(Bucket=plan.bucket, Key=plan.key)["Body"].read())
    return [ShardRef.model_validate(item) for item in items]


def retries_of(cloud, run: RunRef, shard: ShardRef) -> ShardRetries:
    body = cloud.s3.get_object(Bucket=INTERNAL, Key=retries_key(RunFiles(run.run_id), shard))["Body"].read()
    return ShardRetries.from_json(body)


def verdicts_of(cloud, run: RunRef, shard: ShardRef) -> dict[int, dict[str, Any]]:
    body = cloud.s3.get_object(Bucket=INTERNAL, Key=results_key(RunFiles(run.run_id), shard))["Body"].read()
    return {line["i"]: line for line in map(json.loads, body.decode().splitlines())}


def output_rows(cloud, result: dict[str, Any]) -> list[dict[str, str]]:
    key = next(k for k in result["outputs"] if k.endswith(".csv") and "rejects" not in k)
    body = cloud.s3.get_object(Bucket=CUSTOMER, Key=key.split(f"{CUSTOMER}/", 1)[1])["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_answered_records_are_kept_and_the_rest_answered_in_the_next_round(cloud, one_call_at_a_time):
    clock = FakeClock()
    one_call_at_a_time(clock)
    run, plan, shard = start_run(cloud, 30)
    start = clock.now

    # 120 s left, less the 12 s margin: calls of 30 s start at 0, 30 and 60 s, and not at 90 s (18 s left).
    outcome = process_shard(
        run, shard, cloud.s3, FakeRuntime(clock), cloud.store, cloud.settings, lambda: 120_000, clock
    )

    assert clock.now - start == 90.0 <= 120 - 12  # returned before its budget, the margin untouched
    assert outcome == {
        "shard": "shard-00001",
        "records": 30,
        "by_status": {"classified": 3, "model_error": 27},
        "retryable": 0,
        "unsent": 27,
    }
    verdicts = verdicts_of(cloud, run, shard)
    assert sorted(verdicts) == list(range(1, 31))
    assert [i for i, v in verdicts.items() if v["status"] == "classified"] == [1, 2, 3]
    assert {verdicts[i]["reason"] for i in range(4, 31)} == {UNSENT_REASON}
    assert retries_of(cloud, run, shard) == ShardRetries(retry=[], unsent=list(range(4, 31)), counts=ANY_COUNTS)
    item = cloud.store.get_shard(run.run_id, shard.name)
    assert item["shard_status"] == ShardStatus.PROCESSED.value and item["unsent"] == 27
    assert item["input_tokens"] == 3 * 1500  # only what was answered was paid for

    retry = plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings)
    assert retry.retry and retry.round == 1
    [second] = round_shards(cloud, retry)
    assert (second.kind.value, second.records) == ("on_demand", 27)
    fast = FakeRuntime(clock, seconds=lambda text: 1.0)
    assert process_shard(run, second, cloud.s3, fast, cloud.store, cloud.settings, lambda: 120_000, clock)[
        "by_status"
    ] == {"classified": 27}
    assert len(fast.calls) == 27  # nothing answered in the first round was sent again
    assert not plan_retries(run, retry, cloud.s3, cloud.store, cloud.settings).retry

    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    rows = output_rows(cloud, result)
    assert [r["id"] for r in rows] == [f"c-{i}" for i in range(1, 31)]  # every row once
    assert result["by_status"]["classified"] == 30


class _AnyCounts:
    """Equal to the counts a retries file keeps (whatever their values)."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and {"by_status", "input_tokens", "output_tokens"} <= other.keys()


ANY_COUNTS: Any = _AnyCounts()


def test_unsent_records_use_none_of_their_retries(cloud, one_call_at_a_time):
    clock = FakeClock()
    one_call_at_a_time(clock)
    settings = dataclasses.replace(cloud.settings, max_retry_rounds=1)
    run, plan, shard = start_run(cloud, 3)

    # Round 0: call 1 takes 100 of the 108 s and is throttled; records 2 and 3 are never sent.
    slow_first = FakeRuntime(clock, seconds=lambda text: 100.0, throttle=lambda text: True)
    process_shard(run, shard, cloud.s3, slow_first, cloud.store, settings, lambda: 120_000, clock)
    assert retries_of(cloud, run, shard) == ShardRetries(retry=[1], unsent=[2, 3], counts=ANY_COUNTS)

    # Round 1 (the one retry round): all three are sent, and all three are throttled again.
    first = plan_retries(run, plan, cloud.s3, cloud.store, settings)
    [again] = round_shards(cloud, first)
    throttled = FakeRuntime(clock, seconds=lambda text: 1.0, throttle=lambda text: True)
    process_shard(run, again, cloud.s3, throttled, cloud.store, settings, lambda: 900_000, clock)
    assert retries_of(cloud, run, again).retry == [1, 2, 3]

    # Record 1 has been tried and failed in 2 rounds (its retries are used up); 2 and 3 in one: they go again.
    second = plan_retries(run, first, cloud.s3, cloud.store, settings)
    assert second.retry and second.round == 2 > settings.max_retry_rounds
    [third] = round_shards(cloud, second)
    assert (third.first_record_id, third.last_record_id, third.records) == (record_id(2), record_id(3), 2)
    process_shard(run, third, cloud.s3, FakeRuntime(clock, seconds=lambda t: 1.0), cloud.store, settings, None, clock)
    assert not plan_retries(run, second, cloud.s3, cloud.store, settings).retry

    result = finalize_run(run, cloud.s3, cloud.store, settings)
    rows = {r["id"]: r for r in output_rows(cloud, result)}
    assert (rows["c-1"]["status"], rows["c-1"]["reason"]) == ("model_error", "error ThrottlingException: slow down")
    assert rows["c-2"]["status"] == rows["c-3"]["status"] == "classified"


def test_in_the_last_round_unsent_records_end_with_a_named_error(cloud, one_call_at_a_time, monkeypatch):
    monkeypatch.setattr(run_results, "UNSENT_EXTRA_ROUNDS", 0)
    clock = FakeClock()
    one_call_at_a_time(clock)
    settings = dataclasses.replace(cloud.settings, max_retry_rounds=0)
    assert last_round(settings) == 0
    run, plan, shard = start_run(cloud, 4)

    slow = FakeRuntime(clock, seconds=lambda text: 40.0)
    outcome = process_shard(run, shard, cloud.s3, slow, cloud.store, settings, lambda: 120_000, clock)

    assert outcome["by_status"] == {"classified": 2, "model_error": 2} and outcome["unsent"] == 0
    assert retries_of(cloud, run, shard) == ShardRetries(retry=[], unsent=[], counts=ANY_COUNTS)
    assert not plan_retries(run, plan, cloud.s3, cloud.store, settings).retry
    result = finalize_run(run, cloud.s3, cloud.store, settings)
    rows = output_rows(cloud, result)
    assert [r["id"] for r in rows] == ["c-1", "c-2", "c-3", "c-4"]
    assert [(r["status"], r["reason"]) for r in rows[2:]] == [("model_error", f"{OUT_OF_TIME_REASON} (never sent)")] * 2


def test_unsent_records_have_rounds_after_the_retry_rounds() -> None:
    settings = Settings.from_env({**ENVIRONMENT, "MAX_RETRY_ROUNDS": "2"})
    assert last_round(settings) == 2 + runs.UNSENT_EXTRA_ROUNDS


class FailingOnce:
    """A status store whose first PROCESSED mark fails, as an invocation that died right before it would."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def set_shard_status(self, *args: Any, **kwargs: Any) -> bool:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the invocation ended here")
        result: bool = self.store.set_shard_status(*args, **kwargs)
        return result


def test_an_invocation_run_again_after_its_writes_pays_for_nothing_twice(cloud, one_call_at_a_time):
    clock = FakeClock()
    one_call_at_a_time(clock)
    run, plan, shard = start_run(cloud, 6)
    store = FailingOnce(cloud.store)
    first = FakeRuntime(clock, seconds=lambda text: 30.0)
    with pytest.raises(ConnectionError):
        process_shard(run, shard, cloud.s3, first, store, cloud.settings, lambda: 120_000, clock)
    assert len(first.calls) == 3

    again = FakeRuntime(clock)
    outcome = process_shard(run, shard, cloud.s3, again, store, cloud.settings, lambda: 120_000, clock)

    assert again.calls == []  # the results and retries written before the failure stand
    assert outcome["by_status"] == {"classified": 3, "model_error": 3} and outcome["unsent"] == 3
    item = cloud.store.get_shard(run.run_id, shard.name)
    assert item["shard_status"] == ShardStatus.PROCESSED.value and item["input_tokens"] == 3 * 1500
    assert process_shard(run, shard, cloud.s3, again, cloud.store, cloud.settings)["again"]
    assert [s.records for s in round_shards(cloud, plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings))] == [
        3
    ]


def test_retries_files_of_earlier_versions_are_read_as_retryable_records() -> None:
    assert ShardRetries.from_json(b"[3, 5]") == ShardRetries(retry=[3, 5])


# --- the handler -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class TimedContext(LambdaContext):
    """A Lambda context whose invocation has ``remaining`` seconds left, counting down from its creation."""

    remaining: float = 1.0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int((self.remaining - (time.monotonic() - self.started)) * 1000)


@pytest.fixture
def runtime_client(cloud):
    """What ``aws.bedrock_runtime()`` gives the handler: ``runtime_client["client"]`` (undone before the cloud)."""
    made: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws, "bedrock_runtime", lambda: made["client"])
        yield made


def handler_event(run: RunRef, shard: ShardRef) -> dict[str, Any]:
    return json.loads(json.dumps({"run": run.model_dump(mode="json"), "shard": shard.model_dump(mode="json")}))


def test_the_handler_returns_within_its_time_and_a_second_round_answers_the_rest(cloud, runtime_client):
    run, plan, shard = start_run(cloud, 40)
    slow = runtime_client["client"] = FakeRuntime(real_seconds=0.1)
    handler = load_handler("process_shard")
    context = TimedContext(remaining=10.5)  # 0.5 s of calls after the 10 s margin

    outcome = handler.lambda_handler(handler_event(run, shard), context)

    assert context.get_remaining_time_in_millis() > 0  # it returned before its time ran out
    assert outcome["records"] == 40 and sum(outcome["by_status"].values()) == 40
    assert 0 < outcome["by_status"]["classified"] < 40 and outcome["unsent"] > 0
    assert len(slow.calls) == 40 - outcome["unsent"]

    retry = plan_retries(run, plan, cloud.s3, cloud.store, cloud.settings)
    [second] = round_shards(cloud, retry)
    assert second.records == 40 - outcome["by_status"]["classified"]
    fast = runtime_client["client"] = FakeRuntime()
    handler.lambda_handler(handler_event(run, second), LambdaContext())  # no remaining time: Lambda's longest
    assert len(fast.calls) == second.records
    result = finalize_run(run, cloud.s3, cloud.store, cloud.settings)
    assert [r["id"] for r in output_rows(cloud, result)] == [f"c-{i}" for i in range(1, 41)]
    assert result["by_status"]["classified"] == 40
