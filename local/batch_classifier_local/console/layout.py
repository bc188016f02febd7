"""The layout of a state machine: a layered, top-to-bottom placement of an ASL definition's states.

:func:`layout` places every state of a definition (the one ``DescribeStateMachine`` gives) in layers that follow
its transitions (``Next``, a Choice's rules and ``Default``, ``Catch``), in the order the workflow runs them. The
states of a Map's ``ItemProcessor`` (or ``Iterator``) and of a Parallel's branches are laid out the same way and
placed inside their state's box. A transition that goes back up (a poll loop, a retry round) is routed on the right
of what it spans. It is the classic layered drawing, kept small: longest-path layers, a point for each layer a
long edge crosses, a few barycentre sweeps to order each layer and to place its states near their neighbours.
:mod:`.graph` draws the result as SVG.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NODE_HEIGHT = 40.0
CHAR_WIDTH = 7.4  # of the 12 px sans-serif state names
BADGE_CHAR_WIDTH = 6.0  # of the 10 px badge lines
NAME_PADDING = 18.0
MIN_NODE_WIDTH = 104.0
LAYER_GAP = 44.0
NODE_GAP = 28.0
CONTAINER_HEADER = 48.0
MIN_CONTAINER_WIDTH = 248.0  # room for a line of counts
CONTAINER_PADDING = 16.0
BRANCH_GAP = 24.0
LANE_GAP = 16.0
DUMMY_WIDTH = 12.0
MARGIN = 16.0
LABEL_LIMIT = 24
SWEEPS = 4


@dataclass
class Node:
    """A state, placed: ``x``, ``y`` are its top-left corner in the whole drawing. ``id`` is its path, the names of
    the states it is in and its own, joined by ``/`` (``ProcessShards/SubmitJob``); a Parallel's branch adds its
    index (``Both/1/Left``)."""

    id: str
    name: str
    type: str
    parent: str | None
    comment: str = ""
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    width: float = MIN_NODE_WIDTH
    height: float = NODE_HEIGHT
    container: bool = False  # it holds states (a Map's item processor, a Parallel's branches)
    dummy: bool = False  # a point a long edge passes through (never in a Graph)

    @property
    def centre_x(self) -> float:
        return self.x + self.width / 2

    @property
    def centre_y(self) -> float:
        return self.y + self.height / 2


@dataclass
class Edge:
    """A transition: ``kind`` is ``next``, ``choice`` (a Choice rule, ``label`` its condition), ``default`` or
    ``catch`` (``label`` the errors it catches). ``back`` when it goes up to an earlier layer (a loop)."""

    source: str
    target: str
    kind: str
    label: str = ""
    back: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)
    short: str = ""  # what the drawing writes beside it (the label is its tooltip)


@dataclass
class Graph:
    """A laid-out state machine: every state (nested ones included) and every transition."""

    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float
    start: str

    def children(self, node_id: str) -> list[Node]:
        return [node for node in self.nodes.values() if node.parent == node_id]


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


# --- transitions --------------------------------------------------------------------------------------------

_COMPARISONS = {
    "GreaterThanEquals": ">=",
    "LessThanEquals": "<=",
    "GreaterThan": ">",
    "LessThan": "<",
    "Equals": "==",
    "Matches": "matches",
}


def transitions(state: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """A state's transitions as ``(target, kind, label)``, in the order the state lists them."""
    return [(target, kind, label) for target, kind, label, _ in _transitions(state)]


