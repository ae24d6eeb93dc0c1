"""The console table of scaled models, and the fitted activation exponent of a family."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from archc.scaling.scaler import ScaleResult

__all__ = ["format_ratio", "si", "format_results", "fit_exponent"]


def format_ratio(s: float) -> str:
    """A MAC ratio as labels and file names show it: ``2``, ``1.5``."""
    return f"{s:g}"


def si(n: float) -> str:
    """A count with a G/M/k unit and three decimals (``4.112 G``); below 1000 as it is."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f} {unit}"
    return f"{n:g}"


def format_results(results: Sequence[ScaleResult], paths: Sequence[Path | str] | None = None) -> str:
    """A table of the scaled models: MACs, params, activations, target and achieved MAC ratio, activation ratio."""
    if not results:
        return ""
    r0 = results[0]
    b = r0.base_cost
    mac_word = "flops (pycls)" if r0.convention == "pycls" else "MACs"
    lines = [f"base  {r0.spec}{f' ({r0.variant})' if r0.variant else ''}: {si(b.macs)} {mac_word}, "
             f"{si(b.params)} params, {si(b.acts)} activations",
             f"rule  {r0.rule.describe()}"]
    lines += [f"note  {n}" for n in r0.notes]
    head = ("output", "MACs", "params", "acts", "target", "achieved", "error", "step", "acts ratio", "s'", "trim")
    rows = []
    for i, r in enumerate(results):
        name = str(paths[i]) if paths else f"×{format_ratio(r.target)}"
        rows.append((name, si(r.cost.macs), si(r.cost.params), si(r.cost.acts), f"{r.target:g}×",
                     f"{r.mac_ratio:.4f}×", f"{100 * r.error:+.2f}%",
                     f"{100 * r.step:.2f}%" if math.isfinite(r.step) else "-", f"{r.act_ratio:.4f}×", f"{r.factor:.4f}",
                     ", ".join(f"{d} ×{c:.4f}" for d, c in r.trim) or "-"))
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    lines.append("  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(head)))
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    for r in results:
        if r.step > 0 and abs(r.error) > r.step and math.isfinite(r.step):
            lines.append(f"warning: ×{r.target:g} is not bracketed: the rule cannot reach it on this spec")
    lines.append("step: gap between the nearest achievable MAC ratios around the target under the rule's rounding "
                 "(|error| ≤ step/2); s': scale factor handed to the rule; trim: ≤5% correction of a dimension's factor")
    return "\n".join(lines)


def fit_exponent(mac_ratios: Iterable[float], act_ratios: Iterable[float]) -> float:
    """Least-squares slope of log(activation ratio) on log(MAC ratio), through the base (the origin)."""
    xs = [math.log(m) for m in mac_ratios]
    ys = [math.log(a) for a in act_ratios]
    den = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys)) / den if den else math.nan
