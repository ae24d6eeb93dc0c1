"""What a pass pipeline did to each node: traced pass by pass, by node path and node identity.

The pass manager (:func:`archc.passes.pipeline.run_pipeline`) keeps per-pass rewrite counts, not
which node each rewrite touched. To colour a picture, :func:`trace_pipeline` runs the same passes
in the same order to the same fixpoint (without the float64 certification: a picture does not need
it, and ``archc compile`` certifies the same rewrites) and compares the graph before and after every
pass that rewrote something:

* a node path (``stages.1.blocks.0.bn``, the module path of generated code) that disappears, or
  whose op changes, was *removed* from the earlier graph by that pass;
* a node path that appears, or whose op changes, was *created* by it;
* a node at the same path with the same op that is a new object with new derived facts was
  *rewritten* by it (a conv that absorbed a batch norm). Passes never mutate nodes and keep the
  node object — or at least its ``meta`` — of a node whose inputs were merely redirected
  (:func:`archc.passes.base.apply_rewrite`), so object identity tells a rewrite from a rewiring.

Each pass belongs to one *kind* (:data:`PASS_KINDS`): what it does to the nodes it removes or
rewrites — removed, folded, merged, inlined or fused — which is what the picture colours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archc.ir.graph import Graph, Node

__all__ = ["KINDS", "PASS_KINDS", "Mark", "Trace", "trace_pipeline", "flatten", "pass_kind"]

#: the kinds of change, most telling first (a node touched by several passes shows the first of these)
KINDS = ("merged", "folded", "fused", "removed", "inlined", "rewritten")

#: what each pass of the pipelines does to the nodes it removes or rewrites
PASS_KINDS: dict[str, str] = {
    "remove_train_only": "removed",
    "dce": "removed",
    "fold_cdc": "folded",
    "fold_bn": "folded",
    "fold_scales": "folded",
    "fold_through_permute": "folded",
    "merge_branches": "merged",
    "merge_parallel_blocks": "merged",
    "cse": "merged",
    "inline_blocks": "inlined",
    "form_regions": "fused",
}


def pass_kind(name: str) -> str:
    """The kind of change pass ``name`` makes ('rewritten' for a pass without a declared kind)."""
    return PASS_KINDS.get(name, "rewritten")


@dataclass
class Mark:
    """The passes that removed (on the earlier graph) or created/rewrote (on the later graph) one node path."""

    passes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        kinds = {pass_kind(p) for p in self.passes}
        return next(k for k in KINDS if k in kinds)

    def add(self, name: str) -> None:
        if name not in self.passes:
            self.passes.append(name)


@dataclass
class Trace:
    """A pipeline run node by node: ``before`` → ``after`` with the marks of both sides."""

    before: Graph
    after: Graph
    #: node path of ``before`` → the passes that removed it (it is not in ``after``, or is another op there)
    removed: dict[str, Mark] = field(default_factory=dict)
    #: node path of ``after`` → the passes that created or rewrote it
    changed: dict[str, Mark] = field(default_factory=dict)
    #: pass name → rewrites, in the order the passes first ran
    rewrites: dict[str, int] = field(default_factory=dict)


def flatten(graph: Graph) -> dict[str, Node]:
    """Every node by its dotted path; nodes with a body are kept (their own op is 'block' or 'repeat')."""
    return dict(graph.walk())


def _same_node(a: Node, b: Node) -> bool:
    """``b`` is ``a`` or ``a`` rewired (a pass redirecting inputs keeps the node's ``meta`` object)."""
    return a is b or (a.meta is b.meta and a.op == b.op)


def trace_pipeline(graph: Graph, passes: tuple[str, ...], max_iterations: int = 4) -> Trace:
    """Run ``passes`` on ``graph`` to a fixpoint, as :func:`run_pipeline` does, recording what changed where.

    >>> from archc.compiler import build_graph
    >>> from archc.passes.pipeline import PIPELINES
    >>> t = trace_pipeline(build_graph("specs/repvgg.yaml")[1], PIPELINES["deploy"])  # doctest: +SKIP
    >>> sorted({m.kind for m in t.removed.values()})  # doctest: +SKIP
    ['folded', 'inlined', 'merged']
    """
    from archc.passes.base import PASSES
    from archc.passes.pipeline import PIPELINES  # noqa: F401 - registers every pass of the pipelines

    unknown = [p for p in passes if p not in PASSES]
    if unknown:
        from archc.diagnostics import PassError

        raise PassError(f"unknown pass '{unknown[0]}'", hint=f"passes: {', '.join(sorted(PASSES))}")
    first = flatten(graph)
    trace = Trace(graph, graph)
    cur, cur_nodes = graph, first
    for _ in range(max_iterations):  # the same fixpoint loop as run_pipeline: one fold can enable another
        changed = False
        for name in passes:
            res = PASSES[name].run(cur)
            trace.rewrites.setdefault(name, 0)
            if res.rewrites == 0:
                continue
            changed = True
            trace.rewrites[name] += res.rewrites
            new_nodes = flatten(res.graph)
            for path, node in cur_nodes.items():
                other = new_nodes.get(path)
                if (other is None or other.op != node.op) and path in first and (
                        first[path].op == node.op or path in trace.removed):  # an original, or what it became
                    trace.removed.setdefault(path, Mark()).add(name)
            for path, node in new_nodes.items():
                old = cur_nodes.get(path)
                if node.body is not None and old is not None and old.op == node.op:
                    continue  # a block whose body changed: the nodes inside carry the marks
                if old is None or not _same_node(old, node):
                    trace.changed.setdefault(path, Mark()).add(name)
            cur, cur_nodes = res.graph, new_nodes
        if not changed:
            break
    trace.after = cur
    # a path removed and later created again with its first op (rare) is not removed in the end
    trace.removed = {p: m for p, m in trace.removed.items() if p not in cur_nodes or cur_nodes[p].op != first[p].op}
    trace.changed = {p: m for p, m in trace.changed.items() if p in cur_nodes}
    return trace
