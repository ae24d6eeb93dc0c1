"""``archc weights``: a checkpoint from another code base, mapped onto a spec's generated module.

>>> res = map_checkpoint("specs/resnet.yaml", "resnet18-torchvision.pth", variant="resnet18")  # doctest: +SKIP
>>> res.map.headline()  # doctest: +SKIP
'mapped 102 of 102 tensors (20 integer buffers carried)'
>>> save_weights(res.state, Path("resnet18_archc.pth"), ["resnet18-torchvision.pth"])  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archc.diagnostics import CheckpointError, first_line
from archc.weights.check import TOLERANCE, compare_outputs, load_factory
from archc.weights.mapping import WeightMap, map_state_dict

__all__ = ["MappedWeights", "WeightMapError", "load_source", "map_checkpoint", "mapped_checkpoint_file", "save_weights"]

#: lines of a refusal printed before "... and N more"
_SHOWN = 40

#: wrappers training scripts put around a state dict
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


class WeightMapError(CheckpointError):
    """A checkpoint that does not map completely (or fails its check): a summary line, then the list."""

    def __init__(self, message: str, details: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.details = list(details)

    def render(self) -> str:
        lines = [self.headline()]
        lines += self.details[:_SHOWN]
        if len(self.details) > _SHOWN:
            lines.append(f"  ... and {len(self.details) - _SHOWN} more")
        if self.hint:
            lines.append(f"  help: {self.hint}")
        return "\n".join(lines)


def load_source(path: str) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (``weights_only=True``), unwrapped from ``{'state_dict': ...}``
    or ``{'model': ...}``; every value must be a dense tensor."""
    from archc.compiler import load_checkpoint

    obj: Any = load_checkpoint(path)
    for _ in range(2):  # {'model': {'state_dict': ...}} and the like
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = dict(inner)
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint '{path}': entry '{bad[0]}' is a {type(obj[bad[0]]).__name__}, not a tensor"
                              + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
                              hint="pass a state_dict (or {'state_dict': ...} / {'model': ...}) saved with torch.save")
    for k, v in obj.items():
        if v.layout != torch.strided or v.is_meta:
            raise CheckpointError(f"checkpoint '{path}': '{k}' is not a dense tensor with data",
                                  hint="save the checkpoint from a materialized model")
    if not obj:
        raise CheckpointError(f"checkpoint '{path}' holds no tensors")
    return dict(obj)


@dataclass
class MappedWeights:
    """A mapped checkpoint: the state dict for the spec's module and the map that made it."""

    state: dict[str, torch.Tensor]
    map: WeightMap
    #: the spec's module (train form) the state dict is for
    model: torch.nn.Module
    #: shapes of the spec's inputs at batch 1
    input_shapes: list[tuple[int, ...]]
    #: float64 relative error against the source model (``check=``), else None
    check_error: float | None = None


def _spec_module(spec: str | Path, variant: str | None, params: Sequence[str] | Mapping[str, Any],
                 max_elements: int) -> tuple[torch.nn.Module, list[tuple[int, ...]]]:
    from archc.compiler import CompileOptions, build_graph, check_size
    from archc.cost.model import graph_cost
    from archc.passes.equivalence import module_from_graph

    doc, graph = build_graph(spec, CompileOptions(variant=variant, params=params))
    cost = graph_cost(graph)
    check_size(cost.params + getattr(cost, "buffers", 0), f"the model '{doc.name}'", max_elements)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the values a partial map leaves are the artifact's own (seed 0), reproducibly
        model = module_from_graph(graph)
    return model, [t.concrete(1) for t in graph.inputs.values()]


