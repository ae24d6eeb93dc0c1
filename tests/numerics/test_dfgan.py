"""specs/dfgan.yaml against an independent DF-GAN generator (NetG of tobran/DF-GAN, official settings), float64.

The reference is written from NetG's semantics with its module names: fc → view(8·ngf, 4, 4); each
G_Block: nearest ×2, shortcut (1×1 conv c_sc when channels change) + c2(fuse2(c1(fuse1(x, cond)), cond));
DFBLK = affine0, LeakyReLU 0.2, affine1, LeakyReLU 0.2; Affine = fc_gamma(y)·x + fc_beta(y) with
fc_* = Linear-ReLU-Linear; cond = cat(noise, sentence); to_rgb = LeakyReLU 0.2, conv 3×3, tanh. archc's
parameter names equal NetG's except ``to_rgb.1`` → ``to_rgb_conv``. Official settings (code/cfg/bird.yml,
coco.yml): nf 32, z_dim 100, cond_dim 256, imsize 256 → 9,744,131 params.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archc.compiler import CompileOptions, compile_spec
from archc.weights.api import map_checkpoint
from tests.artifact import import_source
from tests.numerics.exact import counted_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "dfgan.yaml"
PARAMS_256 = 9_744_131
torch.set_num_threads(1)


class Mlp(nn.Module):
    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(cin, c), nn.Linear(c, c)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(y)))


class Affine(nn.Module):
    def __init__(self, cond: int, c: int) -> None:
        super().__init__()
        self.fc_gamma, self.fc_beta = Mlp(cond, c), Mlp(cond, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc_gamma(y)[:, :, None, None].expand(x.shape) * x + self.fc_beta(y)[:, :, None, None].expand(x.shape)


class DFBlock(nn.Module):
    def __init__(self, cond: int, c: int) -> None:
        super().__init__()
        self.affine0, self.affine1 = Affine(cond, c), Affine(cond, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.affine1(F.leaky_relu(self.affine0(x, y), 0.2), y), 0.2)


class GBlock(nn.Module):
    def __init__(self, cond: int, cin: int, cout: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.fuse1, self.fuse2 = DFBlock(cond, cin), DFBlock(cond, cout)
        self.c_sc = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2)
        short = self.c_sc(x) if self.c_sc is not None else x
        return short + self.c2(self.fuse2(self.c1(self.fuse1(x, y)), y))


class NetG(nn.Module):
    def __init__(self, ngf: int = 32, nz: int = 100, cond_dim: int = 256, imsize: int = 256) -> None:
        super().__init__()
        self.ngf = ngf
        self.fc = nn.Linear(nz, ngf * 8 * 4 * 4)
        levels = imsize.bit_length() - 2  # log2(imsize) - 1 channel counts, widest first
        chans = [ngf * min(2 ** k, 8) for k in range(levels)][::-1]
        self.GBlocks = nn.ModuleList([GBlock(nz + cond_dim, a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(chans[-1], 3, 3, 1, 1), nn.Tanh())

    def forward(self, noise: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = self.fc(noise).view(noise.shape[0], 8 * self.ngf, 4, 4)
        cond = torch.cat((noise, c), dim=1)
        for block in self.GBlocks:
            out = block(out, cond)
        return self.to_rgb(out)


def _archc_key(key: str) -> str:
    return key.replace("to_rgb.1.", "to_rgb_conv.")


@pytest.mark.parametrize("variant,imsize,batch", [("dfgan256", 256, 1), ("dfgan128", 128, 2)])
def test_dfgan_generator_matches_reference(variant: str, imsize: int, batch: int, tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions(variant=variant))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = NetG(imsize=imsize).eval().double()
    n = sum(p.numel() for p in model.parameters())
    assert n == res.cost.params == sum(p.numel() for p in ref.parameters())
    if imsize == 256:
        assert n == PARAMS_256
    ours, theirs = model.state_dict(), ref.state_dict()
    assert sorted(_archc_key(k) for k in theirs) == sorted(ours)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in theirs.items():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.05)
            ours[_archc_key(key)].copy_(t)
    noise = torch.randn(batch, 100, dtype=torch.float64, generator=gen)
    sentence = torch.randn(batch, 256, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        got, want = model(noise, sentence), ref(noise, sentence)
    assert got.shape == want.shape == (batch, 3, imsize, imsize)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12
    assert counted_macs(model, noise[:1], sentence[:1]) == res.cost.macs


def test_dfgan_scripts_and_exports(tmp_path: Path) -> None:
    res = compile_spec(SPEC, CompileOptions(variant="dfgan128"))
    model = import_source(res.source, tmp_path).create_model().eval()
    xs = (torch.randn(1, 100), torch.randn(1, 256))
    scripted = torch.jit.script(model)
    exported = torch.export.export(model, xs).module()
    with torch.no_grad():
        want = model(*xs)
        for got in (scripted(*xs), exported(*xs)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_netg_state_dict_maps_by_structure(tmp_path: Path) -> None:
    """NetG's state dict (as DF-GAN saves it, under DistributedDataParallel's 'module.' prefix) maps onto
    the module by structure (archc weights) and gives NetG's images."""
    ref = NetG(imsize=128).double().eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.05)
    ckpt = {f"module.{k}": v.clone() for k, v in ref.state_dict().items()}
    mapped = map_checkpoint(SPEC, ckpt, variant="dfgan128")
    assert mapped.map.complete
    model = import_source(compile_spec(SPEC, CompileOptions(variant="dfgan128")).source, tmp_path).create_model()
    model = model.double().eval()
    model.load_state_dict(mapped.state)
    noise = torch.randn(2, 100, dtype=torch.float64, generator=gen)
    sentence = torch.randn(2, 256, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        got, want = model(noise, sentence), ref(noise, sentence)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12
