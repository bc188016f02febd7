"""A state machine drawn as SVG, from its layout (:mod:`.layout`, re-exported here with :func:`layout`).

:func:`render_svg` draws a laid-out graph with what happened in each state (:class:`NodeView`), as inline SVG:
colours are presentation attributes (no ``style``), every name, label and tooltip is escaped, and each state is a
``<g class="state" data-state="<id>" data-status="<status>">`` that a page can make clickable.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from batch_classifier.charts import escape as _e

from .layout import (
    BADGE_CHAR_WIDTH,
    LABEL_LIMIT,
    Edge,
    Graph,
    Node,
    condition_text,
    layout,
    shorten,
    transitions,
)

__all__ = [
    "EDGE_COLOURS",
    "STATUS_COLOURS",
    "Edge",
    "Graph",
    "Node",
    "NodeView",
    "condition_text",
    "layout",
    "render_svg",
    "transitions",
]

#: Fill and stroke of a state by status (what the legend of a page shows).
STATUS_COLOURS = {
    "succeeded": ("#e6f4ea", "#2e7d32"),
    "failed": ("#fdecea", "#c62828"),
    "running": ("#e3f0fd", "#1565c0"),
    "not-reached": ("#f5f6f7", "#b0b7bf"),
    "unrecorded": ("#ffffff", "#8a939c"),
}
EDGE_COLOURS = {"next": "#5f6b76", "default": "#5f6b76", "choice": "#5f6b76", "catch": "#c0605a"}


@dataclass
class NodeView:
    """What happened in a state, for drawing it: its status (a key of :data:`STATUS_COLOURS`), a second line
    (counts, retries) and a tooltip."""

    status: str = "not-reached"
    badge: str = ""
    title: str = ""


# --- SVG ------------------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _path(points: list[tuple[float, float]], back: bool) -> str:
    """Straight runs for a loop's lane; for a forward edge, curves with vertical tangents through its points."""
    if not points:
        return ""
    start = f"M{_n(points[0][0])},{_n(points[0][1])}"
    if back:
        return start + "".join(f" L{_n(x)},{_n(y)}" for x, y in points[1:])
    parts = [start]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 == x1:
            parts.append(f" L{_n(x1)},{_n(y1)}")
        else:
            middle = (y0 + y1) / 2
            parts.append(f" C{_n(x0)},{_n(middle)} {_n(x1)},{_n(middle)} {_n(x1)},{_n(y1)}")
    return "".join(parts)


def render_svg(graph: Graph, views: Mapping[str, NodeView] | None = None, label: str = "state machine") -> str:
    """The graph as an ``<svg>`` element, each state coloured by its view (``not-reached`` when it has none)."""
    views = views or {}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="state-graph" width="{_n(graph.width)}" '
        f'height="{_n(graph.height)}" viewBox="0 0 {_n(graph.width)} {_n(graph.height)}" role="img" '
        f'aria-label="{_e(label)}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">',
        "<defs>",
        *(
            f'<marker id="sg-arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for kind, colour in (("plain", EDGE_COLOURS["next"]), ("catch", EDGE_COLOURS["catch"]))
        ),
        "</defs>",
    ]
    containers = sorted((n for n in graph.nodes.values() if n.container), key=lambda n: n.id.count("/"))
    leaves = [n for n in graph.nodes.values() if not n.container]
    for node in containers:
        out.append(_node_svg(node, views.get(node.id) or NodeView()))
    out.append('<g class="edges">')
    drawn: dict[tuple[str, str], list[Edge]] = {}
    for edge in graph.edges:
        drawn.setdefault((edge.source, edge.target), []).append(edge)
    for (source, target), same in drawn.items():
        kinds = sorted({edge.kind for edge in same})
        catch_only = kinds == ["catch"]
        colour = EDGE_COLOURS["catch" if catch_only else "next"]
        text = "; ".join(edge.label for edge in same if edge.label)
        shown = "" if "next" in kinds else "; ".join(edge.short for edge in same if edge.short)
        dash = ' stroke-dasharray="5 3"' if catch_only else ""
        out.append(
            f'<g class="edge {" ".join("edge-" + kind for kind in kinds)}" data-source="{_e(source)}" '
            f'data-target="{_e(target)}"><title>{_e(f"{source} → {target}" + (f": {text}" if text else ""))}</title>'
            f'<path d="{_path(same[0].points, same[0].back)}" fill="none" stroke="{colour}" stroke-width="1.4"{dash} '
            f'marker-end="url(#sg-arrow-{"catch" if catch_only else "plain"})"/>'
        )
        if shown and same[0].points:
            x, y, anchor = _label_point(same[0])
            out.append(
                f'<text class="edge-label" x="{_n(x)}" y="{_n(y)}" font-size="10" fill="#4a5560" '
                f'text-anchor="{anchor}" stroke="#ffffff" stroke-width="3" paint-order="stroke">'
                f"{_e(shorten(shown, LABEL_LIMIT))}</text>"
            )
        out.append("</g>")
    out.append("</g>")
    for node in leaves:
        out.append(_node_svg(node, views.get(node.id) or NodeView()))
    out.append("</svg>")
    return "\n".join(out)


