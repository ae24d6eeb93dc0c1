"""Numerical equivalence of two graphs: a float64 differential run of their generated modules.

Both graphs are lowered with the PyTorch backend and instantiated; the reference module gets the
given weights or random ones (every parameter perturbed, BatchNorm statistics random, so that no
branch is numerically invisible); the candidate gets the reference weights converted by the pass
pipeline's weight map and loaded with ``strict=True``. Both run in eval mode on the same random
input; the error is ``max|a − b| / max|a|`` over all outputs.
"""

from __future__ import annotations

import hashlib
import linecache
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch

from archc.diagnostics import CheckpointError
from archc.ir.graph import Graph

__all__ = ["module_from_graph", "module_from_source", "randomize", "max_rel_error", "check_state_dict", "output_tuple", "Reference"]


def module_from_source(source: str, name: str = "archc_generated") -> ModuleType:
    """Import generated source as a module (registered in linecache so TorchScript can read it)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    fname = f"<{name}-{digest}>"
    linecache.cache[fname] = (len(source), None, source.splitlines(True), fname)
    mod = ModuleType(f"{name}_{digest}")
    mod.__file__ = fname
    exec(compile(source, fname, "exec"), mod.__dict__)  # archc's own generated code, parsed before
    return mod


def module_from_graph(graph: Graph) -> torch.nn.Module:
    from archc.backends.pytorch.codegen import generate

    return module_from_source(generate(graph, graph.meta.get("spec_label", graph.name))).create_model()


def randomize(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with every float tensor perturbed and BN statistics random (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            sd[k] = v.clone()
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=gen, dtype=v.dtype)
        elif k.endswith("running_mean"):
            sd[k] = 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        else:
            sd[k] = v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
    return sd


def check_state_dict(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected or mis-shaped key."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              hint="the checkpoint must be a state_dict of the train-form module of the same spec and variant")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}'" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""),
                              hint="the checkpoint must be a state_dict of the train-form module of the same spec and variant")
    for k, v in expected.items():
        got = given[k]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{source}: key '{k}' is not a tensor")
        if got.layout != torch.strided or got.is_meta:
            kind = "a meta tensor (no data)" if got.is_meta else f"a {str(got.layout).replace('torch.', '')} tensor"
            raise CheckpointError(f"{source}: key '{k}' is {kind}; a state_dict of dense tensors is expected",
                                  hint="save the checkpoint from a materialized model (x.to_dense() for sparse tensors)")
        if tuple(got.shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {list(got.shape)}, the model expects {list(v.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise CheckpointError(f"{source}: tensor '{k}' holds {bad} non-finite value(s) (NaN or inf)",
                                  hint="the checkpoint is corrupt or diverged; a converted model would be meaningless")


def output_tuple(out: Any) -> tuple[Any, ...]:
    """A module's outputs as a tuple: a tensor, a tuple, or named outputs (a dict, in its order)."""
    if isinstance(out, dict):
        return tuple(out.values())
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def rel_error(ref: torch.Tensor, got: torch.Tensor) -> float:
    """max|ref − got| / max|ref|; inf when either side holds a NaN or inf (a non-finite output never passes)."""
    if not bool(torch.isfinite(ref).all()) or not bool(torch.isfinite(got).all()):
        return math.inf
    if ref.shape != got.shape:
        return math.inf
    if ref.numel() == 0:
        return 0.0
    return float((ref - got).abs().max()) / max(float(ref.abs().max()), 1e-30)


class Reference:
    """A reference run: the before-graph's module, weights, inputs and outputs, computed once."""

    def __init__(self, before: Graph, state_dict: Mapping[str, torch.Tensor] | None = None, seed: int = 0,
                 dtype: torch.dtype = torch.float64, model: torch.nn.Module | None = None) -> None:
        ref = (model if model is not None else module_from_graph(before)).to(dtype).eval()
        self.weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in (state_dict or randomize(ref, seed)).items()}
        ref.load_state_dict(self.weights, strict=True)
        gen = torch.Generator().manual_seed(seed + 1)
        self.inputs = [torch.randn(t.concrete(1), generator=gen, dtype=dtype) for t in before.inputs.values()]
        self.dtype = dtype
        with torch.no_grad():
            out = ref(*self.inputs)
        self.outputs = output_tuple(out)

    def error(self, after: Graph, weight_fn: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]) -> float:
        """Max relative output error of ``after`` with the converted reference weights."""
        cand = module_from_graph(after).to(self.dtype).eval()
        cand.load_state_dict(weight_fn(self.weights), strict=True)
        with torch.no_grad():
            out = cand(*self.inputs)
        outs = output_tuple(out)
        err = 0.0 if len(outs) == len(self.outputs) else math.inf
        for x, y in zip(self.outputs, outs):
            err = max(err, rel_error(x, y))
        return err


def max_rel_error(before: Graph, after: Graph, weight_fn: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]],
                  state_dict: Mapping[str, torch.Tensor] | None = None, seed: int = 0, dtype: torch.dtype = torch.float64) -> float:
    """Max relative output error between ``before`` (with weights) and ``after`` (converted weights)."""
    return Reference(before, state_dict, seed, dtype).error(after, weight_fn)
