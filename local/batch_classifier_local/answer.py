"""Answer a prepared folder's request lines with a model, as the local Bedrock answers a batch job's lines.

``prepare`` writes Bedrock batch input files (``jobs/*.jsonl``) and on-demand lines in the same format
(``on-demand/*.jsonl``). :func:`answer_prepared` answers every line of both with a :class:`~.models.Model` and
writes Bedrock's output layout, one ``<input file>.out`` per input file (each line the input's ``recordId`` and
``modelInput`` with a ``modelOutput``, or an ``error`` when the model failed), ready for ``collect``. It is what
``compare`` classifies each prompt variant with, and what the packing benchmark measures billed tokens with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_classifier.pipeline import JOBS_DIR, ON_DEMAND_DIR, PreparedRun
from batch_classifier.tasks import InvocationType, Task

from .bedrock_api import BadInput, anthropic_reply, anthropic_request, converse_reply, converse_request
from .models import Model, ModelError, ModelRequestInvalid, ModelThrottled

__all__ = ["Answered", "answer_line", "answer_prepared"]


@dataclass
class Answered:
    """What answering a prepared folder did: lines answered, lines with an error, tokens the model counted."""

    lines: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    job_bytes: int = 0


def answer_line(model: Model, task: Task, record: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """One output line for one input line (its ``recordId`` and ``modelInput`` kept), and its input and output
    tokens. A request the model cannot answer gets an ``error`` with Bedrock's code, as a job's record would."""
    line: dict[str, Any] = {"recordId": record.get("recordId"), "modelInput": record.get("modelInput")}
    converse = task.invocation_type is InvocationType.CONVERSE
    try:
        request = converse_request if converse else anthropic_request
        system, messages, max_tokens = request(record.get("modelInput"))
    except BadInput as exc:
        line["error"] = {"errorCode": 400, "errorMessage": f"Malformed input request: {exc}"}
        return line, 0, 0
    try:
        completion = model.complete(system, messages, max_tokens)
    except ModelThrottled as exc:
        line["error"] = {"errorCode": 429, "errorMessage": f"Too many requests: {exc}"}
        return line, 0, 0
    except ModelRequestInvalid as exc:
        line["error"] = {"errorCode": 400, "errorMessage": str(exc)}
        return line, 0, 0
    except (ModelError, TimeoutError, OSError) as exc:
        line["error"] = {"errorCode": 500, "errorMessage": f"The model failed to answer: {exc}"}
        return line, 0, 0
    line["modelOutput"] = converse_reply(completion, 0) if converse else anthropic_reply(task.model_id, completion)
    return line, completion.input_tokens, completion.output_tokens


def answer_prepared(prepared: Path, outputs: Path, model: Model) -> Answered:
    """Answer every job line and on-demand line of a prepared folder into ``outputs`` (Bedrock's ``.jsonl.out``
    layout, one file per input file), line by line; return the counts."""
    task = PreparedRun.load(prepared).task
    outputs.mkdir(parents=True, exist_ok=True)
    done = Answered()
    for folder in (JOBS_DIR, ON_DEMAND_DIR):
        for job in sorted((prepared / folder).glob("*.jsonl")):
            done.job_bytes += job.stat().st_size
            with job.open("rb") as lines, (outputs / f"{job.name}.out").open("w", encoding="utf-8") as out:
                for raw in lines:
                    line, input_tokens, output_tokens = answer_line(model, task, json.loads(raw))
                    done.lines += 1
                    done.errors += "error" in line
                    done.input_tokens += input_tokens
                    done.output_tokens += output_tokens
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return done
