"""The cudagraph target and the Triton conv→pointwise kernel; the CUDA parts skip cleanly without CUDA/Triton."""

from __future__ import annotations

import ast
import importlib.util

import pytest
import torch
from archc.backends.cudagraph import cudagraph_source, dwpw_rewrite
from archc.backends.cudagraph.triton_dwpw import ACTS, emit_runtime, kernel_source

from archc.compiler import CompileOptions, compile_spec
from archc.passes.equivalence import module_from_source
from tests.targets.helpers import ROOT

MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
CUDA = torch.cuda.is_available()
TRITON = importlib.util.find_spec("triton") is not None
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")
needs_triton = pytest.mark.skipif(not (CUDA and TRITON), reason="needs CUDA and triton")

_DWPW_SRC = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (2, 16, 14, 14)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.g = nn.Conv2d(32, 32, 5, padding=2, groups=4)
        self.proj = nn.Conv2d(32, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.dw(x)
        act = F.gelu(dw)
        pw = self.pw(act)
        act2 = F.silu(pw)
        g = self.g(act2)
        proj = self.proj(g)
        out = x + proj
        return out


def create_model() -> Block:
    return Block()
'''


def _runner_module(src: str):  # noqa: ANN202
    return module_from_source(src, "archc_cg_test")


def test_dwpw_rewrite_finds_chains_and_falls_back_exactly() -> None:
    src, n = dwpw_rewrite(_DWPW_SRC)
    assert n == 2
    assert "dwpw(self.dw, self.pw, x, 'gelu', 'silu')" in src and "residual=x" in src
    full = src + "\n" + emit_runtime()
    ref = module_from_source(_DWPW_SRC, "ref").create_model().eval()
    got = module_from_source(full, "got").create_model().eval()
    got.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16, 14, 14)
    with torch.no_grad():  # no CUDA (or no Triton): the same PyTorch ops
        assert torch.allclose(ref(x), got(x), rtol=1e-6, atol=1e-6)


def test_kernel_source_is_valid_python_for_every_activation() -> None:
    for a1 in ACTS:
        for a2 in ("none", "relu"):
            ast.parse(kernel_source(f"k_{a1}_{a2}", a1, a2))
    with pytest.raises(ValueError):
        kernel_source("k", "swishy")


def test_cudagraph_artifact_without_cuda_refuses_clearly() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="deploy"))
    src, _ = cudagraph_source(res.source, (1, 3, 32, 32))
    mod = _runner_module(src)
    assert mod.CAPTURE_SHAPE == (1, 3, 32, 32)
    if CUDA:
        pytest.skip("CUDA present: the refusal path does not apply")
    with pytest.raises(RuntimeError, match="CUDA"):
        mod.create_runner()
    with pytest.raises(RuntimeError, match="CUDA"):
        mod.CUDAGraphRunner(mod.create_model())


@needs_cuda
def test_cudagraph_runner_replays_and_checks_the_shape() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="fused"))
    src, _ = cudagraph_source(res.source, (2, 3, 32, 32), fused=True)
    mod = _runner_module(src)
    model = mod.create_model().eval()
    ref_model = module_from_source(res.source, "ref").create_model().eval()
    ref_model.load_state_dict(model.state_dict())
    runner = mod.CUDAGraphRunner(model, (2, 3, 32, 32))
    for _ in range(2):
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            ref = ref_model(x)
        got = runner(x.cuda()).cpu()
        assert float((ref - got).abs().max()) / float(ref.abs().max()) <= 5e-3
    with pytest.raises(ValueError, match="captured for input shape"):
        runner(torch.randn(1, 3, 32, 32, device="cuda"))


@needs_triton
@pytest.mark.parametrize("act1,act2,res", [("none", "none", False), ("gelu", "silu", True), ("relu", "none", True)])
def test_triton_dwpw_kernel_matches_pytorch(act1: str, act2: str, res: bool) -> None:
    mod = module_from_source(_DWPW_SRC + "\n" + emit_runtime(), "triton_test")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    for groups, k in ((16, 3), (4, 5), (16, 7)):
        c1 = torch.nn.Conv2d(16, 16, k, padding=k // 2, groups=groups).cuda()
        c2 = torch.nn.Conv2d(16, 40, 1).cuda()
        x = torch.randn(2, 16, 13, 17, device="cuda")
        r = torch.randn(2, 40, 13, 17, device="cuda") if res else None
        assert mod.dwpw_supported(c1, c2, x)
        with torch.no_grad():
            got = mod.dwpw(c1, c2, x, act1, act2, r)
            want = mod._TORCH_ACTS[act2](c2(mod._TORCH_ACTS[act1](c1(x))))
            if r is not None:
                want = r + want
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)
