"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) in plain PyTorch, no compiled kernel.

Inputs: ``x`` (B, C, H, W), ``offset`` (B, 2·G·K, Ho, Wo) and ``mask`` (B, G·K, Ho, Wo), with K = k_h·k_w
taps and G deformable groups (channel c belongs to group ⌊c·G/C⌋). The layout is the one of the DCN
kernels (mmcv's ModulatedDeformConv2d, torchvision's deform_conv2d): for group g and tap t = p·k_w + q,
offset channel 2(g·K + t) is the row shift Δy and the next one the column shift Δx; mask channel
g·K + t scales that tap::

    y[b, o, i, j] = bias[o] + Σ_{c, p, q} w[o, c, p, q] · m[b, g(c)·K + t, i, j]
                    · bilinear(x[b, c], i·s_h − pad_h + p·d_h + Δy, j·s_w − pad_w + q·d_w + Δx)

where bilinear reads zero outside the map (each of the four corners separately, as the DCN kernels do).
With zero offsets and a mask of ones it is the ordinary convolution. In DCNv2 the offsets and the mask
come from a plain conv of x (mask through a sigmoid); a spec writes that conv, its split and the sigmoid.

Lowering: a gather of the four corners per tap, then one matmul of the weights with the sampled columns,
so FlopCounterMode counts exactly the conv's MACs, O·C·k_h·k_w·Ho·Wo per sample (the interpolation is
elementwise and not counted, as ``resize`` is not). Memory: the sampled columns hold C·K·Ho·Wo values
per sample (an im2col), four times over while the corners are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register
from archc.ops.pool import pool_out

__all__ = ["DeformConv2d"]


