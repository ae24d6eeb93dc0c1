"""specs/fpn.yaml against an independent ResNet + feature pyramid (torchvision's FPN algorithm), float64.

The reference builds the top-down path the way torchvision's FeaturePyramidNetwork does (lateral 1×1,
nearest resize to the lateral map's size, add, 3×3 output conv, P6 = max_pool2d(P5, 1, 2)) and returns
the levels by name; archc's module must return the same dict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc.compiler import CompileOptions, compile_spec
from tests.artifact import import_source

SPEC = Path(__file__).resolve().parents[2] / "specs" / "fpn.yaml"
torch.set_num_threads(1)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu(y) if self.act else y


class Block(nn.Module):
    def __init__(self, kind: str, cin: int, planes: int, cout: int, s: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bottleneck":
            self.conv1, self.conv2 = ConvBN(cin, planes, 1), ConvBN(planes, planes, 3, s)
            self.conv3 = ConvBN(planes, cout, 1, act=False)
        else:
            self.conv1, self.conv2 = ConvBN(cin, planes, 3, s), ConvBN(planes, cout, 3, act=False)
        self.downsample = ConvBN(cin, cout, 1, s, act=False) if s != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        if self.kind == "bottleneck":
            y = self.conv3(y)
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Stage(nn.Module):
    def __init__(self, kind: str, cin: int, planes: int, cout: int, depth: int, s: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(kind, cin if i == 0 else cout, planes, cout, s if i == 0 else 1)
                                      for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetFPN(nn.Module):
    def __init__(self, kind: str, depths: tuple[int, ...], width: int = 256) -> None:
        super().__init__()
        e = 4 if kind == "bottleneck" else 1
        self.stem = ConvBN(3, 64, 7, 2)
        chans = [64 * e, 128 * e, 256 * e, 512 * e]
        for i in range(4):
            cin = 64 if i == 0 else chans[i - 1]
            setattr(self, f"layer{i + 1}", Stage(kind, cin, 64 * 2 ** i, chans[i], depths[i], 1 if i == 0 else 2))
        for i in range(4):
            setattr(self, f"inner{i + 1}", nn.Conv2d(chans[i], width, 1))
        for i in range(4):
            setattr(self, f"p{i + 2}", nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        feats = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        last = self.inner4(feats[3])
        results = [self.p5(last)]
        for i in (2, 1, 0):
            lateral = getattr(self, f"inner{i + 1}")(feats[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, getattr(self, f"p{i + 2}")(last))
        names = ["p2", "p3", "p4", "p5"]
        out = dict(zip(names, results))
        out["pool"] = F.max_pool2d(results[-1], 1, 2, 0)
        return out


def _check(variant: str, kind: str, depths: tuple[int, ...], img: int, batch: int, tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions(variant=variant, params=[f"img={img}"]))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = ResNetFPN(kind, depths).eval().double()
    assert sum(p.numel() for p in model.parameters()) == res.cost.params == sum(p.numel() for p in ref.parameters())
    gen = torch.Generator().manual_seed(0)
    theirs = ref.state_dict()
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                v = torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5 if "running_var" in key else \
                    torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.1
                t.copy_(v)
            theirs[key].copy_(t)
    x = torch.randn(batch, 3, img, img, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        got, want = model(x), ref(x)
    assert list(got) == list(want) == ["p2", "p3", "p4", "p5", "pool"]
    for k in want:
        assert got[k].shape == want[k].shape
        assert ((got[k] - want[k]).abs().max() / want[k].abs().max()).item() <= 1e-12, k
    assert [tuple(v.shape[1:]) for v in got.values()] == [t.concrete(1)[1:] for t in res.graph.output_types]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x[:1])
    assert fc.get_total_flops() // 2 == res.cost.macs


def test_resnet50_fpn_matches_reference(tmp_path: Path) -> None:
    _check("resnet50", "bottleneck", (3, 4, 6, 3), 224, 1, tmp_path)


@pytest.mark.parametrize("img", [200, 97])
def test_resnet18_fpn_odd_sizes_resize_to_the_lateral_map(img: int, tmp_path: Path) -> None:
    _check("resnet18", "basic_block", (2, 2, 2, 2), img, 2, tmp_path)
