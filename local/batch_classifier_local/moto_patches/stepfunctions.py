"""Step Functions' interpreter: scaled time for Wait states and Retry intervals, and Distributed Map runs that fail
past their tolerated failure threshold and remember which children succeeded (for a redrive)."""

from __future__ import annotations

import copy
import inspect
import json
import time
import types
from typing import Any

from .common import Active, replace, require


def patch_time(active: Active) -> None:
    """Scale Wait states and Retry intervals by the runtime's time scale: moto's interpreter really sleeps (a Wait
    state waits on the execution's event, so that stopping the execution ends the wait; a retry calls
    ``time.sleep``)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (  # noqa: PLC0415
        WaitFunction,
    )

    require(WaitFunction, "_wait_interval", ("self", "env", "wait_seconds"))
    retry = require(retrier_decl.RetrierDecl, "_eval_body", ("self", "env"))
    if getattr(retrier_decl, "time", None) is not time or not {"time", "sleep"} <= set(retry.__code__.co_names):
        raise RuntimeError(
            "the local runtime scales moto's Retry intervals by replacing the time.sleep of RetrierDecl._eval_body, "
            "which this moto does not call (use moto 5.2.5)."
        )
    real_sleep = time.sleep

    def scaled(seconds: float) -> float:
        runtime = active()
        return seconds * (runtime.time_scale if runtime is not None else 1.0)

    replace(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: real_sleep(scaled(seconds))))

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(scaled(wait_seconds))

    replace(WaitFunction, "_wait_interval", wait_interval)


# The children that succeeded in the last run of a Distributed Map that did not succeed, by (execution ARN, state
# name): child index → (the item as JSON, the child's output). A redrive hands them to the map's next run.
_MAP_SUCCESSES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {}
_MAP_REDRIVES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {}


def patch_distributed_map() -> None:
    """Fail a Distributed Map whose failed children pass its tolerated failure threshold, as Step Functions does
    (``States.ExceedToleratedFailureThreshold``); moto's interpreter counts failed children but lets the map
    succeed. Each map run also records its children that succeeded; in the run a redrive resumes, those children
    are not run again (they count as succeeded, with the output they had), as Step Functions redrives a map run."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (  # noqa: PLC0415
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (  # noqa: PLC0415
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: PLC0415
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: PLC0415
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: PLC0415
        distributed_item_processor_worker as workers,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded  # noqa: PLC0415

    original = require(DistributedIterationComponent, "_map_run", ("self", "env", "eval_input"))
    DistributedItemProcessorWorker = workers.DistributedItemProcessorWorker  # noqa: N806
    eval_job = require(DistributedItemProcessorWorker, "_eval_job", ("self", "env", "job"))
    if "map_run_record" not in inspect.signature(DistributedItemProcessorWorker.__init__).parameters:
        raise RuntimeError(
            "the local runtime patches moto's DistributedItemProcessorWorker, which this moto builds without its "
            "map run record (use moto 5.2.5)."
        )

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        key = (_execution_arn(env), str(eval_input.state_name))
        record = eval_input.map_run_record
        record.earlier_successes = _MAP_REDRIVES.pop(key, {})
        record.successes = {}
        succeeded = False
        try:
            original(self, env, eval_input)
            counters = record.item_counter
            failed, total = counters.failed.get(), counters.total.get()
            allowed_count = eval_input.tolerated_failure_count or 0
            allowed_share = eval_input.tolerated_failure_percentage or 0.0
            if failed > allowed_count and (total == 0 or 100.0 * failed / total > allowed_share):
                error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
                cause = f"{failed} of {total} child executions failed; the tolerated failure threshold was exceeded."
                details: Any = {
                    "mapRunFailedEventDetails": MapRunFailedEventDetails(error=error.error_name, cause=cause)
                }
                raise FailureEventException(
                    failure_event=FailureEvent(
                        env=env, error_name=error, event_type=HistoryEventType.MapRunFailed, event_details=details
                    )
                )
            succeeded = env.is_running()
        finally:
            if succeeded:
                _MAP_SUCCESSES.pop(key, None)
            else:
                _MAP_SUCCESSES[key] = record.successes

    def eval_job_once(self: Any, env: Any, job: Any) -> None:
        record = self._map_run_record
        item = json.dumps(job.job_input, sort_keys=True, default=str)
        earlier = getattr(record, "earlier_successes", {}).get(job.job_index)
        if earlier is not None and earlier[0] == item:  # succeeded before the redrive: not run again
            for counter in (record.item_counter, record.execution_counter):
                counter.total.count()
                counter.succeeded.count()
                counter.results_written.count()
            job.job_output = copy.deepcopy(earlier[1])
            record.successes[job.job_index] = earlier
            return
        eval_job(self, env, job)
        successes = getattr(record, "successes", None)
        if successes is not None and isinstance(env.program_state(), ProgramEnded):
            successes[job.job_index] = (item, job.job_output)

    replace(DistributedIterationComponent, "_map_run", map_run)
    replace(DistributedItemProcessorWorker, "_eval_job", eval_job_once)


def redrive_map_run(execution_arn: str, state_name: str) -> None:
    """The next run of the Distributed Map ``state_name`` in this execution (the one a redrive resumes) does not
    run again the children that succeeded in its last run."""
    key = (execution_arn, state_name)
    if key in _MAP_SUCCESSES:
        _MAP_REDRIVES[key] = _MAP_SUCCESSES.pop(key)


def _execution_arn(env: Any) -> str:
    return str(env.states.context_object.context_object_data["Execution"]["Id"])
