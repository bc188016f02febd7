"""The local Bedrock's wire format: requests checked as the service model constrains them, model requests and
replies in the Anthropic and Converse shapes, paging tokens, and errors as botocore reads them (restJson1).

:mod:`.bedrock_service` (with :mod:`.bedrock_jobs` and :mod:`.bedrock_http`) runs the jobs and serves these over
HTTP; everything here is pure and stateless.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from .models import Completion

CONVERSE_DEFAULT_MAX_TOKENS = 4096


MAX_BODY_BYTES = 64 * 1024 * 1024


# Constraints from the service model (bedrock 2023-04-20), written without nested ambiguous repetitions.
# jobName "[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}", 1-63 characters.
JOB_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9+.\-]*")


# clientRequestToken "[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}", 1-256 characters.
TOKEN = re.compile(r"[a-zA-Z0-9]+(?:-+[a-zA-Z0-9]+)*")


ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")


S3_URI = re.compile(r"s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])((?:/[-!_*'().a-zA-Z0-9]+)*/?)")


# Error names and the HTTP status of their shape in the service models.
ERROR_STATUS = {
    "ValidationException": 400,
    "ConflictException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "UnknownOperationException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}


# Stop reasons a model may report (OpenAI spellings too) → the Anthropic/Converse spelling.
STOP_REASONS = {
    "end_turn": "end_turn",
    "stop": "end_turn",
    "max_tokens": "max_tokens",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "content_filtered": "content_filtered",
}


class ServiceError(Exception):
    """An API error: answered with its HTTP status, ``x-amzn-ErrorType`` and ``{"message": ...}``."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else ERROR_STATUS.get(code, 400)


