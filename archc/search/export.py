"""Outputs of a search: trials table, Pareto front (table and plot) and compile-ready specs.

An exported spec is the base spec with its params fixed to a trial's values and every imported block
inlined, so ``archc compile`` takes it directly from anywhere (it imports nothing) and it has no
variants or choices left.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from archc.compiler import write_atomic
from archc.spec.document import SpecDoc, resolve_params
from archc.spec.loader import load_yaml

__all__ = ["export_spec", "spec_text", "trials_table", "write_csv", "pareto_trials", "write_plot", "svg_scatter",
           "overrides_to_json", "overrides_from_json"]


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def overrides_to_json(overrides: Mapping[tuple[str | int, ...], Any]) -> list[list[Any]]:
    """Param overrides (path → value) as JSON-friendly ``[["dims", 2], value]`` pairs."""
    return [[list(path), _plain(value)] for path, value in overrides.items()]


def overrides_from_json(items: Sequence[Sequence[Any]]) -> dict[tuple[str | int, ...], Any]:
    return {tuple(path): value for path, value in items}


def spec_text(doc: SpecDoc, variant: str | None, overrides: Mapping[tuple[str | int, ...], Any], header: Sequence[str] = (),
              doc_suffix: str = "") -> str:
    """The YAML text of ``doc`` with ``overrides`` fixed into its params and imported blocks inlined."""
    raw = _plain(doc.raw)
    params: dict[str, Any] = dict(raw.get("params") or {})
    if variant is None:
        variant = doc.default_variant or (next(iter(doc.variants)) if doc.variants else None)
    if variant is not None:
        params.update(_plain(doc.variants.get(variant) or {}))
    env: dict[str, Any] = {}
    if any(len(p) > 1 for p in overrides):
        _, env = resolve_params(doc, variant, dict(overrides))
    for path, value in overrides.items():
        params[str(path[0])] = _plain(value) if len(path) == 1 else _plain(env[path[0]])
    blocks: dict[str, Any] = {}
    libs: dict[str, Any] = {}
    own = raw.get("blocks") or {}
    for name, bd in doc.blocks.items():
        if name in own:
            blocks[name] = own[name]
            continue
        src = bd.loc.path
        if src not in libs:
            libs[src] = _plain(load_yaml(src))
        blocks[name] = libs[src]["blocks"][name]
    out: dict[str, Any] = {}
    for key in ("archc", "name", "doc"):
        if key in raw:
            out[key] = raw[key]
    if doc_suffix:
        out["doc"] = (str(out.get("doc") or "").rstrip() + " " + doc_suffix).strip()
    out["params"] = params
    for key, value in raw.items():
        if key in out or key in ("imports", "variants", "default_variant", "params", "blocks"):
            continue
        if key == "graph" and blocks:
            out["blocks"] = blocks
        out[key] = value
    if blocks and "blocks" not in out:
        out["blocks"] = blocks
    body = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    return "".join(f"# {h}\n" for h in header) + body


def export_spec(doc: SpecDoc, variant: str | None, overrides: Mapping[tuple[str | int, ...], Any], path: Path,
                header: Sequence[str] = (), doc_suffix: str = "") -> Path:
    """Write :func:`spec_text` to ``path`` atomically; returns ``path``."""
    write_atomic(path, spec_text(doc, variant, overrides, header, doc_suffix))
    return path


# -------------------------------------------------------------------------------------------------------
# tables
# -------------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return "" if v is None else v


def trials_table(trials: Sequence[Any], metric_names: Sequence[str], param_names: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Rows of every trial: number, state, status, objective values, metrics, params, reasons."""
    metrics: list[str] = []
    for t in trials:
        for k in (t.user_attrs.get("metrics") or {}):
            if k not in metrics and k not in metric_names:
                metrics.append(k)
    header = ["number", "state", "status", *metric_names, *metrics, "duration_s", "duplicate_of", "arch", "reason",
              *[f"p.{p}" for p in param_names]]
    rows = []
    for t in trials:
        m = t.user_attrs.get("metrics") or {}
        vals = list(t.values) if t.values is not None else [m.get(k) for k in metric_names]
        dur = t.duration.total_seconds() if t.duration is not None else None
        rows.append([t.number, t.state.name, t.user_attrs.get("status", ""), *vals, *[m.get(k) for k in metrics], dur,
                     t.user_attrs.get("duplicate_of"), t.user_attrs.get("arch", ""), t.user_attrs.get("reason", ""),
                     *[t.params.get(p) for p in param_names]])
    return header, rows


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_fmt(v) for v in r])
    write_atomic(path, buf.getvalue())
    return path


