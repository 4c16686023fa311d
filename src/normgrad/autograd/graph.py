"""Inspect a graph: trace it, write it as DOT, render it as SVG/PNG, walk its backward.

``render`` lays the DAG out itself (columns by depth, inputs next to their first
use, long graphs wrapped into bands of a few columns, so the picture fits a page)
and draws it with matplotlib, so no Graphviz binary is needed; ``to_svg`` gives
the same picture as text, which is what a notebook shows for a ``Tensor``. Forward
edges are black, backward edges red and dashed, as in the seeds' figure; nodes
where gradients from several branches are summed have an orange border.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write
from .order import Node, topological_order

FORWARD_COLOR, BACKWARD_COLOR, SUM_COLOR = "#222222", "#d62728", "#ff7f0e"


def trace(root: Node) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """The nodes ``root`` depends on (parents first) and the edges (parent, child).

    Constants folded into a gate (the eps in var + eps, the 1 in 1 / sqrtvar)
    are part of the gate's op, not nodes of their own.
    """
    nodes = [n for n in topological_order(root) if not n.const]
    edges = [(p, n) for n in nodes for p in n.parents if not p.const]
    return nodes, edges


def summary(values: np.ndarray | None, exact_up_to: int = 6) -> str:
    """Exact values for tiny arrays, else mean/std/min/max."""
    if values is None:
        return "-"
    a = np.asarray(values)
    if a.size <= exact_up_to:
        return np.array2string(a.ravel(), precision=3, separator=", ", suppress_small=True)
    return f"mean {a.mean():.3g} std {a.std():.3g} [{a.min():.3g}, {a.max():.3g}]"


def op_label(node: Node) -> str:
    """The gate as a formula over its inputs' names: 'xmu * ivar', 'var + 1e-05'."""
    if not node.op:
        return "input"
    names = [p.name for p in node.parents]
    return node.op.format(a=names[0], b=names[-1])


def consumers(nodes, edges) -> dict[int, int]:
    """For each node id, how many gates use it (gradients summed from that many branches)."""
    count = {id(n): 0 for n in nodes}
    for parent, _ in edges:
        count[id(parent)] += 1
    return count


def node_lines(node: Node) -> list[str]:
    grad = None if node.grad is None else node.grad.data
    return [node.name, f"= {op_label(node)}" if node.op else "input", f"shape {node.shape}", f"val  {summary(node.data)}",
            f"grad {summary(grad)}"]


