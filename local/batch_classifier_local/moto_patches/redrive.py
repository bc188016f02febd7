"""RedriveExecution, which moto's Step Functions does not have."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import replace, require
from .stepfunctions import redrive_map_run

REDRIVABLE_PERIOD = timedelta(days=14)
HISTORY_EVENT_LIMIT = 25_000
_REDRIVE_TOKENS_KEPT = 10  # Step Functions answers the last 10 client tokens of an execution idempotently
_REDRIVE_LOCK = threading.Lock()


def patch() -> None:
    """RedriveExecution on moto's executing Step Functions backend, with Step Functions' semantics: a FAILED,
    TIMED_OUT or ABORTED execution of a Standard state machine, stopped within the last 14 days, runs again under the
    same ARN, from the state that did not succeed, with the input that state had, on the definition it started
    with. The history gets ``ExecutionRedriven`` and then the new events (ids continue); ``redriveCount`` goes up by
    one and ``redriveDate`` is set; the state machine's timeout starts again. Any other execution is refused with
    ExecutionNotRedrivable and the reason DescribeExecution gives in ``redriveStatusReason``. In a Distributed Map
    that failed, only the children that did not succeed run again (:func:`.stepfunctions.patch_distributed_map`);
    an inline Map or Parallel state runs all its iterations or branches again."""
    from moto.core.exceptions import AWSError  # noqa: PLC0415
    from moto.core.responses import ActionResult  # noqa: PLC0415
    from moto.stepfunctions.parser.api import (  # noqa: PLC0415
        ExecutionRedrivenEventDetails,
        ExecutionStatus,
        HistoryEventType,
    )
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.eval.event.event_manager import (  # noqa: PLC0415
        EventHistoryContext,
        EventManager,
    )
    from moto.stepfunctions.parser.backend.execution import Execution  # noqa: PLC0415
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker  # noqa: PLC0415
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415
    from moto.stepfunctions.parser.utils import TMP_THREADS  # noqa: PLC0415
    from moto.stepfunctions.responses import StepFunctionResponse  # noqa: PLC0415

    if hasattr(StepFunctionResponse, "redrive_execution") or hasattr(StepFunctionsParserBackend, "redrive_execution"):
        raise RuntimeError(
            "the local runtime adds RedriveExecution to moto, which this moto already has (use moto 5.2.5)."
        )
    require(Execution, "_get_start_execution_worker", ("self",))
    require(Execution, "_get_start_execution_worker_comm", ("self",))
    require(ExecutionWorker, "_get_evaluation_entrypoint", ("self",))
    require(ExecutionWorker, "_get_evaluation_environment", ("self",))
    require(EventManager, "add_event", ("self", "context", "event_type", "event_details"))
    require(EventManager, "get_event_history", ("self",))
    require(EvalComponent, "eval", ("self", "env"))
    require(StepFunctionsParserBackend, "describe_execution", ("self", "execution_arn"))
    describe_execution = require(StepFunctionResponse, "describe_execution", ("self",))
    list_executions = require(StepFunctionResponse, "list_executions", ("self",))
    if not isinstance(getattr(EventManager(), "_history_event_list", None), list):
        raise RuntimeError(
            "the local runtime reads moto's EventManager._history_event_list, which this moto does not have "
            "(use moto 5.2.5)."
        )

    class ExecutionNotRedrivable(AWSError):
        TYPE = "ExecutionNotRedrivable"
        STATUS = 400

    def not_redrivable(execution: Any) -> str | None:
        """Why the execution cannot be redriven now (Step Functions' ``redriveStatusReason``), or None."""
        status = str(execution.status)
        if getattr(execution.state_machine, "type", "STANDARD") != "STANDARD":
            return "Execution of an EXPRESS state machine cannot be redriven."
        if status in {ExecutionStatus.RUNNING.value, ExecutionStatus.SUCCEEDED.value}:
            return f"Execution is {status} and cannot be redriven."
        if execution.stop_date is not None and datetime.now(UTC) - execution.stop_date > REDRIVABLE_PERIOD:
            return "Execution redrivable period exceeded."
        env = execution.exec_worker.env if execution.exec_worker is not None else None
        if env is None:
            return "Execution has no history to redrive from."
        if len(env.event_manager._history_event_list) >= HISTORY_EVENT_LIMIT:
            return "Execution history event limit exceeded."
        return None

    def redrive_fields(execution: Any) -> dict[str, Any]:
        """What DescribeExecution adds about redrives: count, date, and whether a redrive is possible (and why not)."""
        count = int(getattr(execution, "redrive_count", 0))
        fields: dict[str, Any] = {"redriveCount": count}
        if count:
            fields["redriveDate"] = execution.redrive_date
        reason = not_redrivable(execution)
        fields["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
        if reason:
            fields["redriveStatusReason"] = reason
        return fields

    def redrive_execution(self: Any, execution_arn: str, client_token: str | None = None) -> datetime:
        execution = self.describe_execution(execution_arn)
        with _REDRIVE_LOCK:
            tokens: dict[str, datetime] = execution.__dict__.setdefault("redrive_tokens", {})
            if client_token and client_token in tokens:
                return tokens[client_token]  # the same request again: already redriven
            reason = not_redrivable(execution)
            if reason is not None:
                raise ExecutionNotRedrivable(f"Execution '{execution_arn}' cannot be redriven: {reason}")
            previous = execution.exec_worker.env
            events = previous.event_manager.get_event_history()
            resume = _resume_point(events, set(json.loads(execution.state_machine.definition)["States"]))
            if resume is None:
                raise ExecutionNotRedrivable(
                    f"Execution '{execution_arn}' cannot be redriven: its history shows no state that did not succeed."
                )
            state_name, state_input = resume
            redrive_map_run(execution_arn, state_name)
            count = int(getattr(execution, "redrive_count", 0)) + 1
            date = datetime.now(UTC)
            worker = execution._get_start_execution_worker()
            program = worker._get_evaluation_entrypoint()
            env = worker._get_evaluation_environment()
            env.event_manager = previous.event_manager  # the history goes on, ids included
            env.variable_store = previous.variable_store
            env.map_run_record_pool_manager = previous.map_run_record_pool_manager  # ListMapRuns keeps every attempt's
            context = EventHistoryContext(previous_event_id=int(events[-1]["id"]) if events else 0)
            redriven: Any = {"executionRedrivenEventDetails": ExecutionRedrivenEventDetails(redriveCount=count)}
            env.event_manager.add_event(
                context=context, event_type=HistoryEventType.ExecutionRedriven, event_details=redriven
            )
            env.event_history_context = context
            data: Any = env.states.context_object.context_object_data["Execution"]
            data["RedriveCount"] = count  # $$.Execution.RedriveCount and RedriveTime, as Step Functions adds them
            data["RedriveTime"] = date.isoformat()
            env.states.reset(input_value=state_input)
            env.next_state_name = state_name
            worker.env = env
            execution.exec_worker = worker
            execution.exec_status = ExecutionStatus.RUNNING
            execution.stop_date = execution.error = execution.cause = execution.output = None
            execution.redrive_count = count
            execution.redrive_date = date
            communication = execution._get_start_execution_worker_comm()

            def run() -> None:
                # Program.eval, from the state that did not succeed rather than StartAt.
                timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
                body = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
                TMP_THREADS.append(body)
                body.start()
                body.join(timeout=timeout)
                if body.is_alive():
                    env.set_timed_out()
                communication.terminated()

            thread = threading.Thread(target=run, daemon=True, name=f"redrive-{execution.name}")
            TMP_THREADS.append(thread)
            thread.start()
            if client_token:
                tokens[client_token] = date
                for old in list(tokens)[:-_REDRIVE_TOKENS_KEPT]:
                    del tokens[old]
            return date

    def redrive_response(self: Any) -> Any:
        backend = self.stepfunction_backend
        if not isinstance(backend, StepFunctionsParserBackend):
            raise ExecutionNotRedrivable("Executions are not run (stepfunctions.execute_state_machine is off).")
        date = redrive_execution(backend, self._get_param("executionArn"), client_token=self._get_param("clientToken"))
        return ActionResult({"redriveDate": date})

    def describe_with_redrive(self: Any) -> Any:
        result = describe_execution(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        if isinstance(execution, Execution) and isinstance(result, ActionResult) and isinstance(result.result, dict):
            result.result.update(redrive_fields(execution))
        return result

    def list_with_redrive(self: Any) -> Any:
        result = list_executions(self)
        if not (isinstance(result, ActionResult) and isinstance(result.result, dict)):
            return result
        wanted = self._get_param("redriveFilter")
        kept = []
        for item in result.result.get("executions") or []:
            execution = self.stepfunction_backend.describe_execution(item["executionArn"])
            count = int(getattr(execution, "redrive_count", 0))
            if (wanted == "REDRIVEN" and not count) or (wanted == "NOT_REDRIVEN" and count):
                continue
            item["redriveCount"] = count
            if count:
                item["redriveDate"] = execution.redrive_date
            kept.append(item)
        result.result["executions"] = kept
        return result

    replace(StepFunctionsParserBackend, "redrive_execution", redrive_execution)
    replace(StepFunctionResponse, "redrive_execution", redrive_response)
    replace(StepFunctionResponse, "describe_execution", describe_with_redrive)
    replace(StepFunctionResponse, "list_executions", list_with_redrive)


def _resume_point(events: list[dict[str, Any]], top_level: set[str]) -> tuple[str, Any] | None:
    """Where a redrive resumes: the top-level state of the last attempt that was entered and never exited (the one
    that failed, timed out or was aborted, a Fail state included), with the input it was entered with."""
    entered: dict[str, str | None] = {}
    for event in events:
        if event.get("type") == "ExecutionRedriven":
            entered.clear()  # every state of the attempt before ended with it
        details = event.get("stateEnteredEventDetails")
        if details and details.get("name") in top_level:
            entered.pop(details["name"], None)  # entered again (a loop): it is the latest
            entered[details["name"]] = details.get("input")
        exited = event.get("stateExitedEventDetails")
        if exited:
            entered.pop(exited.get("name"), None)
    if not entered:
        return None
    name, text = list(entered.items())[-1]
    return name, json.loads(text) if text else {}
