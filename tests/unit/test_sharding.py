import io
import json

import pytest

from batch_classifier import pipeline
from batch_classifier.packing import consecutive_batches, consecutive_requests, group_texts, request_batches
from batch_classifier.pipeline import escaped_text_lists, request_count
from batch_classifier.records import BatchLineEncoder, record_id
from batch_classifier.sharding import ShardKind, ShardPlan, plan_shards, write_shards
from batch_classifier.tasks import BatchLimits, load_task

LIMITS = BatchLimits()


@pytest.mark.parametrize(
    ("distinct", "sizes", "on_demand"),
    [
        (0, (), 0),
        (99, (), 99),
        (100, (100,), 0),
        (50_000, (50_000,), 0),
        (50_050, (25_025, 25_025), 0),
        (100_001, (33_334, 33_334, 33_333), 0),
        (1_000_000, (50_000,) * 20, 0),
    ],
)
def test_plan_is_balanced_within_limits(distinct, sizes, on_demand):
    plan = plan_shards(distinct, LIMITS)
    assert plan.batch_sizes == sizes
    assert plan.on_demand == on_demand
    assert plan.total == distinct


def test_plan_splits_by_bytes():
    limits = BatchLimits(max_bytes_per_file=10_000)
    plan = plan_shards(1000, limits, estimated_bytes=45_000)
    assert len(plan.batch_sizes) == 5 and plan.total == 1000


def test_plan_with_limits_too_close_to_balance_sends_the_remainder_on_demand():
    limits = BatchLimits(min_records_per_job=100, max_records_per_job=150)
    assert plan_shards(350, limits) == ShardPlan(batch_sizes=(117, 117, 116), on_demand=0)
    # 170 cannot make two jobs of at least 100, nor one of at most 150: one full job, the rest on demand.
    assert plan_shards(170, limits) == ShardPlan(batch_sizes=(150,), on_demand=20)


class Sink:
    def __init__(self):
        self.files: dict[str, bytearray] = {}

    def __call__(self, shard):
        buffer = self.files.setdefault(f"{shard.kind.value}/{shard.name}", bytearray())

        class Writer:
            def writelines(self, pieces):
                for piece in pieces:
                    buffer.extend(piece)

            def close(self):
                pass

        return Writer()


def _items(n: int):
    return [(record_id(i), json.dumps(f"text {i}")[1:-1].encode()) for i in range(1, n + 1)]


def _batches(items, task, per_request=1):
    return request_batches(group_texts(items, per_request), BatchLineEncoder(task))


def test_write_shards_follows_the_plan_and_keeps_every_record_once():
    task = load_task("travel")
    sink = Sink()
    plan = plan_shards(250, BatchLimits(min_records_per_job=100, max_records_per_job=120))
    shards = write_shards(request_batches(group_texts(_items(250), 1), BatchLineEncoder(task)), plan, task.batch, sink)
    assert [(s.kind, s.records) for s in shards] == [
        (ShardKind.BATCH, 120),
        (ShardKind.BATCH, 120),
        (ShardKind.ON_DEMAND, 10),
    ]
    ids = [json.loads(line)["recordId"] for data in sink.files.values() for line in data.splitlines()]
    assert ids == [record_id(i) for i in range(1, 251)]
    assert shards[0].first_record_id == "R0000000001"
    assert shards[-1].last_record_id == "R0000000250"
    assert sum(s.bytes for s in shards) == sum(len(d) for d in sink.files.values())


def test_remainder_goes_to_one_on_demand_shard():
    task = load_task("travel")
    sink = Sink()
    shards = write_shards(_batches(_items(40), task), plan_shards(40, LIMITS), LIMITS, sink)
    assert [(s.kind, s.records) for s in shards] == [(ShardKind.ON_DEMAND, 40)]
    assert list(sink.files) == ["on_demand/shard-00001"]


def test_byte_cap_is_enforced_while_writing():
    task = load_task("travel")
    encoder = BatchLineEncoder(task)
    line = len(encoder.encode_escaped(record_id(1), b"text 1"))
    limits = BatchLimits(min_records_per_job=1, max_records_per_job=1000, max_bytes_per_file=max(1024, line * 30))
    plan = plan_shards(100, limits)  # no byte estimate: the plan is one job of 100
    assert plan.batch_sizes == (100,)
    sink = Sink()
    shards = write_shards(request_batches(group_texts(_items(100), 1), encoder), plan, limits, sink)
    assert all(s.bytes <= limits.max_bytes_per_file for s in shards)
    assert sum(s.records for s in shards) == 100
    assert len(shards) >= 4


def _texts(n: int) -> list[bytes]:
    """Escaped texts of uneven lengths, with characters a ``%`` format or a split could trip on."""
    return [json.dumps(f'text {i} 100% {"é" * (i % 7)}\n"%s" {"x" * (i * 37 % 301)}')[1:-1].encode() for i in range(n)]


def _in_lists(texts: list[bytes], sizes=(1, 5, 0, 7, 13, 2)):
    at, n = 0, 0
    while at < len(texts):
        size = sizes[n % len(sizes)]
        yield texts[at : at + size]
        at, n = at + size, n + 1


@pytest.mark.parametrize("per_request", [1, 2, 6])
def test_consecutive_batches_give_the_lines_of_the_requests_one_by_one(per_request):
    task = load_task("travel")
    texts = _texts(53)
    encoder = BatchLineEncoder(task)
    expected = [
        encoder.encode_request(request.record_id, escaped)
        for request, escaped in consecutive_requests(texts, 4, per_request)
    ]
    batches = list(consecutive_batches(_in_lists(texts), 4, per_request, BatchLineEncoder(task)))
    lines = [b"".join(batch.lines(n, n + 1)) for batch in batches for n in range(len(batch))]
    assert lines == expected
    assert [size for batch in batches for size in batch.sizes] == [len(line) for line in expected]
    firsts = [(batch.firsts[n], batch.lasts[n]) for batch in batches for n in range(len(batch))]
    assert firsts == [(r.indexes[0], r.indexes[-1]) for r, _ in consecutive_requests(texts, 4, per_request)]


@pytest.mark.parametrize(
    "limits",
    [
        BatchLimits(min_records_per_job=5, max_records_per_job=7),  # targets cut the lists' batches in the middle
        BatchLimits(min_records_per_job=1, max_records_per_job=1000, max_bytes_per_file=30_000),  # so does the cap
    ],
)
def test_shards_of_consecutive_batches_are_those_of_their_requests_one_by_one(limits):
    task = load_task("travel")
    texts = _texts(200)
    plan = plan_shards(request_count(len(texts), 3), limits)
    one_by_one, batched = Sink(), Sink()
    expected = write_shards(
        request_batches(consecutive_requests(texts, 1, 3), BatchLineEncoder(task)), plan, limits, one_by_one
    )
    shards = write_shards(
        consecutive_batches(_in_lists(texts, (40, 3, 17)), 1, 3, BatchLineEncoder(task)), plan, limits, batched
    )
    assert len(expected) > 3
    assert [s.to_dict() for s in shards] == [s.to_dict() for s in expected]
    assert batched.files == one_by_one.files


def test_a_texts_file_is_read_back_in_lists_whatever_the_cut(monkeypatch):
    texts = _texts(300)
    data = b"".join(b'"' + text + b'"\n' for text in texts)
    monkeypatch.setattr(pipeline, "_READ_AHEAD", 1000)  # cuts fall inside lines
    lists = list(escaped_text_lists(io.BytesIO(data)))
    assert len(lists) > 10
    assert [text for part in lists for text in part] == texts
