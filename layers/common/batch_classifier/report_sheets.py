"""The run report's figures as sheets of a workbook: ``summary`` and, with a ground truth, ``confusion``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openpyxl.utils import get_column_letter

from .charts import share
from .report_digest import _confusion_axes, _text
from .writers import Sheet, Styled

__all__ = ["workbook_sheets"]

_PERCENT = "0.0%"
_USD_FORMAT = "$#,##0.0000"


def _title(text: str) -> list[Any]:
    return [Styled(text, bold=True)]


def _head(*names: str) -> list[Any]:
    return [Styled(name, bold=True) for name in names]


def _percent(value: Any) -> Styled:
    return Styled(value, number_format=_PERCENT)


def workbook_sheets(summary: Mapping[str, Any]) -> list[Sheet]:
    """A ``summary`` sheet with the report's figures and, when there is a ground truth, a ``confusion`` sheet."""
    sheets = [Sheet("summary", _summary_rows(summary), widths=(34, 16, 16, 14, 14, 14))]
    evaluation = summary.get("evaluation") or {}
    if evaluation.get("rows"):
        sheets.append(_confusion_sheet(evaluation))
    return sheets


def _summary_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [_head("run", "")]
    for name, key in (
        ("file", "source"),
        ("task", "task"),
        ("model", "model_id"),
        ("run id", "run_id"),
        ("outcome", "outcome"),
        ("headline", "headline"),
    ):
        if summary.get(key):
            rows.append([name, summary[key]])
    total = int(summary.get("rows") or 0)
    rows.append(["rows", total])
    if "needs_review" in summary:  # the review queue (a summary from before the flag has none)
        flagged = int(summary.get("needs_review") or 0)
        rows.append(["rows that need review", flagged, _percent(share(flagged, total))])
    controls = summary.get("controls")
    if isinstance(controls, Mapping) and controls.get("rows"):  # the task's control rows, in no other figure
        rows += [[], _head("control rows", "rows", "share")]
        rows.append(["control rows", controls["rows"]])
        rows.append(["answered right", controls.get("correct"), _percent(controls.get("accuracy"))])
        if controls.get("min_accuracy") is not None:
            rows.append(["minimum accuracy", None, _percent(controls["min_accuracy"])])
        rows.append(["degraded", "yes" if controls.get("degraded") else "no"])

    rows += [[], _head("rows by status", "rows", "share")]
    rows += [[s, n, _percent(share(n, total))] for s, n in (summary.get("by_status") or {}).items()]
    by_class: Mapping[str, int] = summary.get("by_class") or {}
    classified = sum(by_class.values())
    rows += [[], _head("class", "rows", "share")]
    rows += [[c, n, _percent(share(n, classified))] for c, n in by_class.items()]

    evaluation = summary.get("evaluation") or {}
    if evaluation.get("rows"):
        rows += [[], _title("against the ground truth")]
        rows.append(["labelled rows", evaluation["rows"]])
        for name, key in (("accuracy", "accuracy"), ("accuracy on answered rows", "accuracy_answered")):
            rows.append([name, _percent(evaluation.get(key))])
        rows.append(["coverage", _percent(evaluation.get("coverage"))])
        for name in ("macro", "weighted"):
            averages = evaluation.get(name) or {}
            rows.append([f"{name} F1", _percent(averages.get("f1"))])
        rows += [[], _head("class", "precision", "recall", "F1", "support", "predicted")]
        for name, m in (evaluation.get("per_class") or {}).items():
            rows.append(
                [
                    name,
                    _percent(m.get("precision")),
                    _percent(m.get("recall")),
                    _percent(m.get("f1")),
                    m.get("support"),
                    m.get("predicted"),
                ]
            )

    tokens = summary.get("tokens")
    if isinstance(tokens, Mapping):
        cost = summary.get("cost") or {}
        rows += [[], _head("tokens and cost", "input tokens", "output tokens", "USD")]
        for kind, label, usd in (("batch", "batch", "batch_usd"), ("on_demand", "on demand", "on_demand_usd")):
            used = tokens.get(kind) or {}
            rows.append(
                [label, used.get("input"), used.get("output"), Styled(cost.get(usd), number_format=_USD_FORMAT)]
            )
        rows.append(
            [
                "total",
                tokens.get("input"),
                tokens.get("output"),
                Styled(summary.get("cost_usd"), number_format=_USD_FORMAT),
            ]
        )
        for label, key in (
            ("the same tokens on demand", "on_demand_equivalent_usd"),
            ("saved by batch", "batch_saved_usd"),
            ("saved by packing", "packing_saved_usd"),
        ):
            if cost.get(key) is not None:
                rows.append([label, None, None, Styled(cost[key], number_format=_USD_FORMAT)])

    off_list = summary.get("off_list_answers") or {}
    if off_list.get("answers"):
        rows += [[], _head("off-list answer", "rows", "first ids")]
        for answer in off_list["answers"]:
            ids = ", ".join(_text(r.get("id")) for r in answer.get("rows") or [])
            rows.append([answer.get("answer"), answer.get("count"), ids])
    for status, tally in (summary.get("not_classified") or {}).items():
        if tally.get("reasons"):
            rows += [[], _head(f"{status}: reason", "rows")]
            rows += [[r.get("reason"), r.get("count")] for r in tally["reasons"]]

    steps = (summary.get("timings") or {}).get("steps") or []
    if steps:
        rows += [[], _head("step", "seconds")]
        rows += [[s.get("step"), s.get("seconds")] for s in steps]
    warnings = summary.get("warnings") or []
    if warnings:
        rows += [[], _title("warnings")]
        rows += [[w] for w in warnings]
    return rows


def _confusion_sheet(evaluation: Mapping[str, Any]) -> Sheet:
    confusion: Mapping[str, Mapping[str, int]] = evaluation.get("confusion") or {}
    truths, answers = _confusion_axes(evaluation)
    rows: list[list[Any]] = [[Styled("true class \\ answer", bold=True), *(Styled(a, bold=True) for a in answers)]]
    for truth in truths:
        cells = confusion.get(truth) or {}
        rows.append([Styled(truth, bold=True), *(cells.get(a, 0) for a in answers)])
    last = get_column_letter(len(answers) + 1)
    heat = f"B2:{last}{len(truths) + 1}" if truths and answers else None
    return Sheet("confusion", rows, widths=(30, *([12] * len(answers))), freeze="B2", heat_map=heat)
