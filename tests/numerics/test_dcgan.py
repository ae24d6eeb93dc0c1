"""specs/dcgan.yaml against the DCGAN generator written directly (PyTorch's DCGAN example layout), float64."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archc.compiler import CompileOptions, compile_spec
from archc.targets import compile_target
from tests.artifact import import_source
from tests.numerics.exact import counted_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "dcgan.yaml"
torch.set_num_threads(1)


def reference(nz: int = 100, ngf: int = 64, nc: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def test_dcgan_generator_matches_reference(tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions())
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = reference().eval().double()
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == sum(p.numel() for p in ref.parameters()) == 3_576_704
    gen = torch.Generator().manual_seed(0)
    ours, theirs = list(model.state_dict().items()), list(ref.state_dict().values())
    assert [tuple(t.shape) for _, t in ours] == [tuple(t.shape) for t in theirs]  # same order: conv, BN stats, ...
    with torch.no_grad():
        for (key, a), b in zip(ours, theirs):
            if key.endswith("running_var"):
                a.copy_(torch.rand(a.shape, generator=gen, dtype=a.dtype) + 0.5)
            elif a.is_floating_point():
                a.copy_(torch.randn(a.shape, generator=gen, dtype=a.dtype) * 0.1)
            b.copy_(a)
    z = torch.randn(2, 100, 1, 1, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        got, want = model(z), ref(z)
    assert got.shape == (2, 3, 64, 64)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12
    assert counted_macs(model, z[:1]) == res.cost.macs


def test_dcgan_onnx(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("onnxruntime")
    out = compile_target(SPEC, CompileOptions(target="onnx", pipeline="deploy"), tmp_path / "g.onnx")
    assert all(e <= 1e-4 for e in out.errors.values()), out.errors
