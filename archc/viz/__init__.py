"""Pictures of compiled graphs: ``archc viz SPEC -o model.svg`` and ``archc viz SPEC --diff train deploy``.

A picture is drawn from the typed graph IR with Graphviz (:mod:`archc.viz.dot`): blocks are
clusters down to ``depth`` levels (``depth=0``: the top-level nodes only, each block one node), and
every node shows its op, output type, parameters and MACs. A diff draws the graphs of two pipelines
side by side and colours what the passes between them removed, folded, merged, inlined or fused,
traced pass by pass from the pass registry (:mod:`archc.viz.trace`).

The passes run without their float64 certification: a picture shows the rewrites, ``archc compile``
certifies them. Output formats follow the suffix: ``.svg`` and ``.png`` need Graphviz's ``dot``
program, ``.dot`` (the graph source) needs nothing but the ``graphviz`` Python package.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from archc.compiler import CompileOptions, build_graph, write_atomic
from archc.diagnostics import ArchcError
from archc.ir.graph import Graph
from archc.viz.render import FORMATS, VizError, output_format, render_bytes, require_graphviz

__all__ = ["VizResult", "viz_spec", "diff_picture", "graph_picture", "FORMATS", "VizError"]


@dataclass
class VizResult:
    """A written picture: where, its format, the node paths drawn (a plain picture) and a diff's marks by kind."""

    path: Path
    format: str
    drawn: list[str] = field(default_factory=list)
    #: a diff: marked nodes of the first pipeline's graph by kind (what disappeared, and how)
    before: Counter[str] = field(default_factory=Counter)
    #: a diff: marked nodes of the second pipeline's graph by kind (what was created or rewritten)
    after: Counter[str] = field(default_factory=Counter)
    #: pass name → rewrites (a diff)
    rewrites: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> Counter[str]:
        """Marked nodes of both sides by kind."""
        return self.before + self.after


def _pipeline(graph: Graph, name: str) -> Graph:
    if name == "train":  # the graph as written (and no torch import for the pass manager)
        return graph
    from archc.passes.pipeline import PIPELINES, run_pipeline

    if name not in PIPELINES:
        from archc.diagnostics import suggest

        raise VizError(f"unknown pipeline '{name}'", hint=suggest(name, PIPELINES) or f"pipelines: {', '.join(PIPELINES)}")
    return run_pipeline(graph, name, check=False).graph if PIPELINES[name] else graph


def graph_picture(graph: Graph, title: str, depth: int = 1):  # noqa: ANN201 - graphviz.Digraph (optional package)
    """``(digraph, drawn node paths)`` of ``graph``, blocks opened ``depth`` levels deep."""
    from archc.viz.dot import DrawOptions, draw

    return draw(graph, title, DrawOptions(depth=depth))


def diff_picture(graph: Graph, before: str, after: str, title: str, depth: int = 1):  # noqa: ANN201
    """Pipelines ``before`` and ``after`` of ``graph`` side by side, with what the passes between them changed coloured.

    ``before``'s passes must be a prefix of ``after``'s (train → deploy → fused). Returns
    ``(digraph, trace)``: the trace holds the marks of both sides (:class:`archc.viz.trace.Trace`).
    """
    import graphviz

    from archc.passes.pipeline import PIPELINES
    from archc.viz.dot import DrawOptions, add_graph, graph_attrs
    from archc.viz.legend import legend
    from archc.viz.trace import trace_pipeline

    for name in (before, after):
        if name not in PIPELINES:
            from archc.diagnostics import suggest

            raise VizError(f"unknown pipeline '{name}' in --diff", hint=suggest(name, PIPELINES) or f"pipelines: {', '.join(PIPELINES)}")
    first, second = PIPELINES[before], PIPELINES[after]
    if before == after or second[:len(first)] != first:
        order = " → ".join(PIPELINES)
        raise VizError(f"--diff {before} {after}: the second pipeline must run the first one's passes and more",
                       hint=f"pipelines extend each other in this order: {order} (e.g. --diff train deploy)")
    start = _pipeline(graph, before)
    trace = trace_pipeline(start, second)
    dot = graphviz.Digraph(name=graph.name)
    graph_attrs(dot, title)
    for side, g, marks in (("A", trace.before, trace.removed), ("B", trace.after, trace.changed)):
        label = before if side == "A" else after
        with dot.subgraph(name=f"cluster_{side}") as sub:
            sub.attr(label=f"{label} ({sum(1 for _ in g.walk())} nodes)", fontsize="16", style="rounded", color="#444444")
            add_graph(sub, g, DrawOptions(depth=depth, prefix=f"{side}/", marks=marks, family_colours=False), root=dot)
    legend(dot, trace)
    return dot, trace


def viz_spec(spec: str | Path, out: str | Path | None = None, options: CompileOptions | None = None, depth: int = 1,
             diff: tuple[str, str] | None = None) -> VizResult:
    """Draw the graph of ``spec`` (after ``options.pipeline``), or a ``diff`` of two pipelines, to ``out``.

    The format follows the suffix of ``out`` (.svg, .png, .dot); the file is written atomically and
    never over the spec or a file it imports.

    >>> r = viz_spec("specs/repvgg.yaml", "repvgg.svg", CompileOptions(variant="a0"), diff=("train", "deploy"))  # doctest: +SKIP
    >>> r.counts["merged"] > 0  # doctest: +SKIP
    True
    """
    from archc._fs import check_distinct

    options = options or CompileOptions()
    if diff is not None and options.pipeline != "train":
        raise VizError(f"a diff draws its own two pipelines; options.pipeline '{options.pipeline}' does not apply",
                       hint="give either --pipeline P or --diff A B")
    if depth < 0:
        raise VizError(f"--depth must be 0 or more, got {depth}", hint="0 draws the top-level nodes only; 1 opens their blocks")
    progress = options.progress
    doc, graph = build_graph(spec, options)
    variant = graph.meta.get("variant")
    stem = f"{doc.name}{'_' + variant if variant else ''}" + (f"_{diff[0]}-{diff[1]}" if diff else
                                                               f"_{options.pipeline}" if options.pipeline != "train" else "")
    if out is None:
        from archc._fs import safe_stem

        out = safe_stem(stem) + ".svg"
    path = Path(out)
    fmt = output_format(path)
    require_graphviz(fmt)
    if path.is_dir():
        raise ArchcError(f"cannot write the picture: '{path}' is a directory", hint="give a file name, e.g. -o model.svg")
    check_distinct([path], [*doc.sources, doc.path])
    name = f"{doc.name}" + (f" ({variant})" if variant else "")
    progress.begin("passes")
    if diff is not None:
        dot, trace = diff_picture(graph, diff[0], diff[1], f"{name}: {diff[0]} → {diff[1]}", depth)
        drawn, rewrites = [], {k: v for k, v in trace.rewrites.items() if v}
        before = Counter(m.kind for m in trace.removed.values())
        after = Counter(m.kind for m in trace.changed.values())
    else:
        g = _pipeline(graph, options.pipeline)
        progress.begin("draw")
        dot, drawn = graph_picture(g, name + (f" ({options.pipeline})" if options.pipeline != "train" else ""), depth)
        before, after, rewrites = Counter(), Counter(), {}
    progress.begin("layout" if fmt != "dot" else "source")
    data = render_bytes(dot, fmt)
    progress.begin("write")
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ArchcError(f"cannot write the picture '{path}': {exc.strerror or exc}", hint="check the folder is writable") from None
    progress.end()
    return VizResult(path, fmt, drawn, before, after, rewrites)
