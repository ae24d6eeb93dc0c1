"""specs/hornet.yaml variant tiny_gf (HorNet-T-GF) against an independent HorNet with the GlobalLocalFilter.

The reference below is written from the paper and the published module layout of the official HorNet
code (raoyongming/HorNet, hornet.py: GlobalLocalFilter, gnconv, Block, HorNet, hornet_tiny_gf), not from
archc: the two halves are stacked on a new axis and flattened to interleave them, the complex filter is
multiplied as a complex tensor, and the filter is resized in the official (2, C, h, w) layout. Its
parameter names are the official ones, so the key map below also maps an official checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archc.cli import main
from archc.compiler import CompileOptions, compile_spec
from tests.artifact import import_source
from tests.numerics.exact import assert_exact, counted_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "hornet.yaml"
torch.set_num_threads(1)

#: hornet_tiny_gf's parameter count: the reference below built with the official config
#: (base_dim 64, depths [2, 3, 18, 2], orders 2..5, s = 1/3, GF on stages 3 and 4 with (h, w) = (14, 8), (7, 4))
OFFICIAL_TINY_GF_PARAMS = 22_991_848


class ChannelsFirstLN(nn.Module):
    """LayerNorm over axis 1 of NCHW, written out as the official channels_first branch does."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mu) / torch.sqrt(var + 1e-6) + self.bias[:, None, None]


class GlobalLocalFilter(nn.Module):
    def __init__(self, dim: int, h: int, w: int) -> None:
        super().__init__()
        half = dim // 2
        self.dw = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.complex_weight = nn.Parameter(torch.zeros(half, h, w, 2))
        self.pre_norm = ChannelsFirstLN(dim)
        self.post_norm = ChannelsFirstLN(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        half = x.shape[1] // 2
        local, glob = self.dw(x[:, :half]), x[:, half:]
        spec = torch.fft.rfft2(glob, dim=(2, 3), norm="ortho")
        wt = self.complex_weight
        if tuple(wt.shape[1:3]) != tuple(spec.shape[2:4]):
            wt = F.interpolate(wt.permute(3, 0, 1, 2), size=spec.shape[2:4], mode="bilinear", align_corners=True)
            wt = wt.permute(1, 2, 3, 0)
        spec = spec * torch.complex(wt[..., 0], wt[..., 1])
        glob = torch.fft.irfft2(spec, s=x.shape[2:], dim=(2, 3), norm="ortho")
        return self.post_norm(torch.stack([local, glob], 2).flatten(1, 2))


class GnConv(nn.Module):
    def __init__(self, dim: int, order: int, s: float, gf: tuple[int, int] | None) -> None:
        super().__init__()
        self.dims = [dim // 2**k for k in reversed(range(order))]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        total = sum(self.dims)
        self.dwconv = GlobalLocalFilter(total, *gf) if gf else nn.Conv2d(total, total, 7, padding=3, groups=total)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(self.dims, self.dims[1:]))
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pwa, abc = self.proj_in(x).split([self.dims[0], sum(self.dims)], 1)
        gates = (self.dwconv(abc) * self.s).split(self.dims, 1)
        y = pwa * gates[0]
        for pw, g in zip(self.pws, gates[1:]):
            y = pw(y) * g
        return self.proj_out(y)


class Block(nn.Module):
    def __init__(self, dim: int, order: int, s: float, gf: tuple[int, int] | None) -> None:
        super().__init__()
        self.norm1 = ChannelsFirstLN(dim)
        self.gnconv = GnConv(dim, order, s, gf)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1[:, None, None] * self.gnconv(self.norm1(x))
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


class HorNet(nn.Module):
    def __init__(self, base_dim: int = 64, depths: tuple[int, ...] = (2, 3, 18, 2),
                 gf: tuple[tuple[int, int] | None, ...] = (None, None, (14, 8), (7, 4)), num_classes: int = 1000) -> None:
        super().__init__()
        dims = [base_dim * 2**i for i in range(4)]
        down = [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), ChannelsFirstLN(dims[0]))]
        down += [nn.Sequential(ChannelsFirstLN(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)) for i in range(3)]
        self.downsample_layers = nn.ModuleList(down)
        self.stages = nn.ModuleList(
            nn.Sequential(*(Block(dims[i], i + 2, 1.0 / 3.0, gf[i]) for _ in range(depths[i]))) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean((2, 3))))


