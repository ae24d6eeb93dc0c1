"""specs/rcnet.yaml against an independent RetinaNet ResNet-50 + RCNet neck (RevFP + CSN), float64.

The reference follows the semantics of the authors' release (TempleX98/RCNet,
``mmdet/models/necks/rcfpn.py``, class RCFPN, with ``configs/rcnet/retinanet_r50_rcfpn_1x_coco.py``:
RetinaNet's ResNet-50 body, start level C3, five outputs, 256 channels, ``norm_cfg=BN``) and keeps the
release's module names, so the key map below also says where an official checkpoint's tensors go:

* laterals and extra levels are mmcv ConvModules (conv without bias + BN, no activation); an extra level
  pads an odd side by replication, then 1×1 conv + BN and a 2×2 max pool;
* a FusionNode resizes its inputs to its level (bilinear up; replicate-pad and 2×2 max pool down), gates
  them with ``sigmoid(weight[i](cat(gap(a), gap(b))))``; with ``upsample_attn`` the coarser input is first
  weighted by ``softmax_HW(temp·C^-1/2·spatial_weight(cat(a, b)))·H·W`` (the gate reads the unweighted
  map); a three-input node passes the first fusion through ``pre_fusion``; every node ends in
  ``post_fusion``; both are ConvModules ordered (act, conv, norm) with mmcv's default ReLU;
* CSN stacks the levels at P4's size (P3 adaptive max pool, P5–P7 bilinear), shifts four groups of C/16
  channels cyclically along the level axis (by −1, +1, −2, +2), concatenates the stack, mixes each level
  with its own ConvModule(1×1) + 1×1 conv and adds the stack; adds the spatial and scale contexts; gives
  each level its map back (P3 bilinear, the others adaptive max pool).

The release's fusion convs are DCNv2 (``out_conv_cfg=dict(type='DCNv2', deform_groups=2)``: mmcv's
ModulatedDeformConv2dPack, a compiled kernel): its ``conv_offset`` (3×3 with bias, 3·2·9 = 54 channels) is
chunked into Δ-rows/Δ-columns interleaved per (group, tap), then mask logits through a sigmoid; each tap reads
the input bilinearly at its shifted position, zero outside the map. The reference samples by clamping the
positions to one pixel outside the map and reading a zero-padded copy (the op gathers the four corners and
masks those outside). Params: ResNet-50 body 23,508,032 + neck 7,665,346 = 31,173,378 (variant
retinanet_r50, the release's config); with plain 3×3 convs (retinanet_r50_conv, the release's
``out_conv_cfg=dict(type='Conv2d')``) the 8 offset convs (124,470 params each) go: 30,177,618.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, compile_spec
from archc.diagnostics import ArchcError
from tests.artifact import import_source
from tests.numerics.exact import mapped_pair
from tests.numerics.test_fpn import ConvBN, Stage

SPEC = Path(__file__).resolve().parents[2] / "specs" / "rcnet.yaml"
PARAMS = {"retinanet_r50": 31_173_378, "retinanet_r50_conv": 30_177_618}
LEVELS = [f"p{lvl}" for lvl in range(3, 8)]
torch.set_num_threads(1)


def sample_zero_outside(x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Bilinear reads of x (B, C, H, W) at rows y and columns xs (B, Ho, Wo), zero outside: positions clamped to
    one pixel outside the map (where every corner is outside anyway), read from a zero-padded copy."""
    b, _, h, w = x.shape
    padded = F.pad(x, [1, 2, 1, 2])
    y = y.clamp(-1, h) + 1
    xs = xs.clamp(-1, w) + 1
    y0, x0 = y.floor(), xs.floor()
    fy, fx = (y - y0).unsqueeze(-1), (xs - x0).unsqueeze(-1)
    y0, x0 = y0.long(), x0.long()
    n = torch.arange(b).view(b, 1, 1)
    out = (padded[n, :, y0, x0] * (1 - fy) * (1 - fx) + padded[n, :, y0, x0 + 1] * (1 - fy) * fx
           + padded[n, :, y0 + 1, x0] * fy * (1 - fx) + padded[n, :, y0 + 1, x0 + 1] * fy * fx)
    return out.permute(0, 3, 1, 2)


