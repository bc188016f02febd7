"""moto-backed AWS for the handler and run-step tests: the buckets, table and topic the template declares."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from batch_classifier.settings import Settings
from batch_classifier.status import StatusStore
from batch_classifier.storage import TASKS_PREFIX
from batch_classifier.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
REGION = "us-east-1"
CUSTOMER = "batch-classifier-customer-123456789012"
INTERNAL = "batch-classifier-internal-123456789012"
TABLE = "batch-classifier-runs"
CLASSES = load_task("travel").category_names

ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "RUNS_TABLE": TABLE,
    "CUSTOMER_BUCKET": CUSTOMER,
    "INTERNAL_BUCKET": INTERNAL,
    "DEFAULT_TASK": "travel",
    "OUTPUT_FORMATS": "csv,xlsx",
    "POLL_MIN_SECONDS": "60",
    "POLL_MAX_SECONDS": "900",
    "MAX_RETRY_ROUNDS": "2",
    "BEDROCK_ROLE_ARN": "arn:aws:iam::123456789012:role/BedrockBatchRole",
    "POWERTOOLS_SERVICE_NAME": "batch-classifier",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchClassifier",
    "POWERTOOLS_TRACE_DISABLED": "1",
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def load_handler(folder: str) -> ModuleType:
    """A function's ``app`` module, loaded from its folder as Lambda would (each under its own name)."""
    name = f"{folder}_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "5b3e3f37-6d2b-4b8e-9d1e-0c2f1d4e5a6b"


@dataclass
class Cloud:
    s3: Any
    store: StatusStore
    settings: Settings


def create_status_table(dynamodb: Any, name: str) -> Any:
    """The status table as the template declares it: ``pk``/``sk`` strings and the ``RunsByStatus`` index."""
    return dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": key, "AttributeType": "S"} for key in ("pk", "sk", "run_status", "started_at")
        ],
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


def create_cloud(*, texts_per_request: int | None = None) -> Cloud:
    """Buckets, status table (with its index) and topic, inside an active moto context. With ``texts_per_request``,
    the customer bucket holds its own ``travel`` task sending that many texts a request (the tests that count one
    request a text; the bundled task packs 6)."""
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (CUSTOMER, INTERNAL):
        s3.create_bucket(Bucket=bucket)
    # As template.yaml has it: the customer bucket keeps versions, so a run reads its upload as uploaded.
    s3.put_bucket_versioning(Bucket=CUSTOMER, VersioningConfiguration={"Status": "Enabled"})
    table = create_status_table(boto3.resource("dynamodb", region_name=REGION), TABLE)
    if texts_per_request is not None:
        task = load_task("travel").model_copy(update={"texts_per_request": texts_per_request})
        s3.put_object(Bucket=CUSTOMER, Key=f"{TASKS_PREFIX}/travel.yaml", Body=task.to_yaml().encode("utf-8"))
    return Cloud(s3=s3, store=StatusStore(table), settings=Settings.from_env(ENVIRONMENT))


def conversations_csv(rows: int, *, duplicates: int = 0, empty: int = 0) -> bytes:
    """A labelled CSV of ``rows`` travel conversations, the first ``duplicates`` sharing one text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["conversation_id", "conversation", "class"])
    for i in range(1, rows + 1):
        label = CLASSES[i % len(CLASSES)]
        text = f"User: call {i} is about {label}.\nAgent: Noted."
        if i <= duplicates:
            text, label = "User: what documents do I need?\nAgent: A passport.", "Travel Information"
        if i > rows - empty:
            text = ""
        writer.writerow([f"c-{i}", text, label])
    return out.getvalue().encode("utf-8")


def reply_for(text: str) -> str:
    """A stand-in model: names the class the generated text mentions."""
    for name in CLASSES:
        if name in text:
            return f"<classification>{name}</classification><explanation>The caller says {name}.</explanation>"
    return "<classification>Travel Information</classification><explanation>Documents.</explanation>"


def answer_batch_job(
    s3: Any,
    job_input_key: str,
    output_prefix: str,
    *,
    errors: dict[str, dict[str, Any]] | None = None,
    drop: frozenset[str] = frozenset(),
    job_id: str = "abcd1234efgh",
) -> None:
    """Write what Bedrock writes for a finished job: ``<prefix><job id>/<file>.out`` and the manifest."""
    errors = errors or {}
    lines = s3.get_object(Bucket=INTERNAL, Key=job_input_key)["Body"].read().decode().splitlines()
    out, tokens = [], [0, 0]
    for raw in reversed(lines):  # Bedrock does not keep the input order
        record = json.loads(raw)
        rid = record["recordId"]
        if rid in drop:
            continue
        line: dict[str, Any] = {"recordId": rid, "modelInput": record["modelInput"]}
        if rid in errors:
            line["error"] = errors[rid]
        else:
            text = record["modelInput"]["messages"][0]["content"][0]["text"]
            line["modelOutput"] = {
                "content": [{"type": "text", "text": reply_for(text)}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 2000, "output_tokens": 30},
            }
            tokens[0] += 2000
            tokens[1] += 30
        out.append(json.dumps(line))
    name = job_input_key.rsplit("/", 1)[-1]
    s3.put_object(Bucket=INTERNAL, Key=f"{output_prefix}{job_id}/{name}.out", Body="\n".join(out) + "\n")
    manifest = {
        "totalRecordCount": len(lines),
        "processedRecordCount": len(out),
        "successRecordCount": len(out) - len(errors),
        "errorRecordCount": len(errors),
        "inputTokenCount": tokens[0],
        "outputTokenCount": tokens[1],
    }
    s3.put_object(Bucket=INTERNAL, Key=f"{output_prefix}{job_id}/manifest.json.out", Body=json.dumps(manifest))