_RENAMES = [  # archc key fragment → the official one, applied in order
    ("stem.conv.", "downsample_layers.0.0."), ("stem.norm.ln.", "downsample_layers.0.1."),
    (".gnconv.gflayer.", ".gnconv.dwconv."), (".mlp.norm.", ".norm2."), (".mlp.fc1.", ".pwconv1."),
    (".mlp.fc2.", ".pwconv2."), (".mlp.gamma.gamma", ".gamma2"), (".gamma1.gamma", ".gamma1"),
    ("head.norm.", "norm."), ("head.fc.", "head."), (".blocks.", "."),
]


def official_key(ours: str) -> str:
    """archc's state-dict key of specs/hornet.yaml → the official HorNet's."""
    if ours.startswith("stages.") and ".down." in ours:  # stages.i.down.{norm.ln,conv} → downsample_layers.i.{0,1}
        i = ours.split(".")[1]
        return ours.replace(f"stages.{i}.down.norm.ln.", f"downsample_layers.{i}.0.").replace(
            f"stages.{i}.down.conv.", f"downsample_layers.{i}.1.")
    for a, b in _RENAMES:
        ours = ours.replace(a, b)
    return ours.replace(".pw.", ".")  # gnconv.pws.k.pw.weight → gnconv.pws.k.weight


def _compare(params: list[str], ref: HorNet, img: int, batch: int, tmp_path: Path) -> tuple:
    res = compile_spec(SPEC, CompileOptions(variant="tiny_gf", params=params))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = ref.eval().double()
    theirs, ours = ref.state_dict(), model.state_dict()
    assert sorted(official_key(k) for k in ours) == sorted(theirs)
    assert sum(p.numel() for p in model.parameters()) == res.cost.params == sum(p.numel() for p in ref.parameters())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in theirs.values():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.2)
        model.load_state_dict({k: theirs[official_key(k)] for k in ours})
    x = torch.randn(batch, 3, img, img, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_exact(model, ref, x)
    assert counted_macs(model, x[:1]) == res.cost.macs  # the FFTs are outside both counts
    return res, model


def test_tiny_gf_full_size_matches_official_layout(tmp_path: Path) -> None:
    """224 px: the stored filters are exactly the spectra's size (14×8, 7×4), so no resize is emitted."""
    res, _ = _compare([], HorNet(), 224, 1, tmp_path)
    assert res.cost.params == OFFICIAL_TINY_GF_PARAMS
    assert "F.interpolate" not in res.source
    assert set(res.cost.uncosted) == {"rfft2", "irfft2"}


@pytest.mark.parametrize("img", [64, 97])
def test_filter_resized_to_other_sizes(img: int, tmp_path: Path) -> None:
    """Off the native size the (14, 8) and (7, 4) filters are resized bilinearly to each spectrum (odd sides too)."""
    params = [f"img={img}", "depths=[1,1,2,1]", "base_dim=32", "num_classes=10"]
    ref = HorNet(32, (1, 1, 2, 1), num_classes=10)
    res, model = _compare(params, ref, img, 2, tmp_path)
    assert "F.interpolate" in res.source
    model = model.float()
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), want, rtol=1e-5, atol=1e-5)


def test_stored_filter_of_another_size(tmp_path: Path) -> None:
    """gf_size chooses the stored (h, w); one equal to the spectrum (4×3 at 64 px, stage 3) skips the resize."""
    params = ["img=64", "depths=[1,1,1,1]", "base_dim=32", "num_classes=10", "gf=[true,false,true,true]",
              "gf_size=[[16,9],[14,8],[4,3],[5,5]]"]
    ref = HorNet(32, (1, 1, 1, 1), gf=((16, 9), None, (4, 3), (5, 5)), num_classes=10)
    res, _ = _compare(params, ref, 64, 1, tmp_path)
    assert res.source.count("F.interpolate") == 1  # only stage 4 (5×5 → 2×2); stage 1 is 16×9 natively


@pytest.mark.parametrize("target,suffix", [("onnx", "onnx"), ("torchscript", "pt")])
def test_gf_compiles_to_deploy_targets(target: str, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FFTs and the resized filter lower to ONNX (opset 18 DFT) and TorchScript; the compile checks the artifact."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"gf.{suffix}"
    args = ["-q", "compile", str(SPEC), "--variant", "tiny_gf", "-p", "img=64", "-p", "depths=[1,1,1,1]",
            "-p", "base_dim=32", "--target", target, "-o", str(out)]
    assert main(args) == 0
    assert out.stat().st_size > 0
