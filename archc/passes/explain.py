"""``archc explain``: for each candidate site of a pass, the rule that fired or the condition that failed."""

from __future__ import annotations

from archc.diagnostics import PassError, suggest
from archc.ir.graph import Graph
from archc.passes.base import PASSES, RulePass
from archc.passes.pipeline import PIPELINES, run_pipeline

__all__ = ["explain"]


def explain(graph: Graph, pass_name: str) -> str:
    """Run the deploy passes before ``pass_name`` (uncertified), then ``pass_name`` with explanations."""
    if pass_name not in PASSES:
        raise PassError(f"unknown pass '{pass_name}'", hint=suggest(pass_name, PASSES) or f"passes: {', '.join(sorted(PASSES))}")
    p = PASSES[pass_name]
    if not isinstance(p, RulePass):
        return f"pass '{pass_name}' has no rules to explain"
    deploy = PIPELINES["deploy"]
    before = deploy[: deploy.index(pass_name)] if pass_name in deploy else ()
    g = run_pipeline(graph, passes=before, check=False).graph if before else graph
    res = p.run(g, explain=True)
    lines = [f"pass {pass_name} ({res.rewrites} rewrites; after: {', '.join(before) or 'nothing'})"]
    seen = set()
    for e in res.explanations:
        key = (e.graph, e.node, e.rule, e.fired, e.reason)
        if key in seen:
            continue
        seen.add(key)
        verdict = "fired" if e.fired else f"refused: {e.reason}"
        lines.append(f"  {e.graph}/{e.node}: {e.rule} {verdict}")
    if len(lines) == 1:
        lines.append("  no candidate sites")
    return "\n".join(lines)
