"""What the console shows, read through the same APIs the command line and the AWS CLI use.

:class:`ConsoleData` holds boto3 clients of a runtime (the local one in this process, a ``serve`` in another, or
AWS) and answers each page with plain JSON-ready values: Step Functions (ListExecutions, DescribeExecution,
GetExecutionHistory, DescribeStateMachineForExecution, DescribeMapRun, RedriveExecution), the status table (the
run item and its shard items) and S3 (the run's output folder). It keeps nothing of its own: every answer is read
when it is asked for. The execution views reuse :mod:`batch_classifier_local.executions` (the states of an
execution, FinalizeRun's result, redrive and when it is refused).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from batch_classifier.runs import run_id_of
from batch_classifier.status import RUN_SK, SHARD_PREFIX
from batch_classifier.workflow import ObjectCreated

from ..executions import (
    TERMINAL_FAILURES,
    StateRun,
    finalize_result,
    history,
    iso,
    redrive,
    redrive_refusal,
    seconds_between,
    state_runs,
)
from .graph import Graph, NodeView, layout, render_svg
from .history import history_rows

REPORT_NAME = "report.html"
# The executions page lists at most this many, the newest: each one listed costs a DescribeExecution (its input).
EXECUTIONS_LIMIT = 500
# ListExecutions answers at most 1,000 a page (moto: 100).
EXECUTIONS_PAGE = 100
UNRECORDED_NOTE = (
    "This state runs in each item's child workflow. The local runtime does not record the children's own "
    "histories: the status table's shard items (below, and on the run's page) say how each shard went."
)


class NotFound(LookupError):
    """What a page asks for does not exist (an execution, a run, a file)."""


@dataclass
class OutputFile:
    """A file of a run's output folder, opened for streaming."""

    name: str
    body: Any  # botocore's StreamingBody
    length: int
    content_type: str


