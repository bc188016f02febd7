"""Benchmark: FinalizeRun's peak memory and local disk (/tmp) against the number of rows.

For each size it stages a run in S3 and DynamoDB as the earlier steps leave it (canonical records of
call-centre-like conversations, one verdicts file per 50,000-record shard, token counts on the shards), then
runs ``finalize_run`` in a fresh process with its own empty TMPDIR, and prints its time, peak RSS and the
peak size of that TMPDIR while it ran. The target: neither grows with the rows (XLSX, the one format that
spools to disk, is left out unless asked for).

S3 and DynamoDB are a moto server in a separate process, so the objects it holds do not count in the measured
process. Run ``python tests/bench/bench_finalize.py`` (50,000, 100,000 and 200,000 rows, CSV and Parquet) or,
for example, ``python tests/bench/bench_finalize.py --sizes 20000 --formats csv,parquet,xlsx``. This is a
benchmark, not a test: it never fails CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_pipeline import conversation

REGION = "us-east-1"
RUN_ID = "benchfinalize"
SHARD_RECORDS = 50_000
TABLE = "bench-runs"
COLUMNS = ("conversation_id", "conversation", "channel")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clients(endpoint: str) -> tuple[Any, Any]:
    import boto3  # noqa: PLC0415 - imported after the environment points boto3 at the moto server

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    dynamodb = boto3.resource("dynamodb", region_name=REGION, endpoint_url=endpoint)
    return s3, dynamodb


def _settings(size: int, formats: str) -> Any:
    from batch_classifier.settings import Settings  # noqa: PLC0415

    return Settings.from_env(
        {
            "RUNS_TABLE": TABLE,
            "CUSTOMER_BUCKET": f"bench-customer-{size}",
            "INTERNAL_BUCKET": f"bench-internal-{size}",
            "OUTPUT_FORMATS": formats,
        }
    )


def _run_ref(size: int) -> Any:
    from batch_classifier.workflow import RunRef  # noqa: PLC0415

    return RunRef(run_id=f"{RUN_ID}{size}", task="travel", bucket=f"bench-customer-{size}", key="input_data/calls.csv")


def stage(endpoint: str, size: int, formats: str) -> None:
    """A finished run of ``size`` rows (1% invalid), as ConvertInput and ProcessShard leave it."""
    from batch_classifier.labels import MatchMethod  # noqa: PLC0415
    from batch_classifier.mapping import OutputLayout  # noqa: PLC0415
    from batch_classifier.records import CanonicalRecord, RowStatus, record_id  # noqa: PLC0415
    from batch_classifier.results import Verdict  # noqa: PLC0415
    from batch_classifier.sharding import ShardKind  # noqa: PLC0415
    from batch_classifier.status import ShardStatus, StatusStore  # noqa: PLC0415
    from batch_classifier.storage import RunFiles, UploadFile  # noqa: PLC0415
    from batch_classifier.tasks import load_task  # noqa: PLC0415
    from batch_classifier.workflow import ShardRef  # noqa: PLC0415

    s3, dynamodb = _clients(endpoint)
    settings = _settings(size, formats)
    for bucket in (settings.customer_bucket, settings.internal_bucket):
        s3.create_bucket(Bucket=bucket)
    store = StatusStore(dynamodb.Table(TABLE))
    run = _run_ref(size)
    store.register_run(run)
    files = RunFiles(run.run_id)
    bucket = settings.internal_bucket

    def text_file(key: str) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BufferedWriter(UploadFile(s3, bucket, key)), encoding="utf-8")

    rng = random.Random(size)
    invalid = size // 100
    shards: list[int] = []  # records per shard
    verdicts: io.TextIOWrapper | None = None
    with text_file(files.records) as records, text_file(files.rejects) as rejects:
        for i in range(1, size + 1):
            text, label = conversation(rng, i)
            carry = {"conversation_id": f"C{i:08d}", "channel": rng.choice(["phone", "chat", "email"])}
            if i % 100 == 0:
                record = CanonicalRecord(i, f"C{i:08d}", "", RowStatus.INVALID_INPUT, "empty text", carry=carry)
                rejects.write(json.dumps({"row": i, "id": record.id, "reason": "empty text"}) + "\n")
                records.write(record.to_json() + "\n")
                continue
            index = i - i // 100
            if (index - 1) % SHARD_RECORDS == 0:
                if verdicts is not None:
                    verdicts.close()
                shards.append(0)
                verdicts = text_file(files.key(f"results/round-00/shard-{len(shards):05d}.jsonl"))
            assert verdicts is not None
            shards[-1] += 1
            record = CanonicalRecord(i, f"C{i:08d}", text, rid=record_id(index), first=True, label=label, carry=carry)
            records.write(record.to_json() + "\n")
            guess = label if rng.random() < 0.9 else "Complaint"
            rationale = f"The customer's main reason is {guess.lower()}, as the opening line says."
            verdicts.write(Verdict(RowStatus.CLASSIFIED, guess, rationale, MatchMethod.EXACT, guess).to_json(index))
            verdicts.write("\n")
    if verdicts is not None:
        verdicts.close()
    layout = OutputLayout(columns=COLUMNS, text_column="conversation")
    plan = {"rows": size, "invalid": invalid, "labelled": size - invalid, "output_layout": layout.to_dict()}
    s3.put_object(Bucket=bucket, Key=files.plan, Body=json.dumps(plan).encode())
    s3.put_object(Bucket=bucket, Key=files.task, Body=load_task("travel").to_yaml().encode())
    s3.put_object(Bucket=bucket, Key=files.shared, Body=b"[]")
    refs = [ShardRef(name=f"shard-{n:05d}", kind=ShardKind.BATCH, records=c) for n, c in enumerate(shards, 1)]
    store.add_shards(run.run_id, refs)
    for ref in refs:
        tokens = {"input_tokens": 2300 * ref.records, "output_tokens": 25 * ref.records}
        store.set_shard_status(run.run_id, ref.name, ShardStatus.PROCESSED, **tokens)


def child(endpoint: str, size: int, formats: str) -> None:
    """Run FinalizeRun (in its own process) and print what it took."""
    from batch_classifier.finalize import finalize_run  # noqa: PLC0415
    from batch_classifier.status import StatusStore  # noqa: PLC0415

    s3, dynamodb = _clients(endpoint)
    started = time.perf_counter()
    result = finalize_run(_run_ref(size), s3, StatusStore(dynamodb.Table(TABLE)), _settings(size, formats))
    seconds = time.perf_counter() - started
    sizes = {}
    for uri in result["outputs"]:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        sizes[key.rsplit("/", 1)[1]] = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"rows": result["rows"], "seconds": seconds, "rss_mb": peak_rss_mb, "outputs": sizes}
    report["warnings"] = result["warnings"]
    print(json.dumps(report))


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                total += (Path(root) / name).stat().st_size
    return total


def measure(endpoint: str, size: int, formats: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as scratch:
        environment = {**os.environ, "TMPDIR": scratch}
        command = [sys.executable, __file__, "--child", "--endpoint", endpoint, "--sizes", str(size)]
        process = subprocess.Popen([*command, "--formats", formats], env=environment, stdout=subprocess.PIPE, text=True)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, _folder_bytes(Path(scratch)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        out, _ = process.communicate()
        done.set()
        sampler.join()
        if process.returncode:
            raise SystemExit(f"finalize_run failed for {size} rows")
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        report["tmp_mb"] = max(peak, _folder_bytes(Path(scratch))) / 1_000_000
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--formats", default="csv,parquet", help="OUTPUT_FORMATS of the run (default csv,parquet)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    if args.child:
        child(args.endpoint, args.sizes[0], args.formats)
        return
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port)
        _, dynamodb = _clients(endpoint)
        _create_table(dynamodb)
        print(f"FinalizeRun, formats {args.formats}: time, peak RSS and peak TMPDIR use of its process")
        print(f"{'rows':>9} {'seconds':>8} {'peak RSS MB':>12} {'peak /tmp MB':>13}  outputs (MB)")
        for size in args.sizes:
            stage(endpoint, size, args.formats)
            report = measure(endpoint, size, args.formats)
            outputs = ", ".join(f"{name} {length / 1_000_000:.0f}" for name, length in report["outputs"].items())
            print(
                f"{report['rows']:>9,} {report['seconds']:>8.1f} {report['rss_mb']:>12.0f} {report['tmp_mb']:>13.1f}"
                f"  {outputs}" + (f"  warnings: {report['warnings']}" if report["warnings"] else "")
            )
    finally:
        server.terminate()
        server.wait()


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the moto server did not start")


def _create_table(dynamodb: Any) -> None:
    keys = ("pk", "sk", "run_status", "started_at")
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "RunsByStatus",
                "KeySchema": [
                    {"AttributeName": "run_status", "KeyType": "HASH"},
                    {"AttributeName": "started_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


if __name__ == "__main__":
    main()
