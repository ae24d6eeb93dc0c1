"""specs/affnet.yaml against an independent AFFNet in plain PyTorch, laid out as the reference code's modules.

The reference below is written from the paper and the published structure of microsoft/TokenMixers
("Adaptive Frequency Filters": AffNet, AFFBlock, Block, AFNO2D_channelfirst, InvertedResidual, ConvLayer),
not from archc: the frequency MLP multiplies complex tensors with einsum over (2, blocks, in, out) weights,
the soft-shrink is F.softshrink, LayerNorm-2d is nn.GroupNorm(1, C). Its parameter names are the reference
code's, so ``reference_key`` + ``to_reference`` also convert a checkpoint of that code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archc.compiler import CompileOptions, compile_spec
from tests.artifact import import_source
from tests.numerics.exact import assert_exact, counted_macs

SPEC = Path(__file__).resolve().parents[2] / "specs" / "affnet.yaml"
torch.set_num_threads(1)

#: (widths of layers 1-5, expansion) of the reference code's modes; ffn_dim = 2·width, AFF depths 2, 4, 3
MODES = {"affnet": ((32, 64, 128, 256, 320), 4), "t": ((32, 48, 96, 160, 192), 4), "et": ((32, 48, 64, 104, 144), 2)}
#: the reference below built with each mode's config (the README rounds them: 5.5M, 2.6M, 1.4M)
REFERENCE_PARAMS = {"affnet": 5_568_696, "t": 2_654_232, "et": 1_436_264}


def _divisible(v: float, d: int = 8) -> int:
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.block = nn.Sequential()
        self.block.add_module("conv", nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False))
        self.block.add_module("norm", nn.BatchNorm2d(cout))
        if act:
            self.block.add_module("act", nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: float) -> None:
        super().__init__()
        hidden = _divisible(int(round(cin * expand)))
        self.block = nn.Sequential()
        if expand != 1:
            self.block.add_module("exp_1x1", ConvLayer(cin, hidden, 1))
        self.block.add_module("conv_3x3", ConvLayer(hidden, hidden, 3, stride, groups=hidden))
        self.block.add_module("red_1x1", ConvLayer(hidden, cout, 1, act=False))
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.shortcut else self.block(x)


class FrequencyFilter(nn.Module):
    """The AFNO-style adaptive frequency filter on NCHW features (eval semantics, no dtype casts)."""

    def __init__(self, dim: int, blocks: int = 8, lam: float = 0.01) -> None:
        super().__init__()
        self.blocks, self.bs, self.lam = blocks, dim // blocks, lam
        self.w1 = nn.Parameter(torch.zeros(2, blocks, self.bs, self.bs))
        self.b1 = nn.Parameter(torch.zeros(2, blocks, self.bs))
        self.w2 = nn.Parameter(torch.zeros(2, blocks, self.bs, self.bs))
        self.b2 = nn.Parameter(torch.zeros(2, blocks, self.bs))

    def _dense(self, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        wc = torch.complex(w[0], w[1])
        bc = torch.complex(b[0], b[1])[None, :, :, None, None]
        return torch.einsum("bkihw,kio->bkohw", z, wc) + bc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        spec = torch.fft.rfft2(x, dim=(2, 3), norm="ortho")
        z = spec.reshape(n, self.blocks, self.bs, h, w // 2 + 1)
        z = self._dense(z, self.w1, self.b1)
        z = torch.complex(F.silu(z.real), F.silu(z.imag))
        z = self._dense(z, self.w2, self.b2)
        mask = torch.complex(F.softshrink(z.real, self.lam), F.softshrink(z.imag, self.lam)).reshape(spec.shape)
        return torch.fft.irfft2(mask * spec, s=(h, w), dim=(2, 3), norm="ortho") + x


class Block(nn.Module):
    def __init__(self, dim: int, ffn: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.mlp = InvertedResidual(dim, dim, 1, ffn / dim)
        self.norm2 = nn.GroupNorm(1, dim)
        self.filter = FrequencyFilter(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.filter(self.norm2(self.mlp(self.norm1(x))))


class AFFBlock(nn.Module):
    def __init__(self, dim: int, ffn: int, depth: int) -> None:
        super().__init__()
        self.global_rep = nn.Sequential(*[Block(dim, ffn) for _ in range(depth)], nn.GroupNorm(1, dim))
        self.conv_proj = ConvLayer(dim, dim, 1, act=False)
        self.fusion = ConvLayer(2 * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([x, self.conv_proj(self.global_rep(x))], 1))


class AffNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], expand: int, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_1 = ConvLayer(3, 16, 3, 2)
        self.layer_1 = nn.Sequential(InvertedResidual(16, widths[0], 1, expand))
        self.layer_2 = nn.Sequential(*(InvertedResidual(widths[0] if j == 0 else widths[1], widths[1], 2 if j == 0 else 1,
                                                        expand) for j in range(3)))
        for i, depth in enumerate((2, 4, 3)):
            w = widths[i + 2]
            self.add_module(f"layer_{i + 3}", nn.Sequential(InvertedResidual(widths[i + 1], w, 2, expand), AFFBlock(w, 2 * w, depth)))
        exp = min(4 * widths[4], 960)
        self.conv_1x1_exp = ConvLayer(widths[4], exp, 1)
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc", nn.Linear(exp, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_2(self.layer_1(self.conv_1(x)))
        x = self.conv_1x1_exp(self.layer_5(self.layer_4(self.layer_3(x))))
        return self.classifier(x.mean((2, 3)))


def reference_key(ours: str, depths: tuple[int, ...] = (2, 4, 3)) -> str:
    """archc's state-dict key of specs/affnet.yaml → the reference code's (filter weights: see ``to_reference``)."""
    parts = ours.split(".")
    if parts[0] == "layers":  # layers.i.{down | global_rep.j | norm | conv_proj | fusion} → layer_{i+3}.{0 | 1.…}
        i, rest = int(parts[1]), parts[2:]
        if rest[0] == "down":
            parts = [f"layer_{i + 3}", "0", *rest[1:]]
        elif rest[0] == "norm":
            parts = [f"layer_{i + 3}", "1", "global_rep", str(depths[i]), *rest[1:]]
        else:
            parts = [f"layer_{i + 3}", "1", *rest]
    if parts[0] == "head":
        parts[0] = "classifier"
    out: list[str] = []
    for j, p in enumerate(parts):
        if p in ("exp_1x1", "conv_3x3", "red_1x1") and out[-1] != "block":
            out.append("block")  # the inverted residual's Sequential
        if p in ("conv", "bn") and j == len(parts) - 2:
            out += ["block", "conv" if p == "conv" else "norm"]
            continue
        out.append(p)
    key = ".".join(out)
    for layer in ("w1", "w2"):  # the frequency MLP: w_real/w_imag convs and a packed bias → w, b
        key = key.replace(f"filter.{layer}.w_real.weight", f"filter.{layer}").replace(f"filter.{layer}.w_imag.weight", f"filter.{layer}")
        key = key.replace(f"filter.{layer}.bias", f"filter.b{layer[1]}")
    return key


def to_reference(ours: str, theirs: torch.Tensor) -> torch.Tensor:
    """The reference tensor for archc key ``ours``, laid out as archc's (grouped 1×1 conv weight, (C, 1, 1, 2) bias)."""
    if ours.endswith((".w_real.weight", ".w_imag.weight")):
        part = theirs[0 if ours.endswith("w_real.weight") else 1]  # (blocks, in, out) → conv (blocks·out, in, 1, 1)
        return part.transpose(1, 2).reshape(-1, part.shape[1], 1, 1)
    if ".filter.w" in ours and ours.endswith(".bias"):  # (2, blocks, out) → (blocks·out, 1, 1, 2)
        return theirs.permute(1, 2, 0).reshape(-1, 1, 1, 2)
    return theirs.reshape(theirs.shape)


