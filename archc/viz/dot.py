"""Graph IR → graphviz ``Digraph``: blocks as clusters down to a depth, every node with op, shape and cost.

Each drawn node is one dot node named by its dotted path (``stages.1.blocks.0.conv``, the module
path of generated code), so a picture, ``archc show`` and a state dict name things alike. A block
or repeat above ``depth`` is a cluster holding its body; at ``depth`` it is one node carrying the
totals of its body. Edges follow the values: a block's body inputs are bound, in order, to the
block's inputs (as :mod:`archc.backends.pytorch.codegen` binds them), and a block's outputs are its
body's outputs, so an edge into a cluster ends at the node inside that reads the value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from archc.cost.model import Cost, node_cost
from archc.ir.graph import Graph, Node
from archc.viz.trace import KINDS

if TYPE_CHECKING:
    import graphviz

    from archc.viz.trace import Mark

__all__ = ["DrawOptions", "draw", "add_graph", "compact", "KIND_COLOURS"]

#: fill colours of op families (the op's module in archc.ops); others are white
_FAMILY_COLOURS = {
    "conv": "#dae8fc", "linear": "#dae8fc", "dynamic": "#dae8fc", "ska": "#dae8fc",
    "norm": "#fff2cc", "activation": "#d5e8d4", "pool": "#e1d5e7", "resize": "#e1d5e7",
    "attention": "#fde9d9", "levit_bias": "#fde9d9",
}

#: (fill, border) of each kind of change in a diff picture (archc.viz.trace.KINDS)
KIND_COLOURS: dict[str, tuple[str, str]] = {
    "removed": ("#f4cccc", "#cc0000"),
    "folded": ("#fce5cd", "#e69138"),
    "merged": ("#cfe2f3", "#3d85c6"),
    "fused": ("#d9d2e9", "#674ea7"),
    "inlined": ("#eeeeee", "#999999"),
    "rewritten": ("#d9ead3", "#6aa84f"),
}


def compact(n: int) -> str:
    """``1234567`` → ``1.23M``: three significant digits and an SI suffix (k, M, G, T)."""
    if n < 1000:
        return str(n)
    for div, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.3g}{suffix}" if v < 1000 else f"{v:.0f}{suffix}"
    return str(n)  # pragma: no cover


@dataclass
class DrawOptions:
    """How one graph is drawn: ``depth`` levels of blocks opened as clusters, marks of a diff."""

    depth: int = 1
    #: dot name prefix (two graphs in one picture need distinct names)
    prefix: str = ""
    #: node path → the passes that changed it (a diff); empty for a plain picture
    marks: Mapping[str, Mark] = field(default_factory=dict)
    #: colour nodes by op family (off in a diff, where colour means change)
    family_colours: bool = True


def _op_label(n: Node) -> str:
    if n.is_repeat:
        first = n.body.nodes.get("0") if n.body is not None else None
        inner = "?" if first is None else (first.block or first.op) if first.is_block else first.op
        return f"{inner} ×{n.attrs.get('count', len(n.body) if n.body is not None else 0)}"
    if n.is_block:
        return n.block or "block"
    return n.op


def _cost_line(c: Cost) -> str:
    parts = []
    if c.params:
        parts.append(f"{compact(c.params)} params")
    if c.macs:
        parts.append(f"{compact(c.macs)} MACs")
    return " · ".join(parts)


def _family(op: str) -> str | None:
    from archc.ops import REGISTRY

    opdef = REGISTRY.get(op)
    return type(opdef).__module__.rsplit(".", 1)[-1] if opdef is not None else None


class _Drawer:
    def __init__(self, opts: DrawOptions) -> None:
        self.opts = opts
        self.memo: dict[int, Cost] = {}
        self.drawn: list[str] = []
        #: edges are added at the root at the end: an edge stated inside a cluster would pull its tail node into it
        self.edges: list[tuple[str, str]] = []
        #: block path → kinds of the marked nodes strictly inside it (what a collapsed block hides), one pass over the marks
        self.inside: dict[str, Counter[str]] = {}
        for p, m in opts.marks.items():
            parts = p.split(".")
            for k in range(1, len(parts)):
                self.inside.setdefault(".".join(parts[:k]), Counter())[m.kind] += 1

    def name(self, path: str) -> str:
        return self.opts.prefix + path

    def node(self, dot: graphviz.Digraph, path: str, n: Node) -> None:
        lines = [n.id, _op_label(n)]
        lines.append(", ".join(str(t) for t in n.types))
        cost = _cost_line(node_cost(n, self.memo))
        if cost:
            lines.append(cost)
        attrs = {"shape": "box", "style": "rounded,filled", "fillcolor": "white", "tooltip": path}
        if n.body is not None:
            attrs["style"] = "filled"  # a collapsed block: square corners tell it from an op
            attrs["peripheries"] = "2"
        elif self.opts.family_colours:
            attrs["fillcolor"] = _FAMILY_COLOURS.get(_family(n.op) or "", "white")
        mark = self.opts.marks.get(path)
        inside = self.inside.get(path, Counter()) if n.body is not None else Counter()
        if mark is not None:
            fill, border = KIND_COLOURS[mark.kind]
            attrs.update(fillcolor=fill, color=border, penwidth="2")
            lines.append(f"{mark.kind} by {', '.join(mark.passes)}")
            attrs["tooltip"] = f"{path}: {lines[-1]}"
        if inside:
            lines.append("inside: " + ", ".join(f"{inside[k]} {k}" for k in KINDS if k in inside))
            if mark is None:
                top = next(k for k in KINDS if k in inside)  # the most telling kind inside, not the most numerous
                attrs.update(color=KIND_COLOURS[top][1], penwidth="2", style="filled,dashed")
        dot.node(self.name(path), "\n".join(lines), **attrs)
        self.drawn.append(path)

    def graph(self, dot: graphviz.Digraph, g: Graph, prefix: str, sources: dict[str, str], level: int) -> dict[tuple[str, int], str]:
        """Draw ``g``'s nodes into ``dot``; returns (node id, output index) → dot name of the value's producer."""
        outs: dict[tuple[str, int], str] = {}

        def source(ref_node: str, index: int) -> str | None:
            if ref_node in g.inputs:
                return sources.get(ref_node)
            return outs.get((ref_node, index))

        for n in g:
            path = f"{prefix}{n.id}"
            srcs = [source(r.node, r.index) for r in n.inputs]
            if n.body is not None and level < self.opts.depth and len(n.body) > 0:
                mark = self.opts.marks.get(path)
                label = f"{n.id}: {_op_label(n)}" + (f"\n{mark.kind} by {', '.join(mark.passes)}" if mark else "")
                cluster_attrs = {"label": label, "style": "rounded", "color": "#888888", "labeljust": "l"}
                if mark is not None:
                    cluster_attrs.update(color=KIND_COLOURS[mark.kind][1], style="rounded,dashed", penwidth="2")
                with dot.subgraph(name=f"cluster_{self.name(path)}") as sub:
                    sub.attr(**cluster_attrs)
                    inner_sources = {name: s for name, s in zip(n.body.inputs, srcs) if s is not None}
                    inner = self.graph(sub, n.body, path + ".", inner_sources, level + 1)
                self.drawn.append(path)
                for k, r in enumerate(n.body.outputs):
                    producer = inner_sources.get(r.node) if r.node in n.body.inputs else inner.get((r.node, r.index))
                    if producer is not None:
                        outs[(n.id, k)] = producer
                continue
            self.node(dot, path, n)
            self.edges += [(s, self.name(path)) for s in srcs if s is not None]
            for k in range(max(len(n.types), 1)):
                outs[(n.id, k)] = self.name(path)
        return outs


def add_graph(dot: graphviz.Digraph, g: Graph, opts: DrawOptions, root: graphviz.Digraph | None = None) -> list[str]:
    """Draw ``g`` (inputs, nodes, outputs) into ``dot``, its edges into ``root`` (default ``dot``); returns the drawn paths."""
    d = _Drawer(opts)
    sources = {}
    for name, t in g.inputs.items():
        dot.node(d.name(f"(input {name})"), f"{name}\n{t}", shape="ellipse", style="filled", fillcolor="#f3f3f3")
        sources[name] = d.name(f"(input {name})")
    outs = d.graph(dot, g, "", sources, 0)
    for k, r in enumerate(g.outputs):
        producer = sources.get(r.node) if r.node in g.inputs else outs.get((r.node, r.index))
        out_name = d.name(f"(output {k})")
        dot.node(out_name, f"output {k}\n{g.type_of(r)}", shape="ellipse", style="filled", fillcolor="#f3f3f3")
        if producer is not None:
            d.edges.append((producer, out_name))
    target = root if root is not None else dot
    for tail, head in d.edges:
        target.edge(tail, head)
    return d.drawn


def draw(g: Graph, title: str, opts: DrawOptions | None = None) -> tuple[graphviz.Digraph, list[str]]:
    """A ``graphviz.Digraph`` of ``g`` with ``title`` on top (``opts``: depth, marks), and the node paths drawn.

    >>> from archc.compiler import build_graph
    >>> dot, drawn = draw(build_graph("specs/resnet.yaml")[1], "resnet", DrawOptions(depth=0))  # doctest: +SKIP
    >>> drawn  # doctest: +SKIP
    ['stem', 'maxpool', 'layers', 'avgpool', 'fc']
    """
    import graphviz

    dot = graphviz.Digraph(name=g.name)
    graph_attrs(dot, title)
    drawn = add_graph(dot, g, opts or DrawOptions())
    return dot, drawn


def graph_attrs(dot: graphviz.Digraph, title: str) -> None:
    """Common look: top-down, titled, readable fonts."""
    dot.attr("graph", label=title, labelloc="t", fontsize="18", fontname="Helvetica", rankdir="TB", nodesep="0.25",
             ranksep="0.3")
    dot.attr("node", fontname="Helvetica", fontsize="10")
    dot.attr("edge", color="#555555", arrowsize="0.6")
