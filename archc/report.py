"""Human-readable tables: the compile summary and ``archc show``."""

from __future__ import annotations

from pathlib import Path

from archc.cost.model import Cost, graph_cost, node_cost
from archc.ir.graph import Graph, Node

__all__ = ["fmt_count", "fmt_macs", "show_table", "summary", "uncosted_text"]


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_macs(n: int) -> str:
    if n >= 10**9:
        return f"{n / 1e9:.3f} G"
    if n >= 10**6:
        return f"{n / 1e6:.2f} M"
    return f"{n:,}"


def uncosted_text(c: Cost) -> list[str]:
    """The ops left out of MACs, each with its estimated MACs where its op states a rule: ``rfft2 (≈1.23 M)``."""
    return [f"{name} (≈{fmt_macs(c.uncosted_macs[name])})" if c.uncosted_macs.get(name) else name for name in c.uncosted]


def _label(n: Node) -> str:
    if n.is_block:
        return n.block or "block"
    if n.is_repeat:
        first = n.body.nodes["0"] if n.body else None
        inner = (first.block if first is not None and first.is_block else first.op) if first is not None else "?"
        return f"{inner} ×{n.attrs['count']}"
    return n.op


def _rows(g: Graph, depth: int, indent: int, memo: dict[int, Cost]) -> list[tuple[str, str, str, Cost]]:
    rows = []
    for n in g:
        c = node_cost(n, memo)
        shape = ", ".join(str(t) for t in n.types)
        rows.append(("  " * indent + n.id, _label(n), shape, c))
        if n.body is not None and depth > 1:
            rows += _rows(n.body, depth - 1, indent + 1, memo)
    return rows


def show_table(g: Graph, depth: int = 1) -> str:
    """Per-node table of output type, params, MACs and activations, blocks expanded to ``depth``."""
    memo: dict[int, Cost] = {}
    rows = _rows(g, depth, 0, memo)
    total = graph_cost(g, memo)
    head = ("node", "op", "output", "params", "MACs", "acts")
    body = [(r[0], r[1], r[2], fmt_count(r[3].params), fmt_count(r[3].macs), fmt_count(r[3].acts)) for r in rows]
    inputs = ", ".join(f"{k}: {t}" for k, t in g.inputs.items())
    foot = ("total", "", "", fmt_count(total.params), fmt_count(total.macs), fmt_count(total.acts))
    widths = [max(len(r[i]) for r in [head, foot, *body]) for i in range(6)]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(widths[i]) if i < 3 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    title = f"{g.name}" + (f" (variant {g.meta['variant']})" if g.meta.get("variant") else "") + f"  inputs {inputs}"
    out = [title, line(head), sep, *[line(r) for r in body], sep, line(foot)]
    out.append("MACs: multiply-accumulates of conv, linear and matmul per sample; acts: conv/linear/pool outputs (pycls)")
    if total.uncosted:
        out.append("not in MACs: " + ", ".join(uncosted_text(total)))
    return "\n".join(out)


def summary(g: Graph, c: Cost, out: Path) -> str:
    """One-screen compile summary."""
    outs = ", ".join(str(t) for t in g.output_types)
    ins = ", ".join(f"{k}: {t}" for k, t in g.inputs.items())
    lines = [
        f"compiled {g.meta.get('spec_label', g.name)}" + (f" (variant {g.meta['variant']})" if g.meta.get("variant") else "") + f" → {out}",
        f"  inputs       {ins}",
        f"  outputs      {outs}",
        f"  params       {fmt_count(c.params)}",
        f"  MACs         {fmt_macs(c.macs)} ({fmt_count(c.macs)})",
        f"  activations  {fmt_count(c.acts)}",
    ]
    if c.uncosted:
        from archc.ops import REGISTRY

        for name in c.uncosted:
            est = c.uncosted_macs.get(name)
            lines.append(f"  not in MACs  {name}: {REGISTRY[name].uncounted}" + (f" (≈{fmt_macs(est)} here)" if est else ""))
    return "\n".join(lines)


def pipeline_table(pipeline: PipelineResult, before: Graph | None, after: Graph) -> str:  # noqa: F821
    """Per-pass rewrite counts and certified errors, plus the cost change."""
    lines = ["  pass                  rewrites   max rel. error (float64)"]
    for st in pipeline.steps:
        err = "—" if st.max_rel_error is None else f"{st.max_rel_error:.2e}"
        lines.append(f"  {st.name:20s} {st.rewrites:9d}   {err}")
    if before is not None:
        a, b = graph_cost(before), graph_cost(after)
        lines.append(f"  params {fmt_count(a.params)} → {fmt_count(b.params)}; MACs {fmt_macs(a.macs)} → {fmt_macs(b.macs)}")
    return "\n".join(lines)