def to_dot(root: Node) -> str:
    """The graph as Graphviz DOT text: forward edges black, backward edges red."""
    nodes, edges = trace(root)
    fan = consumers(nodes, edges)
    lines = ["digraph normgrad {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for n in nodes:
        label = "\\n".join(s.replace('"', "'") for s in node_lines(n))
        extra = f', color="{SUM_COLOR}", penwidth=2' if fan[id(n)] > 1 else ""
        lines.append(f'  "{id(n)}" [label="{label}"{extra}];')
    for p, c in edges:
        lines.append(f'  "{id(p)}" -> "{id(c)}" [color="{FORWARD_COLOR}"];')
        lines.append(f'  "{id(c)}" -> "{id(p)}" [color="{BACKWARD_COLOR}", style=dashed, constraint=false];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _main_lane(nodes, edges, col) -> list[Node]:
    """The path with fewest gates from the leftmost input to the root: the picture's spine."""
    root, start = nodes[-1], min(nodes, key=lambda n: col[id(n)])
    children = {id(n): [c for p, c in edges if p is n] for n in nodes}
    previous, frontier = {id(start): None}, [start]
    while frontier and id(root) not in previous:
        nxt = []
        for n in frontier:
            for c in children[id(n)]:
                if id(c) not in previous:
                    previous[id(c)] = n
                    nxt.append(c)
        frontier = nxt
    lane, n = [], root
    while n is not None and id(n) in previous:
        lane.append(n)
        n = previous[id(n)]
    return lane[::-1]


def layout(nodes, edges) -> dict[int, tuple[float, float]]:
    """(column, row) per node id.

    Column = depth from the inputs (other inputs sit just before their first use).
    Row 0 is the main lane, the shortest path from the first input to the root;
    every other node takes the free row nearest its off-lane parent's (or above
    the lane), so a branch such as the variance chain runs straight beside it.
    """
    parents = {id(n): [p for p, c in edges if c is n] for n in nodes}
    children = {id(n): [c for p, c in edges if p is n] for n in nodes}
    col: dict[int, int] = {}
    for n in nodes:
        ps = parents[id(n)]
        col[id(n)] = 1 + max(col[id(p)] for p in ps) if ps else 0
    for n in nodes:  # pull inputs to the column before their first consumer
        if not parents[id(n)] and children[id(n)]:
            col[id(n)] = min(col[id(c)] for c in children[id(n)]) - 1
    row = {id(n): 0 for n in _main_lane(nodes, edges, col)}
    taken = {(col[k], 0) for k in row}
    for n in sorted(nodes, key=lambda t: col[id(t)]):
        if id(n) in row:
            continue
        off_lane = [row[id(p)] for p in parents[id(n)] if id(p) in row and row[id(p)] != 0]
        prefer = off_lane[0] if off_lane else -1
        candidates = [prefer] + [r for k in range(1, len(nodes) + 1) for r in (-k, k) if r != prefer]
        r = next(r for r in candidates if (col[id(n)], r) not in taken and r != 0)
        row[id(n)] = r
        taken.add((col[id(n)], r))
    return {k: (float(col[k]), float(row[k])) for k in col}


BAND_COLUMNS = 4  # columns per band: a long graph wraps into rows that fit a page


def wrap(pos: dict[int, tuple[float, float]], columns: int = BAND_COLUMNS) -> dict[int, tuple[float, float]]:
    """Fold a wide (column, row) layout into bands of ``columns`` columns, one below the other,
    like lines of text: the graph reads left to right, then on in the next band. Each band
    is as tall as the rows it uses."""
    first = min(c for c, _ in pos.values())
    band = {k: int((c - first) // columns) for k, (c, _) in pos.items()}
    top = {}
    offset = 0.0
    for b in sorted(set(band.values())):
        rows = [pos[k][1] for k in pos if band[k] == b]
        top[b] = offset - min(rows)
        offset += max(rows) - min(rows) + 1.5  # the band's rows plus a gap for the edges between bands
    return {k: (c - first - band[k] * columns, r + top[band[k]]) for k, (c, r) in pos.items()}


def figure(root: Node, title: str | None = None):
    """The graph of ``root`` as a matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    nodes, edges = trace(root)
    fan = consumers(nodes, edges)
    pos = wrap(layout(nodes, edges))
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    dx, dy, w, h = 4.5, 2.1, 4.1, 1.45  # column and row pitch, box size (1 unit = 0.75 in)
    width, height = (max(xs) - min(xs) + 1) * dx, (max(ys) - min(ys) + 1) * dy + 1.2
    fig = Figure(figsize=(width * 0.75, height * 0.75))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) * dx - dx / 2, max(xs) * dx + dx / 2)
    ax.set_ylim(-(max(ys) * dy) - dy / 2 - 0.6, -(min(ys) * dy) + dy / 2 + 0.6)
    ax.axis("off")

    def centre(n):
        x, y = pos[id(n)]
        return x * dx, -y * dy

    for n in nodes:
        cx, cy = centre(n)
        summed = fan[id(n)] > 1
        box = FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.04",
                             facecolor="#f4f7fb" if n.op else "#e8f3e8",
                             edgecolor=SUM_COLOR if summed else "#555555", linewidth=2.2 if summed else 1.0)
        box.set_gid(f"node-{n.name}")
        ax.add_patch(box)
        lines = node_lines(n)
        ax.text(cx, cy + h / 2 - 0.2, lines[0], ha="center", va="center", fontsize=9, fontweight="bold",
                family="monospace", gid=f"name-{n.name}")
        ax.text(cx - w / 2 + 0.1, cy - 0.12, "\n".join(lines[1:]), ha="left", va="center", fontsize=7.5,
                family="monospace", linespacing=1.3)
        if summed:
            ax.text(cx + w / 2 - 0.1, cy + h / 2 - 0.2, f"sum of {fan[id(n)]}", ha="right", va="center",
                    fontsize=8, color=SUM_COLOR, fontweight="bold")
    for p, c in edges:
        (px, py), (qx, qy) = centre(p), centre(c)
        start, end = _border(px, py, qx, qy, w, h), _border(qx, qy, px, py, w, h)
        off = _normal(start, end, 0.12)
        fwd = FancyArrowPatch((start[0] + off[0], start[1] + off[1]), (end[0] + off[0], end[1] + off[1]),
                              arrowstyle="-|>", mutation_scale=11, color=FORWARD_COLOR, lw=1.1)
        fwd.set_gid(f"forward-{p.name}-{c.name}")
        ax.add_patch(fwd)
        bwd = FancyArrowPatch((end[0] - off[0], end[1] - off[1]), (start[0] - off[0], start[1] - off[1]),
                              arrowstyle="-|>", mutation_scale=11, color=BACKWARD_COLOR, lw=1.1, linestyle="--")
        bwd.set_gid(f"backward-{c.name}-{p.name}")
        ax.add_patch(bwd)
    legend = "black: forward values   red dashed: backward gradients   orange border, 'sum of k': gradients from k branches added up"
    ax.text(min(xs) * dx - dx / 2 + 0.1, -(max(ys) * dy) - dy / 2 - 0.35, legend, fontsize=7, va="center")
    if title:
        ax.text(min(xs) * dx - dx / 2 + 0.1, -(min(ys) * dy) + dy / 2 + 0.3, title, fontsize=10,
                fontweight="bold", va="center")
    return fig


def _save(fig, target, fmt: str) -> None:
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "normgrad"}):
        fig.savefig(target, format=fmt, dpi=110)


def render(root: Node, path, title: str | None = None) -> Path:
    """Draw the graph of ``root`` to ``path`` (.svg or .png), written atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        raise ValueError(f"render writes .svg or .png, got {path.name!r}")
    fig = figure(root, title)
    return atomic_write(path, lambda tmp: _save(fig, tmp, path.suffix[1:].lower()))


def to_svg(root: Node, title: str | None = None) -> str:
    """The graph of ``root`` as SVG text (what a notebook shows for a Tensor)."""
    import io

    buffer = io.StringIO()
    _save(figure(root, title), buffer, "svg")
    return buffer.getvalue()


def _border(x0, y0, x1, y1, w, h) -> tuple[float, float]:
    """Where the segment from box centre (x0, y0) towards (x1, y1) leaves the w x h box."""
    ddx, ddy = x1 - x0, y1 - y0
    scale = min(w / 2 / abs(ddx) if ddx else np.inf, h / 2 / abs(ddy) if ddy else np.inf)
    return x0 + ddx * scale, y0 + ddy * scale


def _normal(a, b, size) -> tuple[float, float]:
    """A vector of length ``size`` perpendicular to a->b (to its left)."""
    vx, vy = b[0] - a[0], b[1] - a[1]
    norm = float(np.hypot(vx, vy)) or 1.0
    return -vy / norm * size, vx / norm * size


def backward_steps(root: Node) -> list[str]:
    """The backward pass as text, gate by gate in backward order.

    For each gate: its forward rule, then for each input the local-gradient rule;
    once an input has received its last contribution, its complete gradient.
    """
    nodes, edges = trace(root)
    fan = consumers(nodes, edges)
    seen: dict[int, int] = {}
    lines = []
    step = 0
    for n in reversed(nodes):
        if not n.op:
            continue
        step += 1
        lines.append(f"[{step}] {n.name} = {op_label(n)}   shape {n.shape}")
        names = {"out": n.name, "a": n.parents[0].name, "b": n.parents[-1].name}
        for p, rule in zip(n.parents, n.rules):
            if p.const:
                continue
            broadcast = f"   (summed back to {p.shape})" if p.shape != n.shape and "back to" not in rule else ""
            lines.append(f"      {rule.format(**names)}{broadcast}")
            seen[id(p)] = seen.get(id(p), 0) + 1
            if seen[id(p)] == fan[id(p)]:
                total = f" (sum of {fan[id(p)]} branches)" if fan[id(p)] > 1 else ""
                lines.append(f"      => d{p.name}{total} = {summary(None if p.grad is None else p.grad.data)}")
    return lines