def pareto_trials(study: Any) -> list[Any]:
    """Pareto-optimal complete trials (one per architecture); the single best for one objective."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    front = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    seen: set[str] = set()
    out = []
    for t in sorted(front, key=lambda t: t.number):
        arch = t.user_attrs.get("arch") or str(t.number)
        if arch in seen:
            continue
        seen.add(arch)
        out.append(t)
    return out


# -------------------------------------------------------------------------------------------------------
# plot
# -------------------------------------------------------------------------------------------------------
def write_plot(path_stem: Path, points: Sequence[tuple[float, float, int]], front: Sequence[tuple[float, float, int]],
               xlabel: str, ylabel: str, title: str) -> Path:
    """A scatter of every trial with the front highlighted: PNG with matplotlib, else a hand-written SVG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out = path_stem.with_suffix(".svg")
        write_atomic(out, svg_scatter(points, front, xlabel, ylabel, title))
        return out
    out = path_stem.with_suffix(".png")
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, c="#9aa5b1", label="trials")
    fs = sorted(front)
    ax.plot([p[0] for p in fs], [p[1] for p in fs], "-o", c="#d9480f", ms=5, label="Pareto front")
    for x, y, n in fs:
        ax.annotate(f"#{n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(out, buf.getvalue())
    return out


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + 1e-12 * abs(hi) and len(out) < 20:
        out.append(v)
        v += step
    return out


def svg_scatter(points: Sequence[tuple[float, float, int]], front: Sequence[tuple[float, float, int]], xlabel: str,
                ylabel: str, title: str, width: int = 640, height: int = 480) -> str:
    """A self-contained SVG scatter plot (no plotting library needed)."""
    ml, mr, mt, mb = 70, 20, 40, 55
    pts = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    xs = [p[0] for p in pts] or [0.0, 1.0]
    ys = [p[1] for p in pts] or [0.0, 1.0]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5 * (abs(x0) or 1), x1 + 0.5 * (abs(x1) or 1)
    if y1 == y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    px, py = (x1 - x0) * 0.05, (y1 - y0) * 0.05
    x0, x1, y0, y1 = x0 - px, x1 + px, y0 - py, y1 + py
    W, H = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * W

    def sy(y: float) -> float:
        return mt + H - (y - y0) / (y1 - y0) * H

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
         'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{_esc(title)}</text>',
         f'<rect x="{ml}" y="{mt}" width="{W}" height="{H}" fill="none" stroke="#333"/>']
    for t in _ticks(x0, x1):
        o.append(f'<line x1="{sx(t):.1f}" y1="{mt}" x2="{sx(t):.1f}" y2="{mt + H}" stroke="#eee"/>')
        o.append(f'<text x="{sx(t):.1f}" y="{mt + H + 16}" text-anchor="middle">{t:.4g}</text>')
    for t in _ticks(y0, y1):
        o.append(f'<line x1="{ml}" y1="{sy(t):.1f}" x2="{ml + W}" y2="{sy(t):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    o.append(f'<text x="{ml + W / 2}" y="{height - 14}" text-anchor="middle">{_esc(xlabel)}</text>')
    o.append(f'<text transform="translate(16,{mt + H / 2}) rotate(-90)" text-anchor="middle">{_esc(ylabel)}</text>')
    for x, y, n in pts:
        o.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#9aa5b1"><title>trial {n}: {x:.5g}, {y:.5g}</title></circle>')
    fs = sorted(p for p in front if math.isfinite(p[0]) and math.isfinite(p[1]))
    if len(fs) > 1:
        o.append('<polyline fill="none" stroke="#d9480f" stroke-width="1.5" points="'
                 + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in fs) + '"/>')
    for x, y, n in fs:
        o.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4.5" fill="#d9480f"><title>trial {n}: {x:.5g}, {y:.5g}</title></circle>')
        o.append(f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" fill="#d9480f">#{n}</text>')
    lx = ml + W - 130
    o.append(f'<circle cx="{lx}" cy="{mt + 14}" r="3" fill="#9aa5b1"/><text x="{lx + 8}" y="{mt + 18}">trials</text>')
    o.append(f'<circle cx="{lx}" cy="{mt + 30}" r="4.5" fill="#d9480f"/><text x="{lx + 8}" y="{mt + 34}">Pareto front</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"