class DeformConv2d(Op):
    """DCNv2: a k×k conv whose taps are read at learned fractional offsets, each scaled by a learned mask."""

    name = "deform_conv2d"
    doc = ("Modulated deformable conv (DCNv2) over NCHW in plain PyTorch: inputs x, offset (B, 2·G·k², Ho, Wo) in "
           "the DCN (Δy, Δx) layout, mask (B, G·k², Ho, Wo); G deformable groups.")
    arity = (3, 3)
    counts_activations = True
    attrs = (
        Attr("out", "int", doc="output channels", min=1),
        Attr("kernel", "pair", 3, "kernel size", min=1),
        Attr("stride", "pair", 1, min=1),
        Attr("padding", "pair", None, "zero padding (default dilation·(k−1)/2)", min=0),
        Attr("dilation", "pair", 1, min=1),
        Attr("deform_groups", "int", 1, "groups of input channels that share offsets and mask", min=1),
        Attr("bias", "bool", True),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["padding"] is None:
            a["padding"] = tuple(d * (k - 1) // 2 for d, k in zip(a["dilation"], a["kernel"]))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, offset, mask = ins
        for t, what in ((x, "input x"), (offset, "offset"), (mask, "mask")):
            if t.rank != 4:
                raise OpCheckError(f"'{self.name}' expects an NCHW {what}, got {t}")
        c, g = dim_int(x.shape[1]), a["deform_groups"]
        if c % g:
            raise OpCheckError(f"'{self.name}': deform_groups={g} must divide the {c} input channels", "deform_groups")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
        ho = pool_out(dim_int(x.shape[2]), kh, sh, ph, dh, False)
        wo = pool_out(dim_int(x.shape[3]), kw, sw, pw, dw, False)
        if ho < 1 or wo < 1:
            raise OpCheckError(f"'{self.name}': input {x} is too small for kernel {a['kernel']} (output {ho}x{wo})",
                               "kernel")
        taps = g * kh * kw
        for t, what, n in ((offset, "offset", 2 * taps), (mask, "mask", taps)):
            if dim_int(t.shape[1]) != n or (dim_int(t.shape[2]), dim_int(t.shape[3])) != (ho, wo):
                raise OpCheckError(
                    f"'{self.name}' {what} must be (B, {n}, {ho}, {wo}) for {g} group(s) of {kh}x{kw} taps over "
                    f"{x}, got {t}", hint=f"make the {what} with a conv of {n} output channels and this op's stride")
        return [x.with_shape((x.shape[0], a["out"], ho, wo))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        kh, kw = a["kernel"]
        p = {"weight": (a["out"], dim_int(ins[0].shape[1]), kh, kw)}
        if a["bias"]:
            p["bias"] = (a["out"],)
        return p

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        kh, kw = a["kernel"]
        o = outs[0]
        return a["out"] * dim_int(ins[0].shape[1]) * kh * kw * dim_int(o.shape[2]) * dim_int(o.shape[3])

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        call = Call("DeformConv2d", (dim_int(ins[0].shape[1]), a["out"], list(a["kernel"])),
                    {"stride": list(a["stride"]), "padding": list(a["padding"]), "dilation": list(a["dilation"]),
                     "deform_groups": a["deform_groups"], "bias": a["bias"]},
                    defaults={"stride": [1, 1], "dilation": [1, 1], "deform_groups": 1, "bias": True},
                    names=("in_channels", "out_channels", "kernel_size"))
        return Lowering(call, "{m}({0}, {1}, {2})", helpers=("DeformConv2d",))


register(DeformConv2d)

helper(
    "DeformConv2d",
    '''
class DeformConv2d(nn.Module):
    """Modulated deformable conv (DCNv2) in plain PyTorch; offset (B, 2*G*K, Ho, Wo) holds (dy, dx) per group
    and tap, mask (B, G*K, Ho, Wo) scales each tap; bilinear reads are zero outside the map."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: List[int], stride: List[int] = [1, 1],
                 padding: List[int] = [0, 0], dilation: List[int] = [1, 1], deform_groups: int = 1,
                 bias: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size[0], kernel_size[1]))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        G = self.deform_groups
        kh, kw = self.kernel_size[0], self.kernel_size[1]
        K = kh * kw
        Ho, Wo = offset.shape[2], offset.shape[3]
        off = offset.reshape(B, G, K, 2, Ho, Wo)
        # where each tap reads without offsets: output row/column times stride, minus padding, plus the tap
        taps = torch.arange(K, device=x.device)
        rows = (torch.arange(Ho, device=x.device) * self.stride[0] - self.padding[0]).to(x.dtype)
        cols = (torch.arange(Wo, device=x.device) * self.stride[1] - self.padding[1]).to(x.dtype)
        tap_y = ((taps // kw) * self.dilation[0]).to(x.dtype).view(K, 1, 1)
        tap_x = ((taps % kw) * self.dilation[1]).to(x.dtype).view(K, 1, 1)
        y = off[:, :, :, 0] + (tap_y + rows.view(1, Ho, 1))  # (B, G, K, Ho, Wo)
        xs = off[:, :, :, 1] + (tap_x + cols.view(1, 1, Wo))
        y0 = torch.floor(y)
        x0 = torch.floor(xs)
        fy = y - y0
        fx = xs - x0
        src = x.reshape(B, G, C // G, H * W)
        sampled = torch.zeros(B, G, C // G, K * Ho * Wo, dtype=x.dtype, device=x.device)
        for dy in range(2):
            for dx in range(2):
                yy = y0 + dy
                xx = x0 + dx
                wy = fy if dy == 1 else 1.0 - fy
                wx = fx if dx == 1 else 1.0 - fx
                # each corner outside the map reads zero (the DCN kernels' rule)
                inside = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
                wgt = (wy * wx * inside.to(x.dtype)).reshape(B, G, 1, K * Ho * Wo)
                idx = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).to(torch.int64).reshape(B, G, 1, K * Ho * Wo)
                got = torch.gather(src, 3, idx.expand(B, G, C // G, K * Ho * Wo))
                sampled = sampled + got * wgt
        sampled = sampled * mask.reshape(B, G, 1, K * Ho * Wo)
        columns = sampled.reshape(B, C * K, Ho * Wo)
        out = torch.matmul(self.weight.reshape(self.weight.shape[0], C * K), columns)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1)
        return out.reshape(B, self.weight.shape[0], Ho, Wo)
''',
    imports=("from typing import List",),
)
