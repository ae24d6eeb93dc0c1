"""Shared checks of the zoo tests: a generated module against an independent reference, in float64."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, CompileResult, compile_spec
from tests.artifact import import_source


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|."""
    return ((got - want).abs().max() / want.abs().max()).item()


def assert_exact(model: torch.nn.Module, ref: torch.nn.Module, *inputs: torch.Tensor, tol: float = 1e-12) -> None:
    """Both modules give the same outputs (a tensor, or a dict of them compared key by key) within ``tol``."""
    with torch.no_grad():
        got, want = model(*inputs), ref(*inputs)
    if isinstance(want, Mapping):
        assert sorted(got) == sorted(want)
        for k in want:
            assert rel_err(got[k], want[k]) <= tol, k
    else:
        assert rel_err(got, want) <= tol


def counted_macs(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates torch's FlopCounterMode sees in one forward."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc.get_total_flops() // 2


def randomize_mapped(theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], key_of: Callable[[str], str],
                     seed: int = 0, scale: float = 0.05) -> None:
    """Fill the reference's float tensors with seeded random values (running variances in [0.5, 1.5)) and copy
    each into the generated module's tensor named ``key_of(reference key)``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in theirs.items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5 if "running_var" in key
                        else torch.randn(t.shape, generator=gen, dtype=t.dtype) * scale)
            ours[key_of(key)].copy_(t)


def mapped_pair(spec: Path, options: CompileOptions, ref: torch.nn.Module, key_of: Callable[[str], str], params: int,
                tmp_path: Path) -> tuple[torch.nn.Module, CompileResult]:
    """The spec's module (float64) beside ``ref``: both hold ``params`` parameters (as the cost model says), every
    reference tensor has its counterpart ``key_of(key)``, and both carry the same seeded random weights."""
    res = compile_spec(spec, options)
    model = import_source(res.source, tmp_path).create_model().double()
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == sum(p.numel() for p in ref.parameters()) == params
    ours, theirs = model.state_dict(), ref.state_dict()
    assert sorted(key_of(k) for k in theirs) == sorted(ours)
    randomize_mapped(theirs, ours, key_of)
    return model, res