def map_checkpoint(spec: str | Path, checkpoint: str | Mapping[str, torch.Tensor], *, variant: str | None = None,
                   params: Sequence[str] | Mapping[str, Any] = (), allow_partial: bool = False,
                   check: str | None = None, input_shape: Sequence[int] | None = None,
                   max_elements: int = 2**30) -> MappedWeights:
    """Map a checkpoint in another code base's layout onto the module of ``spec`` (train form).

    Refuses (:class:`WeightMapError`) a map that leaves any tensor unmapped or ambiguous unless
    ``allow_partial`` (then the module's initialized values fill the gaps). With ``check``
    (``MODULE:FACTORY``) the source model is built, given the checkpoint, and compared with the
    spec's module in float64; above :data:`TOLERANCE` the map is refused.
    """
    label = checkpoint if isinstance(checkpoint, str) else "the checkpoint"
    source = load_source(checkpoint) if isinstance(checkpoint, str) else dict(checkpoint)
    model, shapes = _spec_module(spec, variant, params, max_elements)
    if input_shape is not None:
        if len(shapes) != 1 or len(input_shape) != len(shapes[0]):
            raise CheckpointError(f"--input-shape {','.join(map(str, input_shape))} does not fit the spec's inputs {shapes}")
        shapes = [tuple(int(d) for d in input_shape)]
    defaults = model.state_dict()
    wm = map_state_dict(source, defaults)
    if not wm.complete and not allow_partial:
        counts = []
        if wm.unmatched_target:
            n = len(wm.unmatched_target)
            counts.append(f"{n} tensor{'s' if n > 1 else ''} of the model {'are' if n > 1 else 'is'} not in it")
        if wm.unmatched_source:
            n = len(wm.unmatched_source)
            counts.append(f"{n} of its tensors {'have' if n > 1 else 'has'} no place in the model")
        if wm.ambiguous:
            n = len(wm.ambiguous)
            counts.append(f"{n} group{'s are' if n > 1 else ' is'} ambiguous")
        raise WeightMapError(f"{label}: does not map onto {Path(str(spec)).name}: {', '.join(counts)} "
                             f"({wm.headline()})", wm.problems(),
                             hint="check the spec's variant and params (-v, -p) match the checkpoint's model; "
                                  "--allow-partial keeps the module's initialized values where nothing maps")
    state = wm.apply(source, defaults)
    res = MappedWeights(state, wm, model, shapes)
    if check is not None:
        factory = load_factory(check)
        try:
            src_model = factory()
        except Exception as exc:  # the user's own code: its error, on one line
            raise CheckpointError(f"--check: {check}() failed: {type(exc).__name__}: {first_line(exc)}") from None
        if not isinstance(src_model, torch.nn.Module):
            raise CheckpointError(f"--check: {check}() returned a {type(src_model).__name__}, not a torch.nn.Module")
        err = compare_outputs(src_model, source, model, state, shapes)
        res.check_error = err
        if not err <= TOLERANCE:
            shown = "inf (non-finite or mismatched outputs)" if math.isinf(err) else f"{err:.3e}"
            raise WeightMapError(f"{label}: the mapped weights do not reproduce {check}: float64 relative error {shown} "
                                 f"> {TOLERANCE:g}", [f"  {wm.headline()}"],
                                 hint="the checkpoint's model and the spec differ in computation, or tensors of equal "
                                      "shapes were paired in another order than the model uses them")
    return res


def save_weights(state: Mapping[str, torch.Tensor], out: Path, inputs: Sequence[str | Path]) -> Path:
    """Write ``state`` to ``out`` atomically, never over one of ``inputs`` (the spec, the checkpoint)."""
    from archc._fs import check_distinct
    from archc.compiler import write_atomic

    check_distinct([out], inputs)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    write_atomic(out, buf.getvalue())
    return out


@contextmanager
def mapped_checkpoint_file(spec: str | Path, checkpoint: str, *, variant: str | None = None,
                           params: Sequence[str] | Mapping[str, Any] = (), max_elements: int = 2**30) -> Iterator[str]:
    """A temporary file holding ``checkpoint`` mapped onto the spec's train-form module (complete maps only).

    ``archc compile --weights CKPT --map`` compiles from it as from a checkpoint of the spec's own
    layout; the file is removed when the block ends.
    """
    res = map_checkpoint(spec, checkpoint, variant=variant, params=params, max_elements=max_elements)
    with tempfile.TemporaryDirectory(prefix="archc-weights-") as tmp:
        path = Path(tmp) / "mapped.pth"
        torch.save(res.state, path)
        yield str(path)