def validation_error(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


class BadInput(ValueError):
    """A model request that cannot be answered (a 400)."""


def check_create(request: dict[str, Any]) -> dict[str, Any]:
    """The CreateModelInvocationJob members, checked as the service model constrains them."""
    name = request.get("jobName")
    if not isinstance(name, str) or not 1 <= len(name) <= 63 or not JOB_NAME.fullmatch(name):
        raise validation_error(
            f"1 validation error detected: Value {name!r} at 'jobName' failed to satisfy constraint: Member must "
            "have length between 1 and 63 and match [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\\+\\-\\.]){0,63}"
        )
    token = request.get("clientRequestToken")
    if token is None:
        token = f"{uuid.uuid4()}"
    if not isinstance(token, str) or not 1 <= len(token) <= 256 or not TOKEN.fullmatch(token):
        raise validation_error(
            f"1 validation error detected: Value {token!r} at 'clientRequestToken' failed to satisfy constraint: "
            "Member must match [a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}"
        )
    role = request.get("roleArn")
    if not isinstance(role, str) or not ROLE_ARN.fullmatch(role):
        raise validation_error(
            f"1 validation error detected: Value {role!r} at 'roleArn' failed to satisfy constraint: Member must "
            "be an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )
    model_id = request.get("modelId")
    if not isinstance(model_id, str) or not 1 <= len(model_id) <= 2048:
        raise validation_error("1 validation error detected: 'modelId' must be a model identifier of 1-2048 characters")
    input_config = request.get("inputDataConfig")
    input_s3 = input_config.get("s3InputDataConfig") if isinstance(input_config, dict) else None
    input_uri = check_uri(input_s3, "inputDataConfig.s3InputDataConfig.s3Uri")
    assert isinstance(input_s3, dict)
    if input_s3.get("s3InputFormat", "JSONL") != "JSONL":
        raise validation_error("inputDataConfig.s3InputDataConfig.s3InputFormat must be JSONL.")
    output_config = request.get("outputDataConfig")
    output_s3 = output_config.get("s3OutputDataConfig") if isinstance(output_config, dict) else None
    output_uri = check_uri(output_s3, "outputDataConfig.s3OutputDataConfig.s3Uri")
    hours = request.get("timeoutDurationInHours", 168)
    if isinstance(hours, bool) or not isinstance(hours, int) or not 24 <= hours <= 168:
        raise validation_error(
            f"1 validation error detected: Value {hours!r} at 'timeoutDurationInHours' failed to satisfy "
            "constraint: Member must be between 24 and 168"
        )
    invocation_type = request.get("modelInvocationType", "InvokeModel")
    if invocation_type not in ("InvokeModel", "Converse"):
        raise validation_error(
            f"1 validation error detected: Value {invocation_type!r} at 'modelInvocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [InvokeModel, Converse]"
        )
    vpc = request.get("vpcConfig")
    assert isinstance(input_config, dict) and isinstance(output_config, dict)
    return {
        "name": name,
        "token": token,
        "role_arn": role,
        "model_id": model_id,
        "input_config": input_config,
        "output_config": output_config,
        "input_uri": input_uri,
        "output_uri": output_uri,
        "timeout_hours": hours,
        "invocation_type": invocation_type,
        "vpc_config": vpc if isinstance(vpc, dict) else None,
    }


def check_uri(config: Any, where: str) -> str:
    uri = config.get("s3Uri") if isinstance(config, dict) else None
    if not isinstance(uri, str) or len(uri) > 1024 or not S3_URI.fullmatch(uri):
        raise validation_error(
            f"1 validation error detected: Value {uri!r} at '{where}' failed to satisfy constraint: Member must "
            "be an S3 URI (s3://<bucket>/<key>) of letters, digits and -!_*'()./"
        )
    return uri


def split_uri(uri: str) -> tuple[str, str]:
    found = S3_URI.fullmatch(uri)
    assert found is not None
    return found[1], found[2].lstrip("/")


def text_of(content: Any, where: str) -> str:
    """The text of a message content: a string, or a list of text blocks (Anthropic or Converse)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise BadInput(f"{where} must be a string or a non-empty list of content blocks.")
    texts = []
    for block in content:
        if isinstance(block, dict) and "cachePoint" in block and "text" not in block:
            continue  # a Converse cache marker, not content
        if not isinstance(block, dict) or not isinstance(block.get("text"), str):
            raise BadInput(f"{where} holds a block without text; the local service answers text only.")
        if block.get("type", "text") != "text":
            raise BadInput(f"{where} holds a {block.get('type')!r} block; the local service answers text only.")
        texts.append(block["text"])
    return "".join(texts)


def messages_of(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise BadInput("messages must be a non-empty list.")
    messages = []
    for number, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadInput(f"messages[{number}] must be an object with role user or assistant.")
        messages.append({"role": message["role"], "content": text_of(message.get("content"), f"messages[{number}]")})
    return messages


def anthropic_request(body: Any) -> tuple[str, list[dict[str, Any]], int]:
    """System prompt, messages and max_tokens of an Anthropic Messages body."""
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object.")
    if not isinstance(body.get("anthropic_version"), str):
        raise BadInput("required key [anthropic_version] not found.")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadInput("required key [max_tokens] not found or not a positive integer.")
    system = body.get("system", "")
    system_text = "" if system in ("", None) else text_of(system, "system")
    return system_text, messages_of(body.get("messages")), max_tokens


def converse_request(body: Any) -> tuple[str, list[dict[str, Any]], int]:
    """System prompt, messages and maxTokens of a Converse request."""
    if not isinstance(body, dict):
        raise BadInput("the request must be a JSON object.")
    system = body.get("system")
    system_text = ""
    if system is not None:
        if not isinstance(system, list):
            raise BadInput("system must be a list of {text} blocks.")
        system_text = "\n".join(text for block in system if (text := text_of([block], "system")))
    config = body.get("inferenceConfig") or {}
    if not isinstance(config, dict):
        raise BadInput("inferenceConfig must be an object.")
    max_tokens = config.get("maxTokens", CONVERSE_DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadInput("inferenceConfig.maxTokens must be a positive integer.")
    return system_text, messages_of(body.get("messages")), max_tokens


def anthropic_reply(model_id: str, completion: Completion) -> dict[str, Any]:
    return {
        "id": f"msg_bdrk_{random.getrandbits(96):024x}",  # not uuid4: os.urandom lets other threads in, per record
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": [{"type": "text", "text": completion.text}],
        "stop_reason": STOP_REASONS.get(completion.stop_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens},
    }


def converse_reply(completion: Completion, latency_ms: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
        "stopReason": STOP_REASONS.get(completion.stop_reason, "end_turn"),
        "usage": {
            "inputTokens": completion.input_tokens,
            "outputTokens": completion.output_tokens,
            "totalTokens": completion.input_tokens + completion.output_tokens,
        },
        "metrics": {"latencyMs": latency_ms},
    }


def request_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError("ValidationException", f"The request body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise validation_error("The request body must be a JSON object.")
    return doc


def query_time(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise validation_error(f"{name} {raw!r} is not an ISO 8601 timestamp.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def query_int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f"{name} {raw!r} is not a whole number.") from None
    if not low <= value <= high:
        raise validation_error(f"{name} must be between {low} and {high}.")
    return value


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token: str | None) -> int:
    if token is None:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(kind)
        return max(0, int(value))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise validation_error(f"The nextToken {token!r} is not valid.") from None


def json_response(doc: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(doc, ensure_ascii=False).encode("utf-8")


def error_response(exc: ServiceError) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": exc.code, "message": exc.message}, ensure_ascii=False).encode("utf-8")
    return exc.status, {"Content-Type": "application/json", "x-amzn-ErrorType": exc.code}, body
