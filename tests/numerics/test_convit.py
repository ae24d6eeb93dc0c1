"""specs/convit.yaml against an independent ConViT (timm's layout): exact parameter counts, float64 outputs, costs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions, compile_spec
from tests.artifact import import_source
from tests.numerics.convit_reference import ConViT
from tests.numerics.exact import assert_exact, counted_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "convit.yaml"
torch.set_num_threads(1)

#: timm's parameter counts (convit_tiny, convit_small)
TIMM_PARAMS = {"ti": 5_710_512, "s": 27_777_322}


def _key(ours: str, local_layers: int) -> str:
    """archc's state-dict key → the reference's (timm's names; the two block runs are one list there)."""
    if ours.startswith("patch_embed.proj."):
        return ours.replace("patch_embed.proj.", "patch_embed.")
    for run, offset in (("local_blocks.", 0), ("global_blocks.", local_layers)):
        if ours.startswith(run):
            i, rest = ours[len(run):].split(".", 1)
            return f"blocks.{int(i) + offset}.{rest}"
    return ours


def _map_weights(model: torch.nn.Module, ref: torch.nn.Module, local_layers: int) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
        theirs, ours = ref.state_dict(), model.state_dict()
        assert len(ours) == len(theirs)
        for key, t in ours.items():
            t.copy_(theirs[_key(key, local_layers)].reshape(t.shape))  # gating_param: (heads,) → (heads, 1, 1)


def _compare(params: list[str], variant: str, ref_kw: dict, batch: int, tmp_path: Path) -> tuple:
    res = compile_spec(SPEC, CompileOptions(variant=variant, params=params))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = ConViT(**ref_kw).eval().double()
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == sum(p.numel() for p in ref.parameters())
    _map_weights(model, ref, ref_kw.get("local_layers", 10))
    img = ref_kw.get("img", 224)
    x = torch.randn(batch, 3, img, img, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_exact(model, ref, x)
    assert counted_macs(model, x[:1]) == res.cost.macs
    return res, model


@pytest.mark.parametrize("variant,heads", [("ti", 4), ("s", 9)])
def test_convit_full_size_matches_reference(variant: str, heads: int, tmp_path: Path) -> None:
    res, _ = _compare([], variant, {"heads": heads}, 1, tmp_path)
    assert res.cost.params == TIMM_PARAMS[variant]


def test_small_convit_with_batch_and_other_split(tmp_path: Path) -> None:
    kw = {"img": 64, "patch": 8, "head_width": 8, "heads": 3, "depth": 5, "local_layers": 3, "num_classes": 11}
    params = [f"{k}={v}" for k, v in kw.items()]
    _, model = _compare(params, "ti", kw, 3, tmp_path)
    model = model.float()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), want, rtol=1e-5, atol=1e-5)
