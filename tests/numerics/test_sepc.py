"""specs/sepc.yaml against an independent RetinaNet FPN + SEPC neck (iBN setting, no deformable conv), float64.

The reference follows the semantics of SEPC's neck (jshilong/SEPC, ``sepc/self_mmdet/models/necks/sepc.py``)
and mmdetection's FPN as the RetinaNet configs use them, with the official module names, so the test also
states how an official checkpoint's keys map onto archc's module:

* PConv, per level l: ``Pconv[1](x_l) + Pconv[2](x_{l-1}) (stride 2) + upsample_bilinear(Pconv[0](x_{l+1}))``
  (``F.upsample_bilinear`` is bilinear with align_corners=True) to level l's size; every conv has a bias;
* iBN: levels viewed as (N, C, 1, H·W), concatenated on the last axis, one BatchNorm, split back;
* four PConvs (``Pconv_num=4``), then ``cconv``/``lconv`` with ``cbn``/``lbn`` and ReLU.

Parameter count of the official iBN RetinaNet neck + ResNet-50 body (``sepc/exp/retina/ibn_retinanet.py``):
ResNet-50 without fc 23,508,032 + FPN 7,997,440 + SEPC 8,264,192 = 39,769,664; the PConv-only config
(``pconv_retinanet.py``, iBN=False) has no BatchNorm in the neck: 39,766,592.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, compile_spec
from archc.weights.api import map_checkpoint
from tests.artifact import import_source
from tests.numerics.exact import mapped_pair
from tests.numerics.test_fpn import ConvBN, Stage

SPEC = Path(__file__).resolve().parents[2] / "specs" / "sepc.yaml"
PARAMS = {"retinanet_r50": 39_769_664, "retinanet_r50_pconv": 39_766_592}
torch.set_num_threads(1)


def ibn(levels: list[torch.Tensor], bn: nn.BatchNorm2d | None) -> list[torch.Tensor]:
    """One BatchNorm over the flattened levels side by side, then back to each level's shape."""
    if bn is None:  # iBN=False
        return levels
    n, c = levels[0].shape[:2]
    joined = bn(torch.cat([x.view(n, c, 1, -1) for x in levels], dim=-1))
    parts = torch.split(joined, [x.shape[2] * x.shape[3] for x in levels], dim=-1)
    return [p.view(x.shape) for p, x in zip(parts, levels)]


class PConvRef(nn.Module):
    def __init__(self, c: int = 256, with_ibn: bool = True) -> None:
        super().__init__()
        # official order: [0] on the coarser level (then upsampled), [1] on the level, [2] stride 2 on the finer
        self.Pconv = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1),
                                    nn.Conv2d(c, c, 3, stride=2, padding=1)])
        self.bn = nn.BatchNorm2d(c) if with_ibn else None

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for lvl, x in enumerate(xs):
            y = self.Pconv[1](x)
            if lvl > 0:
                y = y + self.Pconv[2](xs[lvl - 1])
            if lvl < len(xs) - 1:
                y = y + F.interpolate(self.Pconv[0](xs[lvl + 1]), size=y.shape[2:], mode="bilinear", align_corners=True)
            out.append(y)
        return [F.relu(y) for y in ibn(out, self.bn)]