class ConsoleData:
    """The console's reads (and its one write, a redrive) over a runtime's clients."""

    def __init__(self, client: Callable[[str], Any], outputs: Mapping[str, str]) -> None:
        self.sfn = client("stepfunctions")
        self.s3 = client("s3")
        self.dynamodb = client("dynamodb")
        self.runs_table = outputs.get("RunsTableName")

    # --- executions -----------------------------------------------------------------------------------------

    def executions(self, status: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """The newest ``limit`` executions (default :data:`EXECUTIONS_LIMIT`; every page of ListExecutions, up to
        that many), newest first, with their runs' task, rows and outcome from the status table; ``truncated`` says
        whether there were more."""
        limit = EXECUTIONS_LIMIT if limit is None else limit
        rows, truncated = list_executions(self.sfn, status, limit)
        run_ids = {row["executionArn"]: run_id_for_input(row.get("input")) for row in rows}
        items = self._run_items({run_id for run_id in run_ids.values() if run_id})
        listed = []
        for row in rows:
            run_id = run_ids[row["executionArn"]]
            item = items.get(run_id or "") or {}
            # A duplicate upload's execution finds the run of the execution that registered it: not its own.
            own = bool(item) and item.get("execution") in (None, row["executionArn"])
            stop = row.get("stopDate")
            listed.append(
                {
                    "name": row["name"],
                    "arn": row["executionArn"],
                    "state_machine": row.get("state_machine"),
                    "status": row["status"],
                    "file": row.get("file") or None,
                    "task": item.get("task"),
                    "rows": _rows_of(item),
                    "started": iso(row.get("startDate")),
                    "stopped": iso(stop),
                    "seconds": seconds_between(row.get("startDate"), stop),
                    # before FinalizeRun (or without it) the run's status says how it stands
                    "outcome": (item.get("outcome") or str(item.get("run_status") or "").lower() or None)
                    if own
                    else None,
                    "run_id": run_id if item else None,
                    "own_run": own,
                    "redrive_count": int(row.get("redriveCount") or 0),
                }
            )
        return {"executions": listed, "truncated": truncated, "limit": limit}

    def resolve(self, name_or_arn: str) -> str:
        """An execution's ARN from its name or ARN (NotFound when there is none)."""
        if name_or_arn.startswith("arn:"):
            try:
                self.sfn.describe_execution(executionArn=name_or_arn)
            except ClientError as exc:
                raise NotFound(f"no execution {name_or_arn}") from exc
            return name_or_arn
        for machine in _pages(self.sfn, "list_state_machines", "stateMachines"):
            for execution in _pages(
                self.sfn, "list_executions", "executions", stateMachineArn=machine["stateMachineArn"]
            ):
                if execution["name"] == name_or_arn:
                    return str(execution["executionArn"])
        raise NotFound(f"no execution named {name_or_arn}")

    def execution_status(self, arn: str) -> dict[str, Any]:
        """What a page polls while an execution runs: its status, redrives and how long its history is."""
        described = self.sfn.describe_execution(executionArn=arn)
        return {
            "name": described["name"],
            "status": described["status"],
            "redrive_count": int(described.get("redriveCount") or 0),
            "events": len(history(self.sfn, arn)),
        }

    def execution(self, arn: str) -> dict[str, Any]:
        """One execution: what DescribeExecution says, each state of the definition with what happened in it
        (the graph's colours and the panel a click opens), the map runs and shards, the history with its poll
        loops collapsed, the results, and whether it can be redriven."""
        described = self.sfn.describe_execution(executionArn=arn)
        events = history(self.sfn, arn)
        definition = self._definition(arn, described)
        graph = layout(definition)
        runs = state_runs(self.sfn, arn)
        run_id = run_id_for_input(described.get("input"))
        item = self._run_item(run_id) if run_id else None
        shards = self._shards(run_id) if item else []
        maps = self._map_runs(events)
        views, states = _state_views(graph, runs, maps, shards)
        status = str(described["status"])
        refusal = redrive_refusal(self.sfn, arn) if status in TERMINAL_FAILURES else None
        result = finalize_result(self.sfn, arn)
        stop = described.get("stopDate")
        return {
            "name": described["name"],
            "arn": arn,
            "state_machine": described.get("stateMachineArn"),
            "status": status,
            "file": _input_key(described.get("input")),
            "started": iso(described.get("startDate")),
            "stopped": iso(stop),
            "seconds": seconds_between(described.get("startDate"), stop),
            "error": described.get("error"),
            "cause": described.get("cause"),
            "redrive_count": int(described.get("redriveCount") or 0),
            "redrive_date": iso(described.get("redriveDate")),
            "redrivable": status in TERMINAL_FAILURES and refusal is None,
            "redrive_refusal": refusal,
            "run_id": run_id if item else None,
            "run": _run_summary(item) if item else None,
            "results": _results(result, run_id if item else None),
            "states": states,
            "map_runs": maps,
            "shards": _shard_counts(shards),
            "history": history_rows(events),
            "events": len(events),
            "graph": {
                "views": {key: vars(view) for key, view in views.items()},
                "svg": render_svg(graph, views, label=f"state machine of {described['name']}"),
            },
        }

    def graph_svg(self, arn: str) -> str:
        """The execution's state machine drawn with what happened in each state."""
        described = self.sfn.describe_execution(executionArn=arn)
        graph = layout(self._definition(arn, described))
        run_id = run_id_for_input(described.get("input"))
        shards = self._shards(run_id) if run_id and self._run_item(run_id) else []
        views, _ = _state_views(graph, state_runs(self.sfn, arn), self._map_runs(history(self.sfn, arn)), shards)
        return render_svg(graph, views, label=f"state machine of {described['name']}")

    def redrive(self, arn: str) -> dict[str, Any]:
        """RedriveExecution, as ``batch-classifier redrive`` does it (ExecutionNotRedrivable when refused)."""
        done = redrive(self.sfn, arn)
        return {"arn": done.execution_arn, "redrive_count": done.count, "resumes_at": done.resumes_at}

    def _definition(self, arn: str, described: Mapping[str, Any]) -> dict[str, Any]:
        """The definition the execution runs (its state machine's, when Step Functions cannot say)."""
        try:
            text = self.sfn.describe_state_machine_for_execution(executionArn=arn)["definition"]
        except ClientError:
            text = self.sfn.describe_state_machine(stateMachineArn=described["stateMachineArn"])["definition"]
        loaded = json.loads(text)
        return loaded if isinstance(loaded, dict) else {}

    def _map_runs(self, events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Each Distributed Map state's runs, from the history (MapRunStarted, MapRunSucceeded, MapRunFailed) and
        DescribeMapRun (item counts)."""
        maps: dict[str, list[dict[str, Any]]] = {}
        current = ""
        for event in events:
            kind = event["type"]
            if kind == "MapStateEntered":
                current = event["stateEnteredEventDetails"]["name"]
            elif kind == "MapRunStarted":
                arn = event.get("mapRunStartedEventDetails", {}).get("mapRunArn", "")
                started = iso(event["timestamp"])
                maps.setdefault(current, []).append({"arn": arn, "status": "RUNNING", "started": started})
            elif kind in {"MapRunSucceeded", "MapRunFailed", "MapRunAborted"} and maps.get(current):
                last = maps[current][-1]
                last["status"] = kind.removeprefix("MapRun").upper()
                details = event.get("mapRunFailedEventDetails") or {}
                last["error"], last["cause"] = details.get("error"), details.get("cause")
        for runs in maps.values():
            for run in runs:
                try:
                    described = self.sfn.describe_map_run(mapRunArn=run["arn"])
                except ClientError:
                    continue
                run["items"] = {k: int(v) for k, v in (described.get("itemCounts") or {}).items()}
                run["status"] = described.get("status", run["status"])
        return maps

    # --- runs -----------------------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        """A run: its item in the status table, its shards, its output files and report, its execution."""
        item = self._run_item(run_id)
        if item is None:
            raise NotFound(f"no run {run_id} in the status table")
        files = self._files(item)
        execution = item.get("execution")
        return {
            "run_id": run_id,
            "run": _plain(item),
            "summary": _run_summary(item),
            "shards": [_shard_row(shard) for shard in self._shards(run_id)],
            "files": files,
            "report": next((f["url"] for f in files if f["name"] == REPORT_NAME), None),
            "execution": {"arn": execution, "name": str(execution).rsplit(":", 1)[-1]} if execution else None,
        }

    def output(self, run_id: str, name: str) -> OutputFile:
        """A file of the run's output folder, opened for streaming (NotFound when it is not there)."""
        item = self._run_item(run_id)
        if item is None or not item.get("output_prefix") or not item.get("source_bucket"):
            raise NotFound(f"run {run_id} has no output folder")
        if not name or "/" in name or name in {".", ".."}:
            raise NotFound(f"no file {name!r} in the output folder of run {run_id}")
        try:
            found = self.s3.get_object(Bucket=item["source_bucket"], Key=f"{item['output_prefix']}{name}")
        except ClientError as exc:
            raise NotFound(f"no file {name!r} in the output folder of run {run_id}") from exc
        return OutputFile(
            name=name,
            body=found["Body"],
            length=int(found.get("ContentLength") or 0),
            content_type=str(found.get("ContentType") or "application/octet-stream"),
        )

    def _files(self, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        prefix, bucket = item.get("output_prefix"), item.get("source_bucket")
        if not prefix or not bucket:
            return []
        files = []
        for found in _pages(self.s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix):
            name = str(found["Key"])[len(prefix) :]
            if name and "/" not in name:
                files.append(
                    {
                        "name": name,
                        "size": int(found.get("Size") or 0),
                        "modified": iso(found.get("LastModified")),
                        "uri": f"s3://{bucket}/{found['Key']}",
                        "url": file_url(str(item["pk"]).removeprefix("RUN#"), name),
                    }
                )
        return sorted(files, key=lambda f: (f["name"] != REPORT_NAME, f["name"]))

    def _run_item(self, run_id: str) -> dict[str, Any] | None:
        if not self.runs_table:
            return None
        key = {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": RUN_SK}}
        found = self.dynamodb.get_item(TableName=self.runs_table, Key=key, ConsistentRead=True).get("Item")
        return _item(found) if found else None

    def _run_items(self, run_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Run items by run id, read in batches."""
        if not self.runs_table or not run_ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        ids = sorted(run_ids)
        for start in range(0, len(ids), 100):
            keys = [{"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": RUN_SK}} for run_id in ids[start : start + 100]]
            request: dict[str, Any] = {self.runs_table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for raw in answer.get("Responses", {}).get(self.runs_table, []):
                    item = _item(raw)
                    found[str(item["pk"]).removeprefix("RUN#")] = item
                request = answer.get("UnprocessedKeys") or {}
        return found

    def _shards(self, run_id: str | None) -> list[dict[str, Any]]:
        if not self.runs_table or not run_id:
            return []
        query: dict[str, Any] = {
            "TableName": self.runs_table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}, ":prefix": {"S": SHARD_PREFIX}},
            "ConsistentRead": True,
        }
        shards: list[dict[str, Any]] = []
        while True:
            page = self.dynamodb.query(**query)
            shards.extend(_item(raw) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return shards
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- helpers ------------------------------------------------------------------------------------------------


def run_id_for_input(execution_input: str | None) -> str | None:
    """The run of an execution, from its input (the upload event) as RegisterRun derives it; None for an input
    that is not an upload event (another state machine's)."""
    try:
        event = ObjectCreated.model_validate(json.loads(execution_input or "{}"))
    except ValueError:  # not JSON, or not an upload event (pydantic's ValidationError is a ValueError)
        return None
    return run_id_of(event)


def list_executions(sfn: Any, status: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` executions of every state machine (``status`` filters them in ListExecutions), newest
    first, each with its input and uploaded file (DescribeExecution) and its state machine's name; and whether
    there were more. ListExecutions is followed page by page (``nextToken``) until ``limit`` are found."""
    found: list[dict[str, Any]] = []
    for machine in _pages(sfn, "list_state_machines", "stateMachines"):
        arguments: dict[str, Any] = {"stateMachineArn": machine["stateMachineArn"]}
        if status:
            arguments["statusFilter"] = status
        config = {"MaxItems": limit + 1, "PageSize": min(EXECUTIONS_PAGE, limit + 1)}
        pages = sfn.get_paginator("list_executions").paginate(**arguments, PaginationConfig=config)
        found.extend({**row, "state_machine": machine["name"]} for page in pages for row in page["executions"])
    found.sort(key=lambda row: row["startDate"], reverse=True)
    kept = found[:limit]
    for row in kept:
        row["input"] = sfn.describe_execution(executionArn=row["executionArn"]).get("input")
        row["file"] = _input_key(row["input"]) or ""
    return kept, len(found) > limit


def file_url(run_id: str, name: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    return f"/runs/{quote(run_id, safe='')}/files/{quote(name, safe='')}"


def _pages(client: Any, operation: str, key: str, **arguments: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**arguments):
        yield from page.get(key, [])


_DESERIALIZER = TypeDeserializer()


def _item(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(_DESERIALIZER.deserialize(value)) for key, value in raw.items()}


def _plain(value: Any) -> Any:
    """DynamoDB's values as JSON's: numbers as int or float, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _input_key(execution_input: str | None) -> str | None:
    try:
        payload = json.loads(execution_input or "{}")
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    nested = payload.get("input")
    key = payload.get("key") or (nested.get("key") if isinstance(nested, dict) else None)
    return str(key) if key else None


def _rows_of(item: Mapping[str, Any]) -> int | None:
    counts = item.get("counts")
    if isinstance(counts, dict) and isinstance(counts.get("rows"), int):
        return int(counts["rows"])
    by_status = item.get("by_status")
    if isinstance(by_status, dict) and by_status:
        return sum(int(v) for v in by_status.values() if isinstance(v, int))
    return None


def _run_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a run item a page shows at the top."""
    return {
        "run_id": str(item.get("pk", "")).removeprefix("RUN#"),
        "status": item.get("run_status"),
        "outcome": item.get("outcome"),
        "task": item.get("task"),
        "model_id": item.get("model_id"),
        "source": f"s3://{item.get('source_bucket')}/{item.get('source_key')}" if item.get("source_key") else None,
        "rows": _rows_of(item),
        "by_status": item.get("by_status"),
        "shards": item.get("shards"),
        "batch_jobs": item.get("batch_jobs"),
        "tokens": item.get("tokens"),
        "cost_usd": item.get("cost_usd"),
        "accuracy": item.get("accuracy"),
        "started": item.get("started_at"),
        "finished": item.get("finished_at"),
        "error": item.get("error"),
        "cause": item.get("cause"),
        "output_prefix": item.get("output_prefix"),
    }


_SHARD_FIELDS = (
    "kind",
    "round",
    "records",
    "job_arn",
    "job_name",
    "attempts",
    "total_records",
    "processed_records",
    "success_records",
    "error_records",
    "retryable",
    "unsent",
    "input_tokens",
    "output_tokens",
    "by_status",
    "error",
    "submitted_at",
    "job_ended_at",
    "updated_at",
)


def _shard_row(shard: Mapping[str, Any]) -> dict[str, Any]:
    row = {"name": str(shard.get("sk", "")).removeprefix(SHARD_PREFIX), "status": shard.get("shard_status")}
    row.update({field: shard.get(field) for field in _SHARD_FIELDS})
    return row


def _shard_counts(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """How the run's shards went, from the status table: how many, by status, and the ones that did not end
    PROCESSED."""
    statuses = Counter(str(shard.get("shard_status")) for shard in shards)
    return {
        "total": len(shards),
        "by_status": dict(sorted(statuses.items())),
        "records": sum(int(shard.get("records") or 0) for shard in shards),
        "jobs": sum(1 for shard in shards if shard.get("job_arn")),
        "open": [_shard_row(shard) for shard in shards if shard.get("shard_status") != "PROCESSED"][:50],
    }


def _results(result: Mapping[str, Any] | None, run_id: str | None) -> dict[str, Any] | None:
    """FinalizeRun's outputs and summary, as links through the console."""
    if not result:
        return None
    uris = [*result.get("outputs", []), *([result["summary"]] if result.get("summary") else [])]
    files = []
    for uri in uris:
        name = str(uri).rsplit("/", 1)[-1]
        files.append({"name": name, "uri": uri, "url": file_url(run_id, name) if run_id else None})
    return {"headline": result.get("headline"), "outcome": result.get("outcome"), "files": files}


def _state_views(
    graph: Graph,
    runs: list[StateRun],
    maps: Mapping[str, list[dict[str, Any]]],
    shards: list[dict[str, Any]],
) -> tuple[dict[str, NodeView], dict[str, dict[str, Any]]]:
    """For each state of the graph: how to draw it, and what a click on it shows."""
    last: dict[str, StateRun] = {}
    passes: Counter[str] = Counter()
    for passage in runs:
        last[passage.name] = passage
        passes[passage.name] += 1
    shard_summary = _shard_counts(shards)
    views: dict[str, NodeView] = {}
    states: dict[str, dict[str, Any]] = {}
    for node in graph.nodes.values():  # a state's parent comes before it
        run = last.get(node.name)
        parent = views.get(node.parent) if node.parent else None
        if run is not None:
            status = run.status
        elif parent is not None and parent.status not in {"not-reached", "unrecorded"}:
            status = "unrecorded"
        else:
            status = "not-reached"
        badge: list[str] = []
        detail: dict[str, Any] = {"id": node.id, "name": node.name, "type": node.type, "status": status}
        if node.comment:
            detail["comment"] = node.comment
        if run is not None:
            detail.update(
                {
                    "entered": iso(run.entered),
                    "exited": iso(run.exited),
                    "seconds": None if run.seconds is None else round(run.seconds, 3),
                    "passes": passes[node.name],
                    "retries": run.retries,
                    "input": _json_or_text(run.input),
                    "output": _json_or_text(run.output),
                    "error": run.error,
                    "cause": _json_or_text(run.cause),
                }
            )
            if passes[node.name] > 1:
                badge.append(f"{passes[node.name]} passes")
            if run.retries:
                badge.append(f"retried {run.retries}×")
            if run.error and status == "failed":
                badge.append(run.error)
            if run.iterations:
                badge.append(", ".join(f"{count} {state}" for state, count in sorted(run.iterations.items())))
        elif status == "unrecorded":
            detail["note"] = UNRECORDED_NOTE
        map_runs = maps.get(node.name) or []
        if node.type == "Map" and (map_runs or shards):
            detail["map_runs"] = map_runs
            detail["shards"] = shard_summary
            items = map_runs[-1].get("items") if map_runs else None
            if items:
                total = items.get("total", 0)
                counted = f"{total} item{'' if total == 1 else 's'} · {items.get('succeeded', 0)} succeeded"
                failed = sum(items.get(k, 0) for k in ("failed", "timedOut", "aborted"))
                badge.insert(0, f"{counted} · {failed} failed")
            if len(map_runs) > 1:
                badge.append(f"{len(map_runs)} map runs")
        title = f"{run.error}: {run.cause or ''}" if run is not None and run.error else ""
        views[node.id] = NodeView(status=status, badge=" · ".join(badge), title=title[:300])
        states[node.id] = detail
    return views, states


def _json_or_text(text: str | None) -> Any:
    """A payload as JSON when it is JSON (shown formatted), else as it is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
