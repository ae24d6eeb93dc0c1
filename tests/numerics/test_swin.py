"""specs/swin.yaml against an independent Swin (timm's layout): exact parameter counts, float64 outputs, costs.

Swin-T and Swin-S at 224² (window 7 needs 224/32 = 7 in the last stage); smaller variants exercise
windows that do not cover the map, maps no larger than the window, maps the window does not divide
(padded), and other window sizes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, compile_spec
from tests.artifact import import_source
from tests.numerics.swin_reference import SwinTransformer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "swin.yaml"
torch.set_num_threads(1)

#: timm's parameter counts (swin_tiny/small/base_patch4_window7_224)
TIMM_PARAMS = {"t": 28_288_354, "s": 49_606_258}


def _pair(spec_params: list[str], variant: str, tmp_path: Path, **ref_kw) -> tuple:
    res = compile_spec(SPEC, CompileOptions(variant=variant, params=spec_params))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = SwinTransformer(**ref_kw).eval().double()
    return res, model, ref


def _map_weights(model: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Random weights into the reference, copied by name into archc's module (the bias table transposed)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
        theirs = ref.state_dict()
        ours = model.state_dict()
        assert len(ours) == len(theirs)
        for key, t in ours.items():
            src = theirs[key]
            t.copy_(src.t() if key.endswith("relative_position_bias_table") else src)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("variant,kw", [("t", {}), ("s", {"depths": (2, 2, 18, 2)})])
def test_swin_full_size_matches_reference(variant: str, kw: dict, tmp_path: Path) -> None:
    res, model, ref = _pair([], variant, tmp_path, **kw)
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == TIMM_PARAMS[variant] == sum(p.numel() for p in ref.parameters())
    _map_weights(model, ref)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x)
        want = ref(x)
    assert _rel_err(got, want) <= 1e-12
    if variant == "t":
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        assert fc.get_total_flops() // 2 == res.cost.macs


@pytest.mark.parametrize("params,kw", [
    # 64² → maps 16, 8, 4, 2 with window 4: shifted windows in two stages, one-window stages without shift
    (["img=64", "embed=24", "heads=[2,4,6,8]", "window=4", "depths=[2,2,2,2]", "num_classes=10"],
     {"img": 64, "embed": 24, "heads": (2, 4, 6, 8), "window": 4, "depths": (2, 2, 2, 2), "num_classes": 10}),
    # window 7 on maps 16, 8, 4, 2: padded to 21 and 14 (shifted windows over the padding), then one window
    (["img=64", "embed=24", "heads=[2,4,6,8]", "depths=[2,2,2,2]", "num_classes=10"],
     {"img": 64, "embed": 24, "heads": (2, 4, 6, 8), "window": 7, "depths": (2, 2, 2, 2), "num_classes": 10}),
    # window 5 on maps 40, 20, 10, 5 (patch 2): odd windows, shift 2
    (["img=80", "patch=2", "embed=16", "heads=[1,2,4,4]", "window=5", "depths=[2,4,2,2]", "num_classes=7"],
     {"img": 80, "patch": 2, "embed": 16, "heads": (1, 2, 4, 4), "window": 5, "depths": (2, 4, 2, 2), "num_classes": 7}),
])
def test_small_swins_match_reference_with_batch(params: list[str], kw: dict, tmp_path: Path) -> None:
    res, model, ref = _pair(params, "t", tmp_path, **kw)
    assert sum(p.numel() for p in model.parameters()) == res.cost.params == sum(p.numel() for p in ref.parameters())
    _map_weights(model, ref)
    x = torch.randn(3, 3, kw["img"], kw["img"], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = model(x), ref(x)
    assert _rel_err(got, want) <= 1e-12
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x[:1])
    assert fc.get_total_flops() // 2 == res.cost.macs
    assert math.isfinite(got.abs().max().item())


def test_swin_scripts_and_exports_small(tmp_path: Path) -> None:
    res, model, _ = _pair(["img=64", "embed=24", "heads=[2,4,6,8]", "window=4", "depths=[2,2,2,2]"], "t", tmp_path)
    model = model.float()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-5)
    ep = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), want, rtol=1e-5, atol=1e-5)
