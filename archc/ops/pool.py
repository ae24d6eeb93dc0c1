"""2-D pooling over NCHW: windowed max/avg, adaptive max/avg and global max/avg.

Window output size follows PyTorch exactly (``pooling_output_shape``)::

    out = ⌊(n + 2p − d·(k − 1) − 1 + (ceil ? s − 1 : 0)) / s⌋ + 1
    if ceil and (out − 1)·s ≥ n + p: out −= 1      # the last window must start inside the input

Pooling has no parameters and 0 MACs (FlopCounterMode does not count it either); pool outputs
count as activations (pycls convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, register

__all__ = ["pool_out", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool", "GlobalMaxPool"]


def pool_out(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length of one pooled axis (PyTorch's rule, including the ceil-mode correction)."""
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _nchw(op: str, x: TensorType) -> None:
    if x.rank != 4:
        raise OpCheckError(f"'{op}' expects an NCHW (rank-4) input, got {x}")


def _short(v: tuple[int, int]) -> Any:
    return v[0] if v[0] == v[1] else v


class _WindowPool(Op):
    """Shared rules of max/avg pooling with a sliding window (stride defaults to the kernel)."""

    counts_activations = True
    module = "nn.MaxPool2d"

    def check(self, a: dict[str, Any]) -> None:
        if a["stride"] is None:
            a["stride"] = a["kernel"]
        k, p = a["kernel"], a["padding"]
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise OpCheckError(
                f"'{self.name}' padding must be at most half the kernel (padding={p}, kernel={k})", "padding",
                hint="PyTorch rejects pad > kernel // 2",
            )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        _nchw(self.name, x)
        k, s, p = a["kernel"], a["stride"], a["padding"]
        d = a.get("dilation", (1, 1))
        ho = pool_out(dim_int(x.shape[2]), k[0], s[0], p[0], d[0], a["ceil_mode"])
        wo = pool_out(dim_int(x.shape[3]), k[1], s[1], p[1], d[1], a["ceil_mode"])
        if ho < 1 or wo < 1:
            raise OpCheckError(
                f"'{self.name}': input {x} is too small for kernel {k} (stride {s}, padding {p}, output {ho}x{wo})", "kernel"
            )
        return [x.with_shape((x.shape[0], x.shape[1], ho, wo))]

    def _kwargs(self, a: Mapping[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if a["stride"] != a["kernel"]:
            kw["stride"] = _short(a["stride"])
        if a["padding"] != (0, 0):
            kw["padding"] = _short(a["padding"])
        if a["ceil_mode"]:
            kw["ceil_mode"] = True
        return kw

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call(self.module, (_short(a["kernel"]),), self._kwargs(a)), "{m}({0})")


class MaxPool2d(_WindowPool):
    """y[n,c,i,j] = max over the (dilated) k_h×k_w window at (i·s_h − p_h, j·s_w − p_w); padding is −∞."""

    name = "maxpool2d"
    doc = "Max pooling over NCHW; stride defaults to the kernel."
    module = "nn.MaxPool2d"
    attrs = (
        Attr("kernel", "pair", doc="window size", min=1),
        Attr("stride", "pair", None, "step (default: the kernel)", min=1),
        Attr("padding", "pair", 0, "implicit −∞ padding, at most kernel // 2", min=0),
        Attr("dilation", "pair", 1, min=1),
        Attr("ceil_mode", "bool", False, "round the output size up"),
    )

    def _kwargs(self, a: Mapping[str, Any]) -> dict[str, Any]:
        kw = super()._kwargs(a)
        if a["dilation"] != (1, 1):
            kw["dilation"] = _short(a["dilation"])
        return kw


class AvgPool2d(_WindowPool):
    """y = mean of the k_h×k_w window; zero padding counts in the divisor iff count_include_pad."""

    name = "avgpool2d"
    doc = "Average pooling over NCHW; stride defaults to the kernel."
    module = "nn.AvgPool2d"
    attrs = (
        Attr("kernel", "pair", doc="window size", min=1),
        Attr("stride", "pair", None, "step (default: the kernel)", min=1),
        Attr("padding", "pair", 0, "implicit zero padding, at most kernel // 2", min=0),
        Attr("ceil_mode", "bool", False, "round the output size up"),
        Attr("count_include_pad", "bool", True, "divide by the full window size, padding included"),
    )

    def _kwargs(self, a: Mapping[str, Any]) -> dict[str, Any]:
        kw = super()._kwargs(a)
        if not a["count_include_pad"]:
            kw["count_include_pad"] = False
        return kw


class AdaptiveAvgPool2d(Op):
    """Output cell (i, j) averages input rows ⌊i·H/h⌋..⌈(i+1)·H/h⌉ and the matching columns."""

    name = "adaptive_avgpool2d"
    doc = "Adaptive average pooling of NCHW to a fixed (h, w)."
    counts_activations = True
    module = "nn.AdaptiveAvgPool2d"
    attrs = (Attr("size", "pair", doc="output size (h, w)", min=1),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        _nchw(self.name, x)
        return [x.with_shape((x.shape[0], x.shape[1], *a["size"]))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call(self.module, (_short(a["size"]),)), "{m}({0})")


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """Output cell (i, j) is the max over input rows ⌊i·H/h⌋..⌈(i+1)·H/h⌉ and the matching columns."""

    name = "adaptive_maxpool2d"
    doc = "Adaptive max pooling of NCHW to a fixed (h, w)."
    module = "nn.AdaptiveMaxPool2d"


class GlobalAvgPool(Op):
    """y[n,c] = mean over H, W of x[n,c]; (B,C,1,1) with keepdim, else (B,C)."""

    name = "global_avgpool"
    doc = "Global average pooling over the spatial dims of NCHW."
    counts_activations = True
    reduce = "mean"
    attrs = (Attr("keepdim", "bool", True, "keep the 1×1 spatial dims"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        _nchw(self.name, x)
        shape = (x.shape[0], x.shape[1], 1, 1) if a["keepdim"] else (x.shape[0], x.shape[1])
        return [x.with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, f"{{0}}.{self.reduce}([2, 3], keepdim={{keepdim}})", {"keepdim": a["keepdim"]})


class GlobalMaxPool(GlobalAvgPool):
    """y[n,c] = max over H, W of x[n,c]; (B,C,1,1) with keepdim, else (B,C)."""

    name = "global_maxpool"
    doc = "Global max pooling over the spatial dims of NCHW."
    reduce = "amax"


for _cls in (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, GlobalAvgPool, GlobalMaxPool):
    register(_cls)