def _transitions(state: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(target, kind, label, short label)`` of each transition."""
    found: list[tuple[str, str, str, str]] = []
    if state.get("Type") == "Choice":
        for rule in state.get("Choices") or []:
            if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
                found.append((rule["Next"], "choice", condition_text(rule), condition_text(rule, short=True)))
        if isinstance(state.get("Default"), str):
            found.append((state["Default"], "default", "default", "default"))
    elif isinstance(state.get("Next"), str):
        found.append((state["Next"], "next", "", ""))
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            errors = [str(e) for e in catcher.get("ErrorEquals") or []]
            short = f"catch {errors[0]}" if len(errors) == 1 else f"catch {len(errors)} errors"
            found.append((catcher["Next"], "catch", f"catch {', '.join(errors)}".strip(), short))
    return found


def condition_text(rule: Mapping[str, Any], short: bool = False) -> str:
    """A Choice rule in a few words: ``$.job.done == true``, ``$.n >= 3 and $.ok == true``; ``short``: with
    only the last field of each path (``done == true``)."""
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"]).removeprefix("{%").removesuffix("%}").strip()
    for combinator in ("And", "Or"):
        if isinstance(rule.get(combinator), list):
            return f" {combinator.lower()} ".join(condition_text(part, short) for part in rule[combinator])
    if isinstance(rule.get("Not"), dict):
        return f"not ({condition_text(rule['Not'], short)})"
    variable = str(rule.get("Variable", ""))
    if short:
        variable = variable.rsplit(".", 1)[-1] or variable
    for key, value in rule.items():
        base = key.removesuffix("Path")
        if base.startswith("Is"):  # IsPresent, IsNull, IsString, ...: a boolean test
            return f"{variable} {'is' if value else 'is not'} {base[2:].lower()}"
        for suffix, symbol in _COMPARISONS.items():
            if base.endswith(suffix) and base != suffix:
                shown = value if key.endswith("Path") else json.dumps(value)
                return f"{variable} {symbol} {shown}"
    return variable


# --- layout ---------------------------------------------------------------------------------------------------


@dataclass
class _Scope:
    """A laid-out set of states (a definition, an item processor, a branch), relative to its own top-left."""

    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float


def layout(definition: Mapping[str, Any]) -> Graph:
    """Place every state of an ASL definition and route every transition (see the module's docstring)."""
    states = definition.get("States") or {}
    start = str(definition.get("StartAt", ""))
    scope = _layout_scope(states, start, "", None)
    _translate(scope.nodes, scope.edges, MARGIN, MARGIN)
    return Graph(
        nodes={node.id: node for node in scope.nodes},
        edges=scope.edges,
        width=scope.width + 2 * MARGIN,
        height=scope.height + 2 * MARGIN,
        start=start,
    )


def _inner_scopes(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The state machines a state holds: a Map's item processor (or iterator), a Parallel's branches."""
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if isinstance(processor, dict) and processor.get("States") else []
    if state.get("Type") == "Parallel":
        return [branch for branch in state.get("Branches") or [] if isinstance(branch, dict) and branch.get("States")]
    return []


def _name_width(name: str) -> float:
    return max(MIN_NODE_WIDTH, len(name) * CHAR_WIDTH + 2 * NAME_PADDING)


def _layout_scope(states: Mapping[str, Any], start: str, prefix: str, parent: str | None) -> _Scope:
    order = _discovery_order(states, start)
    nodes: dict[str, Node] = {}
    nested: dict[str, list[_Scope]] = {}
    for name in order:
        state = states[name]
        node = Node(
            id=f"{prefix}{name}",
            name=name,
            type=str(state.get("Type", "")),
            parent=parent,
            comment=str(state.get("Comment", "")),
            width=_name_width(name),
        )
        inner = _inner_scopes(state)
        if inner:
            several = len(inner) > 1
            nested[name] = [
                _layout_scope(
                    scope["States"],
                    str(scope.get("StartAt", "")),
                    f"{node.id}/{index}/" if several else f"{node.id}/",
                    node.id,
                )
                for index, scope in enumerate(inner)
            ]
            inner_width = sum(s.width for s in nested[name]) + BRANCH_GAP * (len(nested[name]) - 1)
            node.container = True
            node.width = max(node.width, MIN_CONTAINER_WIDTH, inner_width + 2 * CONTAINER_PADDING)
            node.height = CONTAINER_HEADER + max(s.height for s in nested[name]) + CONTAINER_PADDING
        nodes[name] = node

    edges = [
        Edge(source=nodes[name].id, target=nodes[target].id, kind=kind, label=label, short=short)
        for name in order
        for target, kind, label, short in _transitions(states[name])
        if target in nodes
    ]
    by_id = {node.id: name for name, node in nodes.items()}
    successors: dict[str, list[str]] = {name: [] for name in order}
    for edge in edges:
        source, target = by_id[edge.source], by_id[edge.target]
        if target not in successors[source]:
            successors[source].append(target)
    back = _back_edges(order, successors)
    for edge in edges:
        edge.back = (by_id[edge.source], by_id[edge.target]) in back
    layers = _layers(order, successors, back)
    for name, layer in layers.items():
        nodes[name].layer = layer

    rows, chains = _rows_with_dummies(order, nodes, successors, back)
    neighbours_up, neighbours_down = _neighbours(rows, nodes, successors, back, chains)
    _order_rows(rows, neighbours_up, neighbours_down)
    row_heights = [max(_all(nodes, chains)[key].height for key in row) for row in rows]
    _place(rows, _all(nodes, chains), neighbours_up, neighbours_down, row_heights)
    placed = _all(nodes, chains)
    width = max((n.x + n.width for n in placed.values()), default=0.0)
    height = sum(row_heights) + LAYER_GAP * max(len(rows) - 1, 0)

    width = _route(edges, nodes, by_id, chains, width)
    all_nodes = list(nodes.values())
    all_edges = list(edges)
    for name, scopes in nested.items():
        holder = nodes[name]
        inner_width = sum(s.width for s in scopes) + BRANCH_GAP * (len(scopes) - 1)
        x = holder.x + (holder.width - inner_width) / 2
        for scope in scopes:
            _translate(scope.nodes, scope.edges, x, holder.y + CONTAINER_HEADER)
            all_nodes.extend(scope.nodes)
            all_edges.extend(scope.edges)
            x += scope.width + BRANCH_GAP
    return _Scope(all_nodes, all_edges, width, height)


def _discovery_order(states: Mapping[str, Any], start: str) -> list[str]:
    """States in the order a depth-first walk from StartAt meets them; states it cannot reach follow, in the
    definition's order (each with what it reaches)."""
    order: list[str] = []
    seen: set[str] = set()
    roots = [start] if start in states else []
    roots += [name for name in states if name != start]
    for root in roots:
        stack = [root]
        while stack:
            name = stack.pop()
            if name in seen or name not in states:
                continue
            seen.add(name)
            order.append(name)
            stack.extend(reversed([target for target, _, _ in transitions(states[name]) if target not in seen]))
    return order


def _back_edges(order: list[str], successors: Mapping[str, list[str]]) -> set[tuple[str, str]]:
    """The transitions that close a cycle: to a state on the current depth-first path (self loops included)."""
    back: set[tuple[str, str]] = set()
    done: set[str] = set()
    for root in order:
        if root in done:
            continue
        path = {root}
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, index = stack[-1]
            if index < len(successors[name]):
                stack[-1] = (name, index + 1)
                target = successors[name][index]
                if target in path:
                    back.add((name, target))
                elif target not in done:
                    path.add(target)
                    stack.append((target, 0))
            else:
                stack.pop()
                path.discard(name)
                done.add(name)
    return back


def _layers(order: list[str], successors: Mapping[str, list[str]], back: set[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layers over the transitions that go forward."""
    incoming = {name: 0 for name in order}
    for name in order:
        for target in successors[name]:
            if (name, target) not in back:
                incoming[target] += 1
    layer = {name: 0 for name in order}
    ready = [name for name in order if incoming[name] == 0]
    while ready:
        name = ready.pop(0)
        for target in successors[name]:
            if (name, target) in back:
                continue
            layer[target] = max(layer[target], layer[name] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return layer


def _rows_with_dummies(
    order: list[str], nodes: dict[str, Node], successors: Mapping[str, list[str]], back: set[tuple[str, str]]
) -> tuple[list[list[str]], dict[tuple[str, str], list[Node]]]:
    """Each layer's keys (state names, and a dummy for each layer a longer forward edge crosses), in discovery
    order; and each long edge's dummies."""
    depth = max((node.layer for node in nodes.values()), default=0) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    chains: dict[tuple[str, str], list[Node]] = {}
    for name in order:
        rows[nodes[name].layer].append(name)
    for name in order:
        for target in successors[name]:
            low, high = nodes[name].layer, nodes[target].layer
            if (name, target) in back or high - low < 2:
                continue
            chain = []
            for layer in range(low + 1, high):
                dummy = Node(
                    id=f"\0{name}\0{target}\0{layer}",
                    name="",
                    type="",
                    parent=None,
                    layer=layer,
                    width=DUMMY_WIDTH,
                    height=0.0,
                    dummy=True,
                )
                rows[layer].append(dummy.id)
                chain.append(dummy)
            chains[(name, target)] = chain
    return rows, chains


def _all(nodes: dict[str, Node], chains: Mapping[tuple[str, str], list[Node]]) -> dict[str, Node]:
    found = dict(nodes)
    for chain in chains.values():
        found.update({dummy.id: dummy for dummy in chain})
    return found


def _neighbours(
    rows: list[list[str]],
    nodes: dict[str, Node],
    successors: Mapping[str, list[str]],
    back: set[tuple[str, str]],
    chains: Mapping[tuple[str, str], list[Node]],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """For each key, its neighbours in the layer above and in the layer below (forward edges, through dummies)."""
    up: dict[str, list[str]] = {key: [] for row in rows for key in row}
    down: dict[str, list[str]] = {key: [] for row in rows for key in row}
    for name, targets in successors.items():
        for target in targets:
            if (name, target) in back:
                continue
            path = [name, *(dummy.id for dummy in chains.get((name, target), [])), target]
            for upper, lower in itertools.pairwise(path):
                down[upper].append(lower)
                up[lower].append(upper)
    return up, down


def _order_rows(rows: list[list[str]], up: Mapping[str, list[str]], down: Mapping[str, list[str]]) -> None:
    """Barycentre sweeps, down then up, to cut crossings; ties keep the current order."""
    for _ in range(SWEEPS):
        for index in range(1, len(rows)):
            _sort_by_barycentre(rows[index], rows[index - 1], up)
        for index in range(len(rows) - 2, -1, -1):
            _sort_by_barycentre(rows[index], rows[index + 1], down)


def _sort_by_barycentre(row: list[str], fixed: list[str], neighbours: Mapping[str, list[str]]) -> None:
    position = {key: index for index, key in enumerate(fixed)}
    current = {key: index for index, key in enumerate(row)}

    def barycentre(key: str) -> float:
        places = [position[other] for other in neighbours[key] if other in position]
        return sum(places) / len(places) if places else float(current[key])

    row.sort(key=lambda key: (barycentre(key), current[key]))


def _place(
    rows: list[list[str]],
    nodes: Mapping[str, Node],
    up: Mapping[str, list[str]],
    down: Mapping[str, list[str]],
    row_heights: list[float],
) -> None:
    """x: each layer packed, then moved towards the centres of its neighbours, sweeping down and up; y: layers
    stacked, each state centred in its layer's height."""
    widest = max((sum(nodes[key].width for key in row) + NODE_GAP * (len(row) - 1) for row in rows), default=0.0)
    for row in rows:
        width = sum(nodes[key].width for key in row) + NODE_GAP * (len(row) - 1)
        x = (widest - width) / 2
        for key in row:
            nodes[key].x = x
            x += nodes[key].width + NODE_GAP
    for _ in range(SWEEPS):
        for row in rows[1:]:
            _pull_towards(row, nodes, up)
        for row in reversed(rows[:-1]):
            _pull_towards(row, nodes, down)
    left = min((nodes[key].x for row in rows for key in row), default=0.0)
    top = 0.0
    for row, height in zip(rows, row_heights, strict=True):
        for key in row:
            node = nodes[key]
            node.x -= left
            if node.dummy:
                node.y, node.height = top, height
            else:
                node.y = top + (height - node.height) / 2
        top += height + LAYER_GAP


def _pull_towards(row: list[str], nodes: Mapping[str, Node], neighbours: Mapping[str, list[str]]) -> None:
    """Move a layer's states towards the mean centre of their neighbours, keeping their order and gaps: the mean
    of the packing from the left and the packing from the right, both of which keep the gaps."""
    wanted = []
    for key in row:
        node = nodes[key]
        centres = [nodes[other].centre_x for other in neighbours[key]]
        centre = sum(centres) / len(centres) if centres else node.centre_x
        wanted.append(centre - node.width / 2)
    from_left: list[float] = []
    for index in range(len(row)):
        x = wanted[index]
        if index:
            previous = nodes[row[index - 1]]
            x = max(x, from_left[-1] + previous.width + NODE_GAP)
        from_left.append(x)
    from_right: list[float] = [0.0] * len(row)
    for index in range(len(row) - 1, -1, -1):
        x = wanted[index]
        if index < len(row) - 1:
            x = min(x, from_right[index + 1] - NODE_GAP - nodes[row[index]].width)
        from_right[index] = x
    for index, key in enumerate(row):
        nodes[key].x = (from_left[index] + from_right[index]) / 2


def _route(
    edges: list[Edge],
    nodes: dict[str, Node],
    by_id: Mapping[str, str],
    chains: Mapping[tuple[str, str], list[Node]],
    width: float,
) -> float:
    """Points of every edge; returns the scope's width with the lanes of the loops' edges."""
    placed = list(nodes.values())
    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    forward = [edge for edge in edges if not edge.back]
    # Where forward edges leave and enter a state: spread over its bottom and top, ordered by the other end.
    leaving: dict[str, list[tuple[str, str]]] = {}
    entering: dict[str, list[tuple[str, str]]] = {}
    for edge in forward:
        pair = (by_id[edge.source], by_id[edge.target])
        if pair not in leaving.setdefault(pair[0], []):
            leaving[pair[0]].append(pair)
            entering.setdefault(pair[1], []).append(pair)

    def first_hop(pair: tuple[str, str]) -> Node:
        chain = chains.get(pair)
        return chain[0] if chain else nodes[pair[1]]

    def last_hop(pair: tuple[str, str]) -> Node:
        chain = chains.get(pair)
        return chain[-1] if chain else nodes[pair[0]]

    def spread(node: Node, index: int, count: int) -> float:
        step = min(node.width / (count + 1), 28.0)
        return node.centre_x + (index - (count - 1) / 2) * step

    for source, pairs_out in leaving.items():
        pairs_out.sort(key=lambda pair: first_hop(pair).centre_x)
        for index, pair in enumerate(pairs_out):
            pairs[pair] = [(spread(nodes[source], index, len(pairs_out)), nodes[source].y + nodes[source].height)]
    for target, pairs_in in entering.items():
        pairs_in.sort(key=lambda pair: last_hop(pair).centre_x)
        for index, pair in enumerate(pairs_in):
            middle = [(dummy.centre_x, y) for dummy in chains.get(pair, []) for y in (dummy.y, dummy.y + dummy.height)]
            pairs[pair] += [*middle, (spread(nodes[target], index, len(pairs_in)), nodes[target].y)]

    lanes = 0
    for edge in edges:
        pair = (by_id[edge.source], by_id[edge.target])
        if not edge.back:
            edge.points = list(pairs[pair])
            continue
        if pair in pairs:
            edge.points = list(pairs[pair])
            continue
        start, end = nodes[pair[0]], nodes[pair[1]]
        if start is end:
            right = start.x + start.width
            loop = [(right, start.centre_y - 8), (right + 22, start.centre_y - 8)]
            loop += [(right + 22, start.centre_y + 8), (right, start.centre_y + 8)]
            pairs[pair] = loop
            width = max(width, right + 22 + LANE_GAP)
        else:
            low, high = sorted((start.layer, end.layer))
            spanned = [n for n in placed if low <= n.layer <= high]
            lanes += 1
            lane = max(n.x + n.width for n in spanned) + LANE_GAP * lanes
            entry = end.y + min(20.0, end.height / 2)
            pairs[pair] = [
                (start.x + start.width, start.centre_y),
                (lane, start.centre_y),
                (lane, entry),
                (end.x + end.width, entry),
            ]
            width = max(width, lane + LANE_GAP + len(shorten(edge.short, LABEL_LIMIT)) * BADGE_CHAR_WIDTH)
        edge.points = list(pairs[pair])
    return width


def _translate(nodes: list[Node], edges: list[Edge], dx: float, dy: float) -> None:
    for node in nodes:
        node.x += dx
        node.y += dy
    for edge in edges:
        edge.points = [(x + dx, y + dy) for x, y in edge.points]
