"""The real 2-D FFT pair, ``rfft2`` and ``irfft2``: global filters in the Fourier domain (GFNet, HorNet-GF, AFFNet).

The graph stays real: ``rfft2`` packs its complex result as a trailing axis of size 2 holding
(real, imaginary) — (B, …, H, W) → (B, …, H, W//2+1, 2) — and ``irfft2`` takes that packing back to
(B, …, H, W). A learnable complex filter is a real ``param`` of shape [..., 2] (state dicts stay real)
applied with ``complex_mul``; a filter stored at another size is ``resize``d to the spectrum first.

Cost. Neither op has parameters. The MAC convention (that of FlopCounterMode and fvcore: conv, linear,
matmul) does not count FFTs, so their ``macs`` are 0 and cost reports list them as *not in MACs*, with
an estimate beside the total (never added to it): the radix-2 count of a complex FFT of N points is
5·N·log2 N real flops and a real-input transform does about half that work, so one 2-D transform of an
H×W plane is taken as 2.5·N·log2 N flops = **1.25·N·log2 N MACs**, N = H·W, for every plane (every
leading non-batch index: channels, heads, ...) of one sample. A 2-D FFT done row by row and then column
by column costs the same 5·(HW·log2 W + WH·log2 H) = 5·N·log2 N flops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, dim_int, register

__all__ = ["RFFT2", "IRFFT2", "FFT_NORMS", "fft_macs"]

FFT_NORMS = ("backward", "ortho", "forward")

_MAC_RULE = "1.25·N·log2 N MACs per H×W plane, N = H·W (radix-2 count, half for real input)"


def fft_macs(planes: int, h: int, w: int) -> int:
    """Estimated MACs of ``planes`` real 2-D FFTs (forward or inverse) of h×w points: 1.25·N·log2 N each."""
    n = h * w
    return round(1.25 * n * math.log2(n) * planes) if n > 1 else 0


def _planes(shape: Sequence[Any]) -> int:
    out = 1
    for d in shape:
        out *= dim_int(d)
    return out


@register
class RFFT2(Op):
    """y[..., 0] + i·y[..., 1] = rfft2(x, norm) over the last two axes: (B, …, H, W) → (B, …, H, W//2+1, 2)."""

    name = "rfft2"
    uncounted = "the FFT, " + _MAC_RULE
    doc = "Real 2-D FFT over the last two axes; complex output packed as a trailing (real, imag) axis."
    attrs = (Attr("norm", "str", "backward", "FFT normalization", choices=FFT_NORMS),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 3:
            raise OpCheckError(f"'rfft2' transforms the last two axes and needs a rank >= 3 input (batch first), got {x}")
        return [x.with_shape((*x.shape[:-1], dim_int(x.shape[-1]) // 2 + 1, 2))]

    def uncounted_macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        x = ins[0]
        return fft_macs(_planes(x.shape[1:-2]), dim_int(x.shape[-2]), dim_int(x.shape[-1]))

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.view_as_real(torch.fft.rfft2({0}, norm={norm}))", {"norm": a["norm"]})


@register
class IRFFT2(Op):
    """y = irfft2(x[..., 0] + i·x[..., 1], s=size, norm): (B, …, H, W//2+1, 2) → (B, …, H, W); inverts rfft2."""

    name = "irfft2"
    uncounted = "the inverse FFT, " + _MAC_RULE
    doc = "Inverse real 2-D FFT of the (real, imag)-packed spectrum produced by rfft2; size gives (H, W)."
    attrs = (
        Attr("size", "pair", doc="output (H, W)", min=1),
        Attr("norm", "str", "backward", "FFT normalization", choices=FFT_NORMS),
    )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 4 or x.shape[-1] != 2:
            raise OpCheckError(
                f"'irfft2' expects a packed spectrum (B, ..., H, W//2+1, 2) of rank >= 4, got {x}",
                hint="feed the output of 'rfft2'",
            )
        h, w = a["size"]
        if x.shape[-3] != h or x.shape[-2] != w // 2 + 1:
            raise OpCheckError(
                f"'irfft2' size [{h}, {w}] needs a spectrum of (..., {h}, {w // 2 + 1}, 2), got {x}", "size"
            )
        return [x.with_shape((*x.shape[:-3], h, w))]

    def uncounted_macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        h, w = a["size"]
        return fft_macs(_planes(ins[0].shape[1:-3]), h, w)

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(
            None,
            "torch.fft.irfft2(torch.complex({0}[..., 0], {0}[..., 1]), s={size}, norm={norm})",
            {"size": list(a["size"]), "norm": a["norm"]},
        )
