"""Convolutions: conv2d and central-difference conv (CDC).

CDC (Yu et al., CDCN): ``y = conv(x, w) + b − θ·(conv1×1(x, Σ_hw w) + b)``; the second term is a
1×1 conv with the spatial sum of the kernel, same stride and groups, no padding. As written it
costs one extra 1×1 conv; folded (see the cdc pass) it is a single k×k conv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, helper, pair, register

__all__ = ["Conv2d", "CDCConv2d", "conv_out_hw"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
CONV_NAMES = ("in_channels", "out_channels", "kernel_size")
CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros"}


def conv_out_hw(h: int, w: int, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int]) -> tuple[int, int]:
    """Output spatial size of a convolution or pooling window."""
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return ho, wo


def resolve_padding(a: Mapping[str, Any]) -> tuple[int, int]:
    """Explicit padding, or 'same-style' dilation·(k−1)/2 when omitted."""
    if a["padding"] is not None:
        return pair(a["padding"])
    k, d = a["kernel"], a["dilation"]
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def _short(v: tuple[int, int]) -> Any:
    a, b = v
    if type(a) is int and type(b) is int:
        return a if a == b else v
    # sizes traced by code generation: written once only when both are the same expression (whatever its value)
    ea = getattr(a, "expr", None)
    return a if ea is not None and ea == getattr(b, "expr", None) else v


class Conv2d(Op):
    name = "conv2d"
    doc = "2-D convolution over NCHW; padding defaults to dilation·(k−1)/2."
    counts_activations = True
    attrs = (
        Attr("out", "int", doc="output channels", min=1),
        Attr("kernel", "pair", 1, "kernel size", min=1),
        Attr("stride", "pair", 1, min=1),
        Attr("padding", "pair", None, "zero padding (default dilation·(k−1)/2)", min=0),
        Attr("dilation", "pair", 1, min=1),
        Attr("groups", "int", 1, min=1),
        Attr("bias", "bool", True),
        Attr("padding_mode", "str", "zeros", choices=PADDING_MODES),
    )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'{self.name}' expects an NCHW input, got {x}")
        c = x.shape[1]
        g = a["groups"]
        if c % g or a["out"] % g:
            raise OpCheckError(
                f"groups={g} must divide input channels ({c}) and output channels ({a['out']})", "groups"
            )
        pad = resolve_padding(a)
        mode = a["padding_mode"]
        if mode in ("reflect", "circular"):
            # PyTorch's reflect padding needs pad < size, circular pad <= size (a wrap-around never goes round twice)
            for p, size, axis in ((pad[0], x.shape[2], "height"), (pad[1], x.shape[3], "width")):
                if isinstance(size, int) and (p >= size if mode == "reflect" else p > size):
                    limit = "smaller than" if mode == "reflect" else "at most"
                    raise OpCheckError(f"{mode} padding {p} must be {limit} the input {axis} {size} (input {x})", "padding")
        ho, wo = conv_out_hw(x.shape[2], x.shape[3], a["kernel"], a["stride"], pad, a["dilation"])
        if ho < 1 or wo < 1:
            raise OpCheckError(f"input {x} is too small for kernel {a['kernel']} (output {ho}x{wo})", "kernel")
        return [x.with_shape((x.shape[0], a["out"], ho, wo))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        k = a["kernel"]
        p = {"weight": (a["out"], ins[0].shape[1] // a["groups"], k[0], k[1])}
        if a["bias"]:
            p["bias"] = (a["out"],)
        return p

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        k = a["kernel"]
        o = outs[0].shape
        return a["out"] * (ins[0].shape[1] // a["groups"]) * k[0] * k[1] * o[2] * o[3]

    def ctor_kwargs(self, a: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "stride": _short(a["stride"]),
            "padding": _short(resolve_padding(a)),
            "dilation": _short(a["dilation"]),
            "groups": a["groups"],
            "bias": a["bias"],
            "padding_mode": a["padding_mode"],
        }

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        args = (ins[0].shape[1], a["out"], _short(a["kernel"]))
        return Lowering(Call("nn.Conv2d", args, self.ctor_kwargs(a), CONV_DEFAULTS, CONV_NAMES), "{m}({0})")


class CDCConv2d(Conv2d):
    name = "cdc_conv2d"
    doc = "Central difference convolution: conv(x, w) − θ·conv1×1(x, Σw), bias in both terms."
    attrs = Conv2d.attrs + (Attr("theta", "float", 0.7, "weight of the central-difference term", min=0.0),)

    def check(self, a: dict[str, Any]) -> None:
        if a["padding_mode"] != "zeros":
            raise OpCheckError("cdc_conv2d supports zero padding only", "padding_mode")
        k, d = a["kernel"], a["dilation"]
        if a["padding"] is not None and pair(a["padding"]) != (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2):
            raise OpCheckError("cdc_conv2d needs 'same' padding dilation·(k−1)/2 so both terms align", "padding")
        if k[0] % 2 == 0 or k[1] % 2 == 0:
            raise OpCheckError("cdc_conv2d needs an odd kernel (it has a centre tap)", "kernel")

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        dense = super().macs(a, ins, outs)
        if a["theta"] == 0.0:
            return dense
        o = outs[0].shape
        return dense + a["out"] * (ins[0].shape[1] // a["groups"]) * o[2] * o[3]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        args = (ins[0].shape[1], a["out"], _short(a["kernel"]))
        kw = self.ctor_kwargs(a)
        kw["theta"] = a["theta"]
        return Lowering(Call("CDConv2d", args, kw, {**CONV_DEFAULTS, "theta": 0.7}, CONV_NAMES), "{m}({0})", helpers=("CDConv2d",))


register(Conv2d)
register(CDCConv2d)

helper(
    "CDConv2d",
    '''
class CDConv2d(nn.Conv2d):
    """Central difference convolution: conv(x, w) - theta * conv1x1(x, sum_hw w)."""

    def __init__(self, *args, theta: float = 0.7, **kwargs):
        super().__init__(*args, **kwargs)
        self.theta = theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv_forward(x, self.weight, self.bias)
        if self.theta == 0.0:
            return out
        kernel_sum = self.weight.sum(dim=(2, 3), keepdim=True)
        diff = F.conv2d(x, kernel_sum, self.bias, stride=self.stride, padding=0, groups=self.groups)
        return out - self.theta * diff
''',
)
