"""Pre-flight: what a run will cost, estimated before anything is submitted, and the cap it must stay under.

ShardRecords knows the run's distinct texts, their characters and which shards go to batch jobs or on-demand
calls: :func:`preflight` estimates the input and output tokens (as ``batch-classifier estimate`` does, at the
task's ``texts_per_request``) and prices the batch shards at the batch price and the rest at the on-demand price.
The estimate is stored on the run (and compared with what was billed in ``summary.json``). Above the cap, the
stack's ``MaxRunCostUsd`` or the task's ``max_cost_usd`` (the lower, when both are set), it raises
:class:`~.errors.SpendCapError`: the execution stops at ShardRecords with nothing submitted, and a redrive after
the cap is raised (``sam deploy --parameter-overrides MaxRunCostUsd=...``) goes on from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .cost import PriceTable
from .errors import SpendCapError
from .pipeline import cost_estimates
from .tasks import Task

_USD_DIGITS = 6


@dataclass(frozen=True)
class Preflight:
    """A run's estimate before it is submitted, and the cap it was held to (None: no cap)."""

    input_tokens: int
    output_tokens: int
    estimated_usd: float
    cap_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, _USD_DIGITS) if isinstance(v, float) else v for k, v in asdict(self).items()}


def spend_cap(stack_cap_usd: float, task: Task) -> float | None:
    """The cap of a run: the lower of the stack's (0: none) and the task's (unset: none)."""
    caps = [cap for cap in (stack_cap_usd or None, task.max_cost_usd) if cap]
    return min(caps) if caps else None


def preflight(
    task: Task,
    plan: dict[str, Any],
    on_demand_share: float,
    stack_cap_usd: float,
    prices: PriceTable | None = None,
) -> Preflight:
    """The run's estimated cost from its plan (``rows``, ``distinct_texts``, ``text_chars``), with ``on_demand_share``
    of its requests answered on demand, and its cap."""
    estimate = cost_estimates(
        task, plan["rows"], plan["distinct_texts"], plan["text_chars"], prices or PriceTable.load()
    )[0]
    share = min(max(on_demand_share, 0.0), 1.0)
    usd = estimate.batch_usd * (1 - share) + estimate.on_demand_usd * share
    return Preflight(estimate.input_tokens, estimate.output_tokens, usd, spend_cap(stack_cap_usd, task))


def enforce(found: Preflight, model_id: str) -> None:
    """:class:`SpendCapError` when the estimate is above the cap."""
    if found.cap_usd is not None and found.estimated_usd > found.cap_usd:
        raise SpendCapError(
            f"this run would cost about ${found.estimated_usd:,.2f} ({found.input_tokens:,} input and "
            f"{found.output_tokens:,} output tokens with {model_id}), above the cap of ${found.cap_usd:,.2f} "
            "(MaxRunCostUsd, or the task's max_cost_usd): nothing was submitted. Raise the cap and redrive this "
            "execution, or split the file."
        )