def deform_by_definition(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                         stride: int = 1, pad: int = 1, dil: int = 1, groups: int = 1) -> torch.Tensor:
    """DCNv2 one (group, tap) at a time: read each tap at its shifted position, scale by its mask, weight it."""
    b, c, _, _ = x.shape
    kh, kw = weight.shape[2:]
    ho, wo = offset.shape[2:]
    per = c // groups
    out = x.new_zeros(b, weight.shape[0], ho, wo)
    rows = (torch.arange(ho, dtype=x.dtype) * stride - pad).view(1, ho, 1)
    cols = (torch.arange(wo, dtype=x.dtype) * stride - pad).view(1, 1, wo)
    for g in range(groups):
        part = x[:, g * per:(g + 1) * per]
        for t in range(kh * kw):
            p, q = divmod(t, kw)
            k = g * kh * kw + t
            read = sample_zero_outside(part, rows + p * dil + offset[:, 2 * k], cols + q * dil + offset[:, 2 * k + 1])
            out = out + torch.einsum("oc,bchw->bohw", weight[:, g * per:(g + 1) * per, p, q], read * mask[:, k:k + 1])
    return out


class DCNv2Ref(nn.Module):
    """mmcv ModulatedDeformConv2dPack, 3×3, stride 1, padding 1, no bias, by the definition (one tap at a time)."""

    def __init__(self, cin: int, cout: int, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        nn.init.kaiming_uniform_(self.weight)
        self.conv_offset = nn.Conv2d(cin, groups * 3 * 9, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1, o2, m = torch.chunk(self.conv_offset(x), 3, dim=1)
        return deform_by_definition(x, torch.cat([o1, o2], 1), torch.sigmoid(m), self.weight, groups=self.groups)


class ConvModuleRef(nn.Module):
    """mmcv ConvModule with a BN norm (so the conv has no bias); act is ReLU before or after, or none."""

    def __init__(self, cin: int, cout: int, k: int, act: str | None, dcn: bool = False) -> None:
        super().__init__()
        self.conv = DCNv2Ref(cin, cout) if dcn else nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == "first":
            x = F.relu(x)
        y = self.bn(self.conv(x))
        return F.relu(y) if self.act == "last" else y


def pool_half(x: torch.Tensor) -> torch.Tensor:
    """The release's downsampling: replicate-pad an odd side by one, then a 2×2 max pool."""
    h, w = x.shape[-2:]
    return F.max_pool2d(F.pad(x, [0, w % 2, 0, h % 2], mode="replicate"), 2)


def spatial_softmax(z: torch.Tensor) -> torch.Tensor:
    b, _, h, w = z.shape
    return F.softmax(z.reshape(b, 1, -1), dim=-1).reshape(b, 1, h, w) * h * w


class FusionNodeRef(nn.Module):
    def __init__(self, c: int, n_inputs: int, attn: bool, dcn: bool) -> None:
        super().__init__()
        self.weight = nn.ModuleList([nn.Conv2d(2 * c, 1, 1) for _ in range(n_inputs - 1)])
        self.attn = attn
        if attn:
            self.spatial_weight = nn.Conv2d(2 * c, 1, 3, padding=1)
            self.temp = nn.Parameter(torch.ones(1))
        self.post_fusion = ConvModuleRef(c, c, 3, "first", dcn)
        if n_inputs == 3:
            self.pre_fusion = ConvModuleRef(c, c, 3, "first", dcn)

    def _gate(self, i: int, a: torch.Tensor, b: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.weight[i](torch.cat([a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)], 1)))
        return g * a + (1 - g) * mixed

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        size = xs[0].shape[-2:]
        xs = [x if x.shape[-2:] == size else
              F.interpolate(x, size=size, mode="bilinear") if x.shape[-2] < size[0] else pool_half(x) for x in xs]
        a, b = xs[0], xs[1]
        mixed = b
        if self.attn:
            z = self.temp * a.shape[1] ** -0.5 * self.spatial_weight(torch.cat([a, b], 1))
            mixed = spatial_softmax(z) * b
        out = self._gate(0, a, b, mixed)
        if len(xs) == 3:
            first = self.pre_fusion(out)
            out = self._gate(1, first, xs[2], xs[2])
        return self.post_fusion(out)


class ContextRef(nn.Module):
    """CSN's spatial (over the mean level's H·W) or scale (over the five levels' means) context."""

    def __init__(self, c: int, over: str) -> None:
        super().__init__()
        self.over = over
        self.channel_agg = nn.Conv2d(c, 1, 1)
        self.trans = nn.Conv2d(c, c, 1)

    def forward(self, stack: torch.Tensor) -> torch.Tensor:  # (L, B, C, H, W)
        if self.over == "space":
            x = stack.mean(0)
            w = spatial_softmax(self.channel_agg(x))
        else:
            x = stack.mean((3, 4)).permute(1, 2, 0).unsqueeze(-1)  # (B, C, L, 1)
            w = F.softmax(self.channel_agg(x), dim=2) * stack.shape[0]
        return self.trans((x * w).mean((2, 3), keepdim=True))


class CrossShiftRef(nn.Module):
    def __init__(self, c: int = 256, levels: int = 5) -> None:
        super().__init__()
        self.part = c // 16
        self.spatialContext = ContextRef(c, "space")
        self.scaleContext = ContextRef(c, "scale")
        self.aggregation = nn.ModuleList([nn.Sequential(ConvModuleRef(c + 4 * self.part, c, 1, "last"), nn.Conv2d(c, c, 1))
                                          for _ in range(levels)])

    def forward(self, ps: list[torch.Tensor]) -> list[torch.Tensor]:
        size = ps[1].shape[-2:]
        stack = torch.stack([F.adaptive_max_pool2d(ps[0], size)]
                            + [F.interpolate(p, size=size, mode="bilinear") for p in ps[1:]])  # (L, B, C, H, W)
        k = self.part
        # group g of level l comes from level l+1, l-1, l+2, l-2 (cyclically) for g = 0, 1, 2, 3
        groups = [torch.roll(stack[:, :, g * k:(g + 1) * k], s, dims=0) for g, s in enumerate((-1, 1, -2, 2))]
        shifted = torch.cat(groups + [stack], dim=2)
        mixed = stack + torch.stack([agg(shifted[lvl]) for lvl, agg in enumerate(self.aggregation)])
        out = mixed + self.spatialContext(mixed) + self.scaleContext(mixed)
        back = [F.interpolate(out[0], size=ps[0].shape[-2:], mode="bilinear")]
        back += [F.adaptive_max_pool2d(out[lvl], ps[lvl].shape[-2:]) for lvl in range(1, len(ps))]
        return [p + q for p, q in zip(ps, back)]


class RetinaRCNet(nn.Module):
    def __init__(self, c: int = 256, dcn: bool = True) -> None:
        super().__init__()
        self.stem = ConvBN(3, 64, 7, 2)
        chans = [256, 512, 1024, 2048]
        for i, depth in enumerate((3, 4, 6, 3)):
            setattr(self, f"layer{i + 1}", Stage("bottleneck", 64 if i == 0 else chans[i - 1], 64 * 2 ** i, chans[i],
                                                 depth, 1 if i == 0 else 2))
        self.lateral_convs = nn.ModuleList([ConvModuleRef(ch, c, 1, None) for ch in chans[1:]])
        self.extra_downsamples = nn.ModuleList([nn.Sequential(ConvModuleRef(c, c, 1, None), nn.MaxPool2d(2, 2))
                                                for _ in range(2)])
        self.RevFP = nn.ModuleDict({"p7": FusionNodeRef(c, 2, False, dcn), "p6": FusionNodeRef(c, 3, True, dcn),
                                    "p5": FusionNodeRef(c, 3, True, dcn), "p4": FusionNodeRef(c, 3, True, dcn),
                                    "p3": FusionNodeRef(c, 2, True, dcn)})
        self.CSN = CrossShiftRef(c)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        feats = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        cs = [conv(f) for conv, f in zip(self.lateral_convs, feats[1:])]
        for down in self.extra_downsamples:
            h, w = cs[-1].shape[-2:]
            cs.append(down(F.pad(cs[-1], [0, w % 2, 0, h % 2], mode="replicate")))
        ps = [self.RevFP["p3"]([cs[0], cs[1]])]
        for lvl in (4, 5, 6):
            ps.append(self.RevFP[f"p{lvl}"]([cs[lvl - 3], cs[lvl - 2], ps[-1]]))
        ps.append(self.RevFP["p7"]([cs[4], ps[-1]]))
        return dict(zip(LEVELS, self.CSN(ps)))


def official_to_archc(key: str) -> str:
    """Key of the reference (the release's neck names) → key of archc's module."""
    p = key.split(".")
    if p[0] == "lateral_convs":
        lvl = int(p[1]) + 3
        return f"lateral{lvl}.{p[3]}" if p[2] == "conv" else f"c{lvl}.{p[3]}"
    if p[0] == "extra_downsamples":
        lvl = int(p[1]) + 6
        return f"extra{lvl}.{p[4]}" if p[3] == "conv" else f"extra{lvl}_bn.{p[4]}"
    if p[0] == "RevFP":
        lvl = int(p[1][1])
        rest = ".".join(p[3:]).replace("conv.conv_offset", "conv_offset")
        if p[2] == "weight":  # weight[0]: the gate with the coarser level, weight[1]: with the finer fused level
            gate = f"gate{lvl}" if p[3] == "0" and lvl != 7 else f"gate{lvl}_down" if lvl != 7 else "gate7"
            return f"{gate}.weight.{p[4]}"
        if p[2] in ("spatial_weight", "temp"):
            return f"attn{lvl}.{'.'.join(p[2:])}"
        return f"{'p' if p[2] == 'post_fusion' else 'pre'}{lvl}.{rest}"
    if p[0] == "CSN":
        if p[1] == "aggregation":
            lvl = p[2]
            if p[3] == "1":
                return f"csn.agg{lvl}_out.{p[4]}"
            return f"csn.agg{lvl}.{p[5]}" if p[4] == "conv" else f"csn.agg{lvl}_bn.{p[5]}"
        pre = "sp" if p[1] == "spatialContext" else "sc"
        return f"csn.{pre}_{'agg' if p[2] == 'channel_agg' else 'trans'}.{p[3]}"
    return key  # the backbone's names are the same


def _pair(h: int, w: int, tmp_path: Path, variant: str = "retinanet_r50") -> tuple[nn.Module, nn.Module, object]:
    ref = RetinaRCNet(dcn=variant == "retinanet_r50").double()
    options = CompileOptions(variant=variant, params=[f"img_h={h}", f"img_w={w}"])
    model, res = mapped_pair(SPEC, options, ref, official_to_archc, PARAMS[variant], tmp_path)
    ours = model.state_dict()
    with torch.no_grad():
        # a temperature far from its initial 1 and gates far from 1/2, so both paths are exercised
        for lvl in (3, 4, 5, 6):
            ref.RevFP[f"p{lvl}"].temp.fill_(2.0 + lvl)
            ours[f"attn{lvl}.temp"].fill_(2.0 + lvl)
    return model, ref, res


def _close(got: dict, want: dict) -> None:
    assert list(got) == list(want) == LEVELS
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert ((got[k] - want[k]).abs().max() / want[k].abs().max()).item() <= 1e-12, k


@pytest.mark.parametrize("h,w,variant", [(200, 136, "retinanet_r50"), (128, 128, "retinanet_r50"),
                                         (200, 136, "retinanet_r50_conv")])
def test_rcnet_matches_reference(h: int, w: int, variant: str, tmp_path: Path) -> None:
    """Eval mode at a size with odd sides on every level from C3 (200×136: 25×17 ... 2×2) and at 128²."""
    model, ref, res = _pair(h, w, tmp_path, variant)
    model.eval()
    ref.eval()
    x = torch.randn(1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), ref(x)
    _close(got, want)
    assert [tuple(v.shape[1:]) for v in got.values()] == [t.concrete(1)[1:] for t in res.graph.output_types]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() // 2 == res.cost.macs


def test_rcnet_other_input_size_and_train_mode(tmp_path: Path) -> None:
    """Compiled at 128², run at 256×128 (C3–C6 have even sides, so the release's replicate padding adds
    nothing to what its BatchNorms see) in training mode: outputs and BatchNorm running statistics equal the reference's."""
    model, ref, _ = _pair(128, 128, tmp_path)
    model.train()
    ref.train()
    x = torch.randn(2, 3, 256, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _close(model(x), ref(x))
    mine, theirs = model.state_dict(), ref.state_dict()
    for key in ("CSN.aggregation.3.0.bn.running_var", "RevFP.p5.pre_fusion.bn.running_mean",
                "extra_downsamples.1.0.bn.running_var"):
        assert torch.allclose(mine[official_to_archc(key)], theirs[key], rtol=1e-12, atol=0), key


def test_rcnet_scripts_and_exports(tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions(params=["img_h=64", "img_w=64"]))
    model = import_source(res.source, tmp_path).create_model().eval()
    x = torch.randn(1, 3, 136, 104)
    scripted = torch.jit.script(model)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        want = model(x)
        for got in (scripted(x), exported(x)):
            assert list(got) == list(want) == LEVELS
            for k in want:
                torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_spatial_ops(tmp_path: Path) -> None:
    """spatial_softmax and adaptive_pool_to against torch, at a run-time size other than the compiled one;
    a rank-3 input to spatial_softmax is refused with the op's rule."""
    spec = tmp_path / "ops.yaml"
    spec.write_text(
        "archc: 1\ninputs: {x: [B, 4, 9, 7], y: [B, 4, 4, 3]}\ngraph:\n"
        "  - s: {op: spatial_softmax, in: x, rescale: true}\n"
        "  - t: {op: spatial_softmax, in: x}\n"
        "  - m: {op: adaptive_pool_to, in: [x, y]}\n"
        "  - a: {op: adaptive_pool_to, in: [x, y], mode: avg}\n"
        "outputs: {s: s, t: t, m: m, a: a}\n")
    res = compile_spec(spec, CompileOptions())
    model = import_source(res.source, tmp_path).create_model()
    x, y = torch.randn(2, 4, 11, 6), torch.randn(2, 4, 5, 4)
    out = model(x, y)
    soft = F.softmax(x.flatten(2), -1).view_as(x)
    torch.testing.assert_close(out["t"], soft)
    torch.testing.assert_close(out["s"], soft * 66)
    torch.testing.assert_close(out["m"], F.adaptive_max_pool2d(x, (5, 4)))
    torch.testing.assert_close(out["a"], F.adaptive_avg_pool2d(x, (5, 4)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\ninputs: {x: [B, 4, 9]}\ngraph:\n  - s: {op: spatial_softmax, in: x}\n")
    with pytest.raises(ArchcError, match="spatial_softmax.*NCHW"):
        compile_spec(bad, CompileOptions())


@pytest.mark.parametrize("stride,dilation,groups,hw", [(1, 1, 1, (7, 6)), (2, 1, 2, (9, 7)), (1, 2, 3, (8, 1))])
def test_deform_conv2d_op(stride: int, dilation: int, groups: int, hw: tuple[int, int], tmp_path: Path) -> None:
    """deform_conv2d against the definition with offsets of several pixels (many reads fall outside the map,
    one case is a single column wide), and with zero offsets and a mask of ones against the plain conv;
    analytic params and MACs equal the module's; a wrong offset shape is refused in one line."""
    h, w = hw
    taps = groups * 9
    spec = tmp_path / "dcn.yaml"
    spec.write_text(
        f"archc: 1\ninputs: {{x: [B, 6, {h}, {w}]}}\ngraph:\n"
        f"  - offsets: {{op: conv2d, in: x, out: {3 * taps}, kernel: 3, stride: {stride}, dilation: {dilation}}}\n"
        f"  - parts: {{op: split, sizes: [{2 * taps}, {taps}]}}\n"
        f"  - mask: {{op: sigmoid, in: parts.1}}\n"
        f"  - dcn: {{op: deform_conv2d, in: [x, parts.0, mask], out: 5, stride: {stride}, dilation: {dilation},"
        f" deform_groups: {groups}}}\n")
    res = compile_spec(spec, CompileOptions())
    model = import_source(res.source, tmp_path).create_model().double().eval()
    assert sum(p.numel() for p in model.parameters()) == res.cost.params == 6 * 3 * taps * 9 + 3 * taps + 5 * 6 * 9 + 5
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype))
    x = torch.randn(2, 6, h, w, dtype=torch.float64, generator=gen)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        got = model(x)
    assert fc.get_total_flops() // 2 == 2 * res.cost.macs
    dcn = model.dcn
    with torch.no_grad():
        o1, m = torch.split(model.offsets(x), [2 * taps, taps], dim=1)
        assert o1.abs().max() > 3  # offsets of several pixels
        want = deform_by_definition(x, o1, torch.sigmoid(m), dcn.weight, stride, dilation, dilation, groups)
        want = want + dcn.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        plain = dcn(x, torch.zeros_like(o1), torch.ones_like(m))
        torch.testing.assert_close(plain, F.conv2d(x, dcn.weight, dcn.bias, stride, dilation, dilation),
                                   rtol=1e-12, atol=1e-12)
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\ninputs: {x: [B, 4, 6, 6], o: [B, 9, 6, 6], m: [B, 9, 6, 6]}\ngraph:\n"
                   "  - dcn: {op: deform_conv2d, in: [x, o, m], out: 4}\n")
    with pytest.raises(ArchcError, match="offset must be \\(B, 18, 6, 6\\)"):
        compile_spec(bad, CompileOptions())
