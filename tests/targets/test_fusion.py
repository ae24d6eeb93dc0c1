"""The fused pipeline: the form_regions pass (float64-certified) and the CPU lowering of its regions."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions, compile_spec
from archc.passes.equivalence import max_rel_error, module_from_source
from archc.passes.fusion import (
    FUSED_TOLERANCE,
    check_fused,
    fuse_source,
    is_region,
    pack_convs,
    runtime_module,
    set_onednn,
)
from archc.passes.pipeline import PIPELINES, run_pipeline
from tests.targets.helpers import ROOT, small_params

MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
CONVNEXT = ROOT / "specs" / "convnext.yaml"
ONEDNN = torch.backends.mkldnn.is_available()


def test_fused_pipeline_is_deploy_plus_regions() -> None:
    assert PIPELINES["fused"][: len(PIPELINES["deploy"])] == PIPELINES["deploy"]
    assert PIPELINES["fused"][-1] == "form_regions"


def _nested_blocks(g) -> int:  # noqa: ANN001
    return sum(1 for _, n in g.walk() if n.is_block)


def test_form_regions_flattens_residual_blocks_and_is_certified() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="fused"))
    step = next(s for s in res.pipeline.steps if s.name == "form_regions")
    assert step.rewrites > 0
    assert step.max_rel_error is not None and step.max_rel_error <= 1e-9
    regions = [n for _, n in res.graph.walk() if n.is_block and is_region(n.body)]
    assert regions
    for r in regions:  # a region has no nested block left: one flat chain
        assert not any(n.is_block for n in r.body)
    deploy = compile_spec(MINI, CompileOptions(pipeline="deploy"))
    assert _nested_blocks(res.graph) < _nested_blocks(deploy.graph)


def test_form_regions_converts_train_weights(tmp_path: Path) -> None:
    train = compile_spec(MINI)
    model = module_from_source(train.source).create_model().eval()
    from archc.passes.equivalence import randomize

    sd = randomize(model, seed=7)
    ckpt = tmp_path / "train.pth"
    torch.save(sd, ckpt)
    res = compile_spec(MINI, CompileOptions(pipeline="fused", weights=str(ckpt)))
    fused = module_from_source(res.source).create_model().eval()
    fused.load_state_dict({k: v.float() for k, v in res.state_dict.items()}, strict=True)
    model.load_state_dict(sd)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_rel_error_t(model(x), fused(x)) <= 1e-5


def max_rel_error_t(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / float(a.abs().max())


def test_convnext_region_fuses_the_whole_block() -> None:
    res = compile_spec(CONVNEXT, CompileOptions(variant="atto", params=small_params(CONVNEXT), pipeline="fused", check=False))
    src, rep = fuse_source(res.source)
    assert rep.channels_last and rep.convs > 0
    # the block's dwconv, LN-MLP and residual add are one flat class now
    assert "def forward" in src and "FusedConv2d(" in src and "memory_format=torch.channels_last" in src
    errs = check_fused(res.source, src)
    assert errs["float64"] <= 1e-9 and errs["float32"] <= FUSED_TOLERANCE


def test_fuse_source_fuses_post_ops_in_regions() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="fused"))
    src, rep = fuse_source(res.source)
    assert rep.fused_act > 0 and rep.regions > 0  # mini's blocks are conv → relu → add: the add stays separate
    assert "post='relu'" in src and "F.relu" not in src[src.index("class ResBlock"):]
    errs = check_fused(res.source, src)
    assert errs["float64"] <= 1e-9 and errs["float32"] <= FUSED_TOLERANCE


_ACT_SRC = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (2, 8, 12, 12)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)
        self.c = nn.Conv2d(8, 8, 3, stride=1, padding=1, groups=8)
        self.c2 = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        act = ACT
        b = self.b(act)
        res = x + b
        out = F.relu(res)
        c = self.c(out)
        shared = c + out
        x = self.c2(shared)
        x = F.relu(x)
        x = x + shared
        return shared + c + x


def create_model() -> Block:
    return Block()
'''


@pytest.mark.parametrize("act", ["F.relu(a)", "F.silu(a)", "F.gelu(a)", "F.gelu(a, approximate='tanh')", "torch.sigmoid(a)",
                                 "torch.tanh(a)", "F.hardswish(a)", "F.hardsigmoid(a)", "F.relu6(a)"])
def test_every_post_op_matches_eager(act: str) -> None:
    src = _ACT_SRC.replace("ACT", act)
    fused, rep = fuse_source(src)
    expected_acts = 1 if act != "F.relu6(a)" else 0  # relu6 is not fused (kept as a separate op)
    # a(+act); b+add(+relu); c is used twice: not fused; c2 reuses the name x: c2+relu, then the add stays
    assert rep.fused_act == expected_acts + 2 and rep.fused_add == 1 and rep.regions == 1
    errs = check_fused(src, fused)
    assert errs["float64"] <= 1e-9 and errs["float32"] <= FUSED_TOLERANCE


def test_fused_conv_falls_back_and_drops_stale_weights() -> None:
    rt = runtime_module()
    conv = rt.FusedConv2d(4, 6, 3, padding=1, post="relu", binary="add").eval()
    ref = torch.nn.Conv2d(4, 6, 3, padding=1).eval()
    ref.load_state_dict(conv.state_dict())
    x, other = torch.randn(1, 4, 9, 9), torch.randn(1, 6, 9, 9)
    with torch.no_grad():
        assert max_rel_error_t(F_relu(ref(x) + other), conv(x, other)) <= 1e-5
        if ONEDNN:
            assert conv.packed[0].numel() > 0  # the oneDNN path ran and cached the reordered weight
        conv.load_state_dict({k: v * 2 for k, v in ref.state_dict().items()})  # a new state dict drops the cache
        assert conv.packed[0].numel() == 0
        ref.load_state_dict(conv.state_dict())
        assert max_rel_error_t(F_relu(ref(x) + other), conv(x, other)) <= 1e-5
        # float64, a mismatched residual and training mode take the plain-PyTorch path, exactly
        conv64, ref64 = conv.double(), ref.double()
        assert torch.equal(conv64(x.double(), other.double()), F_relu(ref64(x.double()) + other.double()))
        assert torch.equal(conv64(x.double()), F_relu(ref64(x.double())))


def F_relu(t: torch.Tensor) -> torch.Tensor:  # noqa: N802
    return torch.relu(t)


def test_fused_module_scripts_saves_and_loads() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="fused"))
    src, _ = fuse_source(res.source)
    model = module_from_source(src).create_model().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    fresh = module_from_source(src).create_model().eval()
    fresh.load_state_dict(model.state_dict())
    set_onednn(fresh, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(fresh)))
        buf = io.BytesIO()
        torch.jit.save(frozen, buf)
        loaded = torch.jit.load(io.BytesIO(buf.getvalue()))
    with torch.no_grad():
        assert max_rel_error_t(ref, loaded(x)) <= 1e-4


def test_pack_convs_keeps_state_dict_and_outputs() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        ref = model(x)
        assert pack_convs(model) == 2
        assert list(model.state_dict()) == keys
        assert max_rel_error_t(ref, model(x)) <= 1e-5


def test_check_fused_rejects_a_wrong_lowering() -> None:
    res = compile_spec(MINI, CompileOptions(pipeline="fused"))
    src, _ = fuse_source(res.source)
    broken = src.replace("post='relu'", "post='sigmoid'", 1)
    assert broken != src
    from archc.diagnostics import PassError

    with pytest.raises(PassError, match="fused lowering broke numerical equivalence"):
        check_fused(res.source, broken)


def test_max_rel_error_helper_is_the_pipelines() -> None:
    # the fused pipeline's certification uses the same float64 differential check as deploy
    g = compile_spec(MINI).graph
    r = run_pipeline(g, "fused")
    assert r.max_rel_error <= 1e-9
    assert callable(max_rel_error)


def test_prepacked_weights_stay_exact_when_the_batch_changes() -> None:
    """oneDNN weights are reordered on the first call, for that input shape; later calls at other batch sizes must agree."""
    from archc.targets import max_rel_error as rel_error
    from archc.targets import prepare

    spec = ROOT / "specs" / "convnext.yaml"
    prep = prepare(spec, CompileOptions(params=small_params(spec), pipeline="fused", check=False))
    fused, ref = prep.factory(True)(), prep.factory(False)()
    assert any(type(m).__name__ == "FusedLinear" for m in fused.modules())
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for batch in (1, 5, 2):
            x = torch.randn((batch, *prep.inputs[0].shape[1:]), generator=gen)
            assert rel_error(ref(x), fused(x)) <= 1e-4, batch
