"""The pipeline graph as inline SVG: steps top to bottom in dependency layers, coloured by status.

Layout: a step's layer is one below its deepest dependency; each step takes its first dependency's column, a
condition's else-branch the next column over, and a taken slot pushes a step one column right. That is enough for
pipelines of this kind (a chain with a condition); nothing is drawn from outside the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pipelines.report.model import StepNode

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 250, 54, 70, 36, 16
STATUS_COLOURS = {  # fill, border
    "Succeeded": ("#e6f4ea", "#2e7d32"), "Failed": ("#fdecea", "#c62828"), "Executing": ("#e3f2fd", "#1565c0"),
    "Starting": ("#e3f2fd", "#1565c0"), "Stopping": ("#fff3e0", "#ef6c00"), "Stopped": ("#fff3e0", "#ef6c00"),
    "NotRun": ("#f5f5f5", "#9e9e9e"), "Unknown": ("#fafafa", "#757575"),
}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def layout(nodes: Sequence[StepNode]) -> dict[str, tuple[int, int]]:
    """name -> (column, layer)."""
    layers: dict[str, int] = {}
    by_name = {node.name: node for node in nodes}

    def layer(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in layers:
            deps = [d for d in by_name[name].depends_on if d in by_name and d not in seen]
            layers[name] = 1 + max((layer(d, seen | {name}) for d in deps), default=-1)
        return layers[name]

    order = sorted(nodes, key=lambda n: (layer(n.name), nodes.index(n)))
    placed: dict[str, tuple[int, int]] = {}
    taken: set[tuple[int, int]] = set()
    for node in order:
        parents = [placed[d][0] for d in node.depends_on if d in placed]
        column = min(parents, default=0)
        if node.branch is not None and node.branch[1] is False and node.branch[0] in node.depends_on:
            column = placed.get(node.branch[0], (0, 0))[0] + 1
        while (column, layers[node.name]) in taken:
            column += 1
        placed[node.name] = (column, layers[node.name])
        taken.add(placed[node.name])
    return placed


def render_dag_svg(nodes: Sequence[StepNode]) -> str:
    if not nodes:
        return ""
    places = layout(nodes)
    width = MARGIN * 2 + (max(c for c, _ in places.values()) + 1) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + (max(r for _, r in places.values()) + 1) * (BOX_H + GAP_Y) - GAP_Y
    parts = [f'<svg class="dag" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="pipeline graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#616161"/></marker></defs>']
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        for dep in node.depends_on:
            if dep in places:
                parts.append(_edge(places[dep], places[node.name], _edge_label(by_name[dep], node)))
    parts += [_box(node, places[node.name]) for node in nodes]
    parts.append("</svg>")
    return "\n".join(parts)


def _origin(place: tuple[int, int]) -> tuple[int, int]:
    return MARGIN + place[0] * (BOX_W + GAP_X), MARGIN + place[1] * (BOX_H + GAP_Y)


def _edge_label(parent: StepNode, child: StepNode) -> str:
    if parent.type == "Condition" and child.branch and child.branch[0] == parent.name:
        return "if true" if child.branch[1] else "else"
    return ""


def _edge(start: tuple[int, int], end: tuple[int, int], label: str) -> str:
    (x0, y0), (x1, y1) = _origin(start), _origin(end)
    sx, sy, ex, ey = x0 + BOX_W / 2, y0 + BOX_H, x1 + BOX_W / 2, y1
    if start[0] == end[0] and end[1] - start[1] > 1:  # skips a layer in its own column: around the boxes between
        side = x0 + BOX_W + GAP_X / 3
        path = f"M{x0 + BOX_W},{y0 + BOX_H / 2} C{side},{y0 + BOX_H / 2} {side},{y1 + BOX_H / 2} " \
               f"{x1 + BOX_W},{y1 + BOX_H / 2}"
    else:
        mid = (sy + ey) / 2
        path = f"M{sx},{sy} C{sx},{mid} {ex},{mid} {ex},{ey}"
    text = (f'<text x="{(sx + ex) / 2 + 6}" y="{(sy + ey) / 2 + 4}" class="edge-label">{escape(label)}</text>'
            if label else "")
    return f'<path d="{path}" fill="none" stroke="#616161" stroke-width="1.4" marker-end="url(#arrow)"/>{text}'


def _box(node: StepNode, place: tuple[int, int]) -> str:
    x, y = _origin(place)
    fill, border = STATUS_COLOURS.get(node.status, STATUS_COLOURS["Unknown"])
    dash = ' stroke-dasharray="5,4"' if node.status in ("NotRun", "Unknown") else ""
    status = "not run" if node.status == "NotRun" else node.status
    second = " · ".join(part for part in (node.type, status, duration_text(node.duration_s)) if part)
    tooltip = node.failure_reason or node.detail or ""
    name = node.name if len(node.name) <= 32 else node.name[:31] + "…"
    return (f'<g class="step" data-status="{escape(node.status)}"><title>{escape(node.name)}'
            f'{": " + escape(tooltip) if tooltip else ""}</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" stroke="{border}" '
            f'stroke-width="2"{dash}/>'
            f'<text x="{x + 12}" y="{y + 22}" class="step-name">{escape(name)}</text>'
            f'<text x="{x + 12}" y="{y + 42}" class="step-meta" fill="{border}">{escape(second)}</text></g>')
