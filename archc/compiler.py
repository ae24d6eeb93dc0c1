"""The compile driver: load → expand → (passes) → lower → write, with an explicit options object."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.cost.model import Cost, graph_cost
from archc.diagnostics import ArchcError
from archc.ir.graph import Graph
from archc.progress import QUIET, Progress
from archc.spec.document import SpecDoc, load_spec_doc, resolve_params
from archc.spec.expand import expand

__all__ = ["CompileOptions", "CompileResult", "compile_spec", "build_graph", "write_atomic", "write_artifact",
           "default_spec", "load_checkpoint", "input_paths", "check_size"]


@dataclass(frozen=True)
class CompileOptions:
    """Everything a compile depends on; passed explicitly (no global configuration)."""

    variant: str | None = None
    params: Sequence[str] | Mapping[str, Any] = ()
    target: str = "pytorch"
    pipeline: str = "train"
    #: train-form state dict file to convert (loaded with weights_only=True)
    weights: str | None = None
    #: certify every exact pass with a float64 differential run
    check: bool = True
    #: verify the IR after every pass
    debug: bool = False
    #: the most elements (parameters + buffers, or one example input) a compile may allocate (default 2^30:
    #: 4 GiB of float32); a model above it is refused before anything is built
    max_elements: int = 2**30
    #: stage timings on stderr (archc.progress); silent by default
    progress: Progress = field(default=QUIET, compare=False, repr=False)


@dataclass
class CompileResult:
    """A compiled spec: the graph, its cost and the generated artifact text."""

    graph: Graph
    cost: Cost
    source: str
    doc: SpecDoc
    files: list[Path] = field(default_factory=list)
    train_graph: Graph | None = None
    pipeline: Any = None
    state_dict: dict[str, Any] | None = None


def default_spec() -> Path:
    """The spec compiled when none is named: TransXNet shipped inside the package."""
    here = Path(__file__).resolve().parent
    for cand in (here / "specs" / "transxnet.yaml", here.parent / "specs" / "transxnet.yaml"):
        if cand.exists():
            return cand
    raise ArchcError("no default spec is installed", hint="name a spec file: archc compile SPEC")


def build_graph(path: str | Path, options: CompileOptions = CompileOptions(), text: str | None = None) -> tuple[SpecDoc, Graph]:
    """Load and expand a spec under ``options``."""
    options.progress.begin("load")
    doc = load_spec_doc(path, text)
    options.progress.begin("expand")
    variant, env = resolve_params(doc, options.variant, options.params)
    graph = expand(doc, env, variant)
    options.progress.end()
    try:
        rel = Path(doc.path).resolve().relative_to(doc.root.resolve())
        graph.meta["spec_label"] = rel.as_posix()
    except ValueError:
        graph.meta["spec_label"] = Path(doc.path).name
    return doc, graph


def check_size(elements: int, what: str, limit: int) -> None:
    """Refuse to allocate ``what`` (``elements`` numbers) above ``limit``, with the flag that raises it."""
    if limit and elements > limit:
        raise ArchcError(f"{what} would hold {elements:,} elements, above the limit of {limit:,}",
                         hint=f"check the sizes in the spec, or raise the limit with --max-elements {elements}")


def block_info(doc: SpecDoc) -> dict[str, dict[str, Any]]:
    """Declared param types and docs of every block (for generated signatures and docstrings)."""
    return {name: {"params": {p: d.type for p, d in bd.params.items()}, "doc": bd.doc} for name, bd in doc.blocks.items()}


def load_checkpoint(path: str) -> dict[str, Any]:
    """A state dict from ``path``, loaded safely (``weights_only=True``)."""
    import torch

    from archc.diagnostics import CheckpointError

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: '{path}'") from None
    except Exception as exc:  # torch.load raises many types for a file that is not a checkpoint: all are user errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load checkpoint '{path}': {first}", hint="pass a state_dict saved with torch.save") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a state_dict")
    return dict(obj)


def compile_spec(path: str | Path, options: CompileOptions = CompileOptions(), text: str | None = None) -> CompileResult:
    """Compile a spec to PyTorch source (not written; see :func:`write_atomic`).

    With ``options.pipeline`` other than ``train`` the pass pipeline runs and is certified
    numerically; with ``options.weights`` the train-form checkpoint is checked and converted.

    >>> res = compile_spec("specs/transxnet.yaml")  # doctest: +SKIP
    >>> res.cost.params  # doctest: +SKIP
    12834808
    """
    from archc.backends.pytorch.codegen import generate

    doc, graph = build_graph(path, options, text)
    train_graph = graph
    pipeline = None
    converted = None
    if options.pipeline != "train" or options.weights:
        # the pipeline builds the module (float64 reference runs): refuse a huge one before allocating it
        check_size(_elements(graph), f"the model '{doc.name}'", options.max_elements)
        from archc.passes.equivalence import check_state_dict, module_from_graph
        from archc.passes.pipeline import run_pipeline

        state = None
        if options.weights:
            state = load_checkpoint(options.weights)
            check_state_dict(module_from_graph(graph).state_dict(), state, options.weights)
        options.progress.begin("passes")
        pipeline = run_pipeline(graph, options.pipeline, state_dict=state, check=options.check, debug=options.debug)
        graph = pipeline.graph
        if state is not None:
            # convert in float64 so the folds add no rounding beyond the final cast, back to the checkpoint's dtype
            dtype = _floating_dtype(state)
            converted = pipeline.convert({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
            converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()}
    options.progress.begin("codegen")
    cost = graph_cost(graph)
    title = doc.name + (f"-{graph.meta['variant']}" if graph.meta.get("variant") else "")
    if options.pipeline != "train":
        title += f" ({options.pipeline})"
    graph.meta["title"] = title
    info = block_info(doc)
    if pipeline is not None and any(st.rewrites for st in pipeline.steps):
        # the spec's docs describe the training form ("three parallel branches"); the passes changed that
        passes = ", ".join(st.name for st in pipeline.steps if st.rewrites)
        info = {name: {**v, "doc": f"Block '{name}' in its {options.pipeline} form (rewritten by {passes}); the spec "
                                   "documents its training form."} for name, v in info.items()}
        graph.meta["doc"] = (f"{doc.doc.strip()}\n\n" if doc.doc.strip() else "") + (
            f"This is the {options.pipeline} form: the passes {passes} rewrote the training form the text above describes.")
    source = generate(graph, graph.meta["spec_label"], doc.name, info)
    options.progress.end()
    return CompileResult(graph, cost, source, doc, train_graph=train_graph, pipeline=pipeline, state_dict=converted)


def _elements(graph: Graph) -> int:
    """Parameters plus buffers of the module ``graph`` lowers to (what building it allocates)."""
    cost = graph_cost(graph)
    return cost.params + getattr(cost, "buffers", 0)


def _floating_dtype(state: Mapping[str, Any]) -> Any:
    """The checkpoint's floating dtype (the widest, if it mixes several): converted weights keep it."""
    import torch

    dtypes = {v.dtype for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    if not dtypes:
        return torch.float32
    return max(dtypes, key=lambda d: (torch.finfo(d).bits, torch.finfo(d).eps < 1e-3))


def input_paths(res: CompileResult, weights: str | None = None) -> list[Path]:
    """Every file a compile read: the spec, the files it imports and the checkpoint (outputs must differ)."""
    paths = [Path(p) for p in res.doc.sources] or [Path(res.doc.path)]
    if weights:
        paths.append(Path(weights))
    return paths


def write_artifact(res: CompileResult, out: Path, weights: str | None = None) -> list[Path]:
    """Write the generated module (and converted weights beside it) atomically; never over an input."""
    files = [out]
    pth = out.with_suffix(".pth")
    from archc._fs import check_distinct

    check_distinct([out, pth] if res.state_dict is not None else [out], input_paths(res, weights))
    if res.state_dict is not None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(dict(res.state_dict), buf)
        write_atomic(pth, buf.getvalue())
        files.append(pth)
    write_atomic(out, res.source)
    res.files = files
    return files


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` via a temporary file and rename, so a failure never leaves half a file.

    The file gets the permissions the umask allows; temporaries left by an earlier killed write to
    the same path are removed first (see :mod:`archc._fs`).
    """
    from archc._fs import publish, temp_beside

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
