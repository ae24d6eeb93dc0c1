"""α/β over the epochs of a differentiable search, as a self-contained SVG (no plotting library needed).

One row of panels per cell: left, the mean softmax(α) weight of each op over the cell's edges; right,
the node attention softmax(β) of each intermediate node. A line per op / node, one point per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["svg_alpha"]

_COLORS = ("#1c7ed6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d", "#495057", "#364fc7")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _panel(o: list[str], x0: float, y0: float, w: float, h: float, series: dict[str, list[float]], title: str) -> None:
    o.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{x0 + w / 2}" y="{y0 - 6}" text-anchor="middle">{_esc(title)}</text>')
    vals = [v for s in series.values() for v in s] or [0.0, 1.0]
    # the weights stay close to uniform for many epochs: the axis spans the data, not [0, 1]
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.08, 1e-4)
    lo, hi = max(lo - pad, 0.0), hi + pad
    for t in (lo, (lo + hi) / 2, hi):
        yy = y0 + h - (t - lo) / (hi - lo) * h
        o.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x0 + w}" y2="{yy:.1f}" stroke="#eee"/>')
        o.append(f'<text x="{x0 - 4}" y="{yy + 4:.1f}" text-anchor="end">{t:.3f}</text>')
    n = max((len(s) for s in series.values()), default=1)
    for k, (name, s) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        pts = [(x0 + (i / max(n - 1, 1)) * w, y0 + h - (v - lo) / (hi - lo) * h) for i, v in enumerate(s)]
        if len(pts) > 1:
            o.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="'
                     + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + f'"><title>{_esc(name)}</title></polyline>')
        for px, py in pts[-1:]:
            o.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>')
        o.append(f'<rect x="{x0 + w + 8}" y="{y0 + 4 + 13 * k}" width="9" height="9" fill="{color}"/>'
                 f'<text x="{x0 + w + 21}" y="{y0 + 12 + 13 * k}">{_esc(name)}</text>')
    o.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 16}" text-anchor="middle">epoch 1 … {n}</text>')


def svg_alpha(supernet: Any, history: Sequence[Any], title: str) -> str:
    """The SVG of the α/β history (``history``: records with an ``alpha`` table, see :mod:`.bilevel`)."""
    cells = [a.cell for a in supernet.anatomies]
    pw, ph, gap = 300, 150, 60
    width = 2 * (pw + 170) + 60
    height = 50 + len(cells) * (ph + gap)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
         'font-family="sans-serif" font-size="10">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{_esc(title)}</text>']
    for r, cell in enumerate(cells):
        ops: dict[str, list[float]] = {op: [] for op in cell.ops}
        nodes: dict[str, list[float]] = {f"n{j}": [] for j in range(1, cell.nodes + 1)}
        for rec in history:
            rows = [x for x in rec.alpha if x["cell"] == cell.name]
            edges = [x for x in rows if x["edge"] != "beta"]
            for op in cell.ops:
                ops[op].append(sum(x[op] for x in edges) / max(len(edges), 1))
            beta = next((x for x in rows if x["edge"] == "beta"), {})
            for k in nodes:
                nodes[k].append(float(beta.get(k, 0.0)))
        y0 = 50 + r * (ph + gap)
        _panel(o, 50, y0, pw, ph, ops, f"{cell.name}: mean softmax(α) per op")
        _panel(o, 50 + pw + 170 + 20, y0, pw, ph, nodes, f"{cell.name}: node attention softmax(β)")
    o.append("</svg>")
    return "\n".join(o) + "\n"