def _compare(variant: str, params: list[str], img: int, batch: int, tmp_path: Path, num_classes: int = 1000) -> tuple:
    res = compile_spec(SPEC, CompileOptions(variant=variant, params=params))
    model = import_source(res.source, tmp_path).create_model().eval().double()
    ref = AffNet(*MODES[variant], num_classes=num_classes).eval().double()
    theirs, ours = ref.state_dict(), model.state_dict()
    assert {reference_key(k) for k in ours} == set(theirs)
    assert sum(p.numel() for p in model.parameters()) == res.cost.params == sum(p.numel() for p in ref.parameters())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in theirs.items():
            if key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
            elif not key.endswith("num_batches_tracked"):
                t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * (0.02 if ".filter." in key else 0.2))
        model.load_state_dict({k: to_reference(k, theirs[reference_key(k)]) for k in ours})
    x = torch.randn(batch, 3, img, img, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_exact(model, ref, x)
    assert counted_macs(model, x[:1]) == res.cost.macs  # the FFTs are outside both counts
    return res, model


def test_reference_key_names_the_reference_layout() -> None:
    assert reference_key("conv_1.bn.running_var") == "conv_1.block.norm.running_var"
    assert reference_key("layer_2.1.conv_3x3.conv.weight") == "layer_2.1.block.conv_3x3.block.conv.weight"
    assert reference_key("layers.1.norm.weight") == "layer_4.1.global_rep.4.weight"
    assert reference_key("layers.0.global_rep.1.filter.w2.w_imag.weight") == "layer_3.1.global_rep.1.filter.w2"
    assert reference_key("layers.2.global_rep.0.filter.w1.bias") == "layer_5.1.global_rep.0.filter.b1"
    assert reference_key("layers.2.global_rep.0.mlp.red_1x1.bn.bias") == "layer_5.1.global_rep.0.mlp.block.red_1x1.block.norm.bias"
    assert reference_key("head.fc.weight") == "classifier.fc.weight"


@pytest.mark.parametrize("variant", ["affnet", "t", "et"])
def test_full_size_matches_reference(variant: str, tmp_path: Path) -> None:
    res, _ = _compare(variant, [], 256, 1, tmp_path)
    assert res.cost.params == REFERENCE_PARAMS[variant]
    assert set(res.cost.uncosted) == {"rfft2", "irfft2"}


@pytest.mark.parametrize("img", [97, 64])
def test_other_sizes_script_and_export(img: int, tmp_path: Path) -> None:
    """Odd sides (97 → 13, 7, 4 in layers 3-5) and a batch of 2; the float module scripts and exports."""
    _, model = _compare("et", [f"img={img}", "num_classes=10"], img, 2, tmp_path, num_classes=10)
    model = model.float()
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), want, rtol=1e-5, atol=1e-5)