def _label_point(edge: Edge) -> tuple[float, float, str]:
    """Half way along the edge's first stretch (a loop's: beside its lane), and how to anchor the text there."""
    x0, y0 = edge.points[0]
    x1, y1 = edge.points[1] if len(edge.points) > 1 else edge.points[0]
    if edge.back and len(edge.points) > 2:
        return x1 + 4, (y1 + edge.points[2][1]) / 2, "start"
    x, y = (x0 + x1) / 2, (y0 + y1) / 2 + 3
    if abs(x1 - x0) < 1:
        return x + 4, y, "start"
    return (x - 2, y, "end") if x1 < x0 else (x + 2, y, "start")


def _node_svg(node: Node, view: NodeView) -> str:
    fill, stroke = STATUS_COLOURS.get(view.status, STATUS_COLOURS["not-reached"])
    dash = ' stroke-dasharray="4 3"' if view.status in {"not-reached", "unrecorded"} else ""
    width = 2.4 if view.status in {"failed", "running"} else 1.4
    radius = {"Choice": node.height / 2, "Succeed": 14.0, "Fail": 14.0}.get(node.type, 6.0)
    if node.container:
        radius = 8.0
    tooltip = f"{node.name} ({node.type})"
    if view.title:
        tooltip += f"\n{view.title}"
    if node.comment:
        tooltip += f"\n{node.comment}"
    parts = [
        f'<g class="state type-{_e(node.type.lower())} status-{_e(view.status)}'
        f'{" container" if node.container else ""}" data-state="{_e(node.id)}" data-name="{_e(node.name)}" '
        f'data-type="{_e(node.type)}" data-status="{_e(view.status)}" tabindex="0" role="button" '
        f'aria-label="{_e(f"{node.name}: {view.status}")}">',
        f"<title>{_e(tooltip)}</title>",
        f'<rect x="{_n(node.x)}" y="{_n(node.y)}" width="{_n(node.width)}" height="{_n(node.height)}" '
        f'rx="{_n(radius)}" fill="{fill}" stroke="{stroke}" stroke-width="{_n(width)}"{dash}/>',
    ]
    centre = node.centre_x
    badge_limit = int((node.width - 10) / BADGE_CHAR_WIDTH)
    if node.container:
        parts.append(
            f'<text x="{_n(node.x + 12)}" y="{_n(node.y + 19)}" font-size="12" font-weight="600" '
            f'fill="#1f2933">{_e(node.name)}</text>'
        )
        if view.badge:
            parts.append(
                f'<text class="badge" x="{_n(node.x + 12)}" y="{_n(node.y + 36)}" font-size="10" fill="#323f4b">'
                f"{_e(shorten(view.badge, badge_limit))}</text>"
            )
    else:
        name_y = node.centre_y + (-4 if view.badge else 4)
        parts.append(
            f'<text x="{_n(centre)}" y="{_n(name_y)}" font-size="12" text-anchor="middle" fill="#1f2933">'
            f"{_e(node.name)}</text>"
        )
        if view.badge:
            parts.append(
                f'<text class="badge" x="{_n(centre)}" y="{_n(node.centre_y + 11)}" font-size="10" '
                f'text-anchor="middle" fill="#52606d">{_e(shorten(view.badge, badge_limit))}</text>'
            )
    parts.append("</g>")
    return "".join(parts)
