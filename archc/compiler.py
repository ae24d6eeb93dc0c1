"""The compile driver: load → expand → (passes) → lower → write, with an explicit options object."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.cost.model import Cost, graph_cost
from archc.diagnostics import ArchcError
from archc.ir.graph import Graph
from archc.spec.document import SpecDoc, load_spec_doc, resolve_params
from archc.spec.expand import expand

__all__ = ["CompileOptions", "CompileResult", "compile_spec", "build_graph", "write_atomic", "default_spec"]


@dataclass(frozen=True)
class CompileOptions:
    """Everything a compile depends on; passed explicitly (no global configuration)."""

    variant: str | None = None
    params: Sequence[str] | Mapping[str, Any] = ()
    target: str = "pytorch"
    pipeline: str = "train"


@dataclass
class CompileResult:
    """A compiled spec: the graph, its cost and the generated artifact text."""

    graph: Graph
    cost: Cost
    source: str
    doc: SpecDoc
    files: list[Path] = field(default_factory=list)


def default_spec() -> Path:
    """The spec compiled when none is named: TransXNet shipped inside the package."""
    here = Path(__file__).resolve().parent
    for cand in (here / "specs" / "transxnet.yaml", here.parent / "specs" / "transxnet.yaml"):
        if cand.exists():
            return cand
    raise ArchcError("no default spec is installed", hint="name a spec file: archc compile SPEC")


def build_graph(path: str | Path, options: CompileOptions = CompileOptions(), text: str | None = None) -> tuple[SpecDoc, Graph]:
    """Load and expand a spec under ``options``."""
    doc = load_spec_doc(path, text)
    variant, env = resolve_params(doc, options.variant, options.params)
    graph = expand(doc, env, variant)
    try:
        rel = Path(doc.path).resolve().relative_to(doc.root.resolve())
        graph.meta["spec_label"] = rel.as_posix()
    except ValueError:
        graph.meta["spec_label"] = Path(doc.path).name
    return doc, graph


def block_info(doc: SpecDoc) -> dict[str, dict[str, Any]]:
    """Declared param types and docs of every block (for generated signatures and docstrings)."""
    return {name: {"params": {p: d.type for p, d in bd.params.items()}, "doc": bd.doc} for name, bd in doc.blocks.items()}


def compile_spec(path: str | Path, options: CompileOptions = CompileOptions(), text: str | None = None) -> CompileResult:
    """Compile a spec to PyTorch source (not written; see :func:`write_atomic`).

    >>> res = compile_spec("specs/transxnet.yaml")  # doctest: +SKIP
    >>> res.cost.params  # doctest: +SKIP
    12834808
    """
    from archc.backends.pytorch.codegen import generate

    doc, graph = build_graph(path, options, text)
    cost = graph_cost(graph)
    title = doc.name + (f"-{graph.meta['variant']}" if graph.meta.get("variant") else "")
    graph.meta["title"] = title
    source = generate(graph, graph.meta["spec_label"], doc.name, block_info(doc))
    return CompileResult(graph, cost, source, doc)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` via a temporary file and rename, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