class RetinaSEPC(nn.Module):
    def __init__(self, c: int = 256, with_ibn: bool = True) -> None:
        super().__init__()
        self.stem = ConvBN(3, 64, 7, 2)
        chans = [256, 512, 1024, 2048]
        for i, depth in enumerate((3, 4, 6, 3)):
            setattr(self, f"layer{i + 1}", Stage("bottleneck", 64 if i == 0 else chans[i - 1], 64 * 2 ** i, chans[i],
                                                 depth, 1 if i == 0 else 2))
        self.lateral_convs = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in chans[1:]])
        self.fpn_convs = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(3)]
                                       + [nn.Conv2d(2048, c, 3, 2, 1), nn.Conv2d(c, c, 3, 2, 1)])
        self.Pconvs = nn.ModuleList([PConvRef(c, with_ibn) for _ in range(4)])
        # registered in sepc.py's order (lconv, cconv, lbn, cbn): an official state dict lists them so
        self.lconv, self.cconv = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.lbn = nn.BatchNorm2d(c) if with_ibn else None
        self.cbn = nn.BatchNorm2d(c) if with_ibn else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        feats = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats[1:])]
        for i in (2, 1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        outs = [self.fpn_convs[i](lat[i]) for i in range(3)]
        outs.append(self.fpn_convs[3](feats[3]))  # extra convs on the inputs: P6 from C5
        outs.append(self.fpn_convs[4](outs[-1]))  # relu_before_extra_convs=False
        for pconv in self.Pconvs:
            outs = pconv(outs)
        cls = [F.relu(y) for y in ibn([self.cconv(o) for o in outs], self.cbn)]
        loc = [F.relu(y) for y in ibn([self.lconv(o) for o in outs], self.lbn)]
        return {k: v for lvl in range(5) for k, v in ((f"p{lvl + 3}_cls", cls[lvl]), (f"p{lvl + 3}_loc", loc[lvl]))}


def official_to_archc(key: str) -> str:
    """Key of the reference (official neck names) → key of archc's module."""
    parts = key.split(".")
    if parts[0] == "lateral_convs":
        return f"lateral{int(parts[1]) + 3}.{parts[2]}"
    if parts[0] == "fpn_convs":
        return f"p{int(parts[1]) + 3}.{parts[2]}"
    if parts[0] == "Pconvs":
        block = f"pconv{int(parts[1]) + 1}"
        if parts[2] == "bn":
            return f"{block}.norm.{parts[3]}"
        return f"{block}.{('up', 'same', 'down')[int(parts[3])]}.{parts[4]}"
    if parts[0] in ("cconv", "lconv", "cbn", "lbn"):
        return f"head.{key}"
    return key  # the backbone's names are the same


def _pair(h: int, w: int, tmp_path: Path, variant: str = "retinanet_r50") -> tuple[nn.Module, nn.Module, object]:
    ref = RetinaSEPC(with_ibn=variant == "retinanet_r50").double()
    options = CompileOptions(variant=variant, params=[f"img_h={h}", f"img_w={w}"])
    model, res = mapped_pair(SPEC, options, ref, official_to_archc, PARAMS[variant], tmp_path)
    return model, ref, res


def _close(got: dict, want: dict) -> None:
    assert list(got) == list(want) == [f"p{lvl}_{k}" for lvl in range(3, 8) for k in ("cls", "loc")]
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert ((got[k] - want[k]).abs().max() / want[k].abs().max()).item() <= 1e-12, k


@pytest.mark.parametrize("h,w,variant", [(160, 128, "retinanet_r50"), (96, 96, "retinanet_r50"),
                                         (96, 96, "retinanet_r50_pconv")])
def test_sepc_matches_reference(h: int, w: int, variant: str, tmp_path: Path) -> None:
    model, ref, res = _pair(h, w, tmp_path, variant)
    model.eval()
    ref.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, h, w, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        got, want = model(x), ref(x)
    _close(got, want)
    assert [tuple(v.shape[1:]) for v in got.values()] == [t.concrete(1)[1:] for t in res.graph.output_types]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() // 2 == res.cost.macs


def test_sepc_other_input_size_and_train_mode_ibn(tmp_path: Path) -> None:
    """A module compiled at one size runs at another (sizes follow the levels), and in training the
    integrated BN takes one set of batch statistics over all levels, as the reference does."""
    model, ref, _ = _pair(96, 96, tmp_path)
    model.train()
    ref.train()
    x = torch.randn(2, 3, 100, 72, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got, want = model(x), ref(x)
    _close(got, want)
    assert torch.allclose(model.state_dict()["pconv2.norm.running_var"], ref.state_dict()["Pconvs.1.bn.running_var"],
                          rtol=1e-12, atol=0)
    assert int(model.state_dict()["head.cbn.num_batches_tracked"]) == 1


def test_sepc_scripts_and_exports(tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions(params=["img_h=64", "img_w=64"]))
    model = import_source(res.source, tmp_path).create_model().eval()
    x = torch.randn(1, 3, 80, 64)
    scripted = torch.jit.script(model)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        want = model(x)
        for got in (scripted(x), exported(x)):
            assert list(got) == list(want)
            for k in want:
                torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_reference_checkpoint_maps_by_structure(tmp_path: Path) -> None:
    """A checkpoint in the official layout (mmdetection's backbone. / neck.0 FPN / neck.1 SEPC names) maps
    onto the module by structure alone (archc weights) and gives the reference's outputs."""
    ref = RetinaSEPC().double().eval()
    gen = torch.Generator().manual_seed(3)
    ckpt = {}
    with torch.no_grad():
        for key, t in ref.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5 if "running_var" in key
                        else torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.05)
            if key.startswith(("stem", "layer")):
                ckpt[f"backbone.{key}"] = t.clone()
            elif key.startswith(("lateral_convs", "fpn_convs")):
                kind, i, suffix = key.split(".")
                ckpt[f"neck.0.{kind}.{i}.conv.{suffix}"] = t.clone()
            else:
                ckpt[f"neck.1.{key}"] = t.clone()
    mapped = map_checkpoint(SPEC, ckpt, params=["img=64"])
    assert mapped.map.complete
    res = compile_spec(SPEC, CompileOptions(params=["img=96"]))
    model = import_source(res.source, tmp_path).create_model().double().eval()
    model.load_state_dict(mapped.state)
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        _close(model(x), ref(x))
