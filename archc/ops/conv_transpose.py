"""Transposed 2-D convolution (``nn.ConvTranspose2d``), the learnable upsampler of decoders and necks.

Output size per axis: ``(H − 1)·s − 2p + d·(k − 1) + output_padding + 1``; ``output_padding`` must be
smaller than the stride or the dilation (PyTorch's rule). The weight is (C_in, out/groups, kh, kw).
Each input pixel is scattered through the kernel, so MACs per sample are
``H_in·W_in·kh·kw·C_in·out/groups`` (FlopCounterMode's count for a transposed conv).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, register
from archc.ops.conv import _short

__all__ = ["ConvTranspose2d"]

_NAMES = ("in_channels", "out_channels", "kernel_size")
_DEFAULTS = {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": True, "dilation": 1}


class ConvTranspose2d(Op):
    name = "conv_transpose2d"
    doc = "Transposed 2-D convolution over NCHW (learnable upsampling); out = (H−1)·s − 2p + d·(k−1) + output_padding + 1."
    counts_activations = True
    attrs = (
        Attr("out", "int", doc="output channels", min=1),
        Attr("kernel", "pair", doc="kernel size", min=1),
        Attr("stride", "pair", 1, min=1),
        Attr("padding", "pair", 0, "implicit zero padding removed from each side of the output", min=0),
        Attr("output_padding", "pair", 0, "extra size added to one side of the output (< stride or dilation)", min=0),
        Attr("dilation", "pair", 1, min=1),
        Attr("groups", "int", 1, min=1),
        Attr("bias", "bool", True),
    )

    def check(self, a: dict[str, Any]) -> None:
        for op_, s, d in zip(a["output_padding"], a["stride"], a["dilation"]):
            if op_ >= s and op_ >= d:
                raise OpCheckError(
                    f"'conv_transpose2d' output_padding {op_} must be smaller than the stride ({s}) or the dilation ({d})",
                    "output_padding", hint="output_padding only picks between the sizes a stride maps to one input size",
                )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'{self.name}' expects an NCHW input, got {x}")
        c, g = x.shape[1], a["groups"]
        if c % g or a["out"] % g:
            raise OpCheckError(f"groups={g} must divide input channels ({c}) and output channels ({a['out']})", "groups")
        hw = []
        for size, k, s, p, op_, d in zip(x.shape[2:], a["kernel"], a["stride"], a["padding"], a["output_padding"], a["dilation"]):
            hw.append((size - 1) * s - 2 * p + d * (k - 1) + op_ + 1)
        if hw[0] < 1 or hw[1] < 1:
            raise OpCheckError(f"padding {a['padding']} leaves an empty {hw[0]}x{hw[1]} output for input {x}", "padding")
        return [x.with_shape((x.shape[0], a["out"], hw[0], hw[1]))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        k = a["kernel"]
        p = {"weight": (ins[0].shape[1], a["out"] // a["groups"], k[0], k[1])}
        if a["bias"]:
            p["bias"] = (a["out"],)
        return p

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        x, k = ins[0].shape, a["kernel"]
        return x[1] * (a["out"] // a["groups"]) * k[0] * k[1] * x[2] * x[3]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        args = (ins[0].shape[1], a["out"], _short(a["kernel"]))
        kw = {
            "stride": _short(a["stride"]),
            "padding": _short(a["padding"]),
            "output_padding": _short(a["output_padding"]),
            "groups": a["groups"],
            "bias": a["bias"],
            "dilation": _short(a["dilation"]),
        }
        return Lowering(Call("nn.ConvTranspose2d", args, kw, _DEFAULTS, _NAMES), "{m}({0})")


register(ConvTranspose2d)
