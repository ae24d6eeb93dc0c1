"""Spatial resizing of NCHW tensors (``F.interpolate``).

Either ``size`` gives the output (h, w), or ``scale`` gives a factor s and the output is
(⌊H·s⌋, ⌊W·s⌋) — PyTorch's rule, and the sampling grid then uses s itself (not the size ratio).
No parameters, 0 MACs (interpolation is not counted by FlopCounterMode nor fvcore).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, register

__all__ = ["Resize"]


#: the largest output side a resize may produce (beyond it PyTorch indexing overflows)
_MAX_SIDE = 2**31 - 1


class Resize(Op):
    """y = interpolate(x, size | scale, mode); align_corners maps corner pixel centres onto each other."""

    name = "resize"
    doc = "Resize NCHW spatially by size (h, w) or by a scale factor; modes nearest, bilinear, bicubic."
    attrs = (
        Attr("size", "pair", None, "output size (h, w); exclusive with scale", min=1),
        Attr("scale", "float", None, "scale factor; exclusive with size", min=0.0),
        Attr("mode", "str", "nearest", choices=("nearest", "bilinear", "bicubic")),
        Attr("align_corners", "bool", False, "only for bilinear/bicubic"),
    )

    def check(self, a: dict[str, Any]) -> None:
        if (a["size"] is None) == (a["scale"] is None):
            got = "both" if a["size"] is not None else "neither"
            raise OpCheckError(f"'resize' needs exactly one of 'size' and 'scale', got {got}", "size",
                               hint="give 'size: [h, w]' or 'scale: 2.0'")
        if a["scale"] is not None and a["scale"] <= 0.0:
            raise OpCheckError(f"'resize' scale must be > 0, got {a['scale']!r}", "scale")
        if a["mode"] == "nearest" and a["align_corners"]:
            raise OpCheckError("'resize' align_corners=true is only valid for bilinear/bicubic, not mode 'nearest'",
                               "align_corners", hint="drop 'align_corners' or pick mode bilinear")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'resize' expects an NCHW (rank-4) input, got {x}")
        if a["size"] is not None:
            ho, wo = a["size"]
        else:
            s = a["scale"]
            fh, fw = float(x.shape[2]) * s, float(x.shape[3]) * s
            if not (fh <= _MAX_SIDE and fw <= _MAX_SIDE):  # also catches an overflow to inf
                raise OpCheckError(f"'resize' scale {s:g} makes {x} larger than {_MAX_SIDE:,} pixels on a side", "scale",
                                   hint="use a scale that keeps the output a realistic size")
            ho, wo = math.floor(fh), math.floor(fw)
            if ho < 1 or wo < 1:
                raise OpCheckError(f"'resize' scale {s} shrinks {x} to an empty {ho}x{wo} output", "scale")
        return [x.with_shape((x.shape[0], x.shape[1], ho, wo))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        values: dict[str, Any] = {"mode": a["mode"]}
        if a["size"] is not None:
            values["size"] = list(a["size"])
            how = "size={size}"
        else:
            values["scale"] = a["scale"]
            how = "scale_factor={scale}"
        fwd = "F.interpolate({0}, " + how + ", mode={mode}"
        if a["mode"] != "nearest":
            values["align_corners"] = a["align_corners"]
            fwd += ", align_corners={align_corners}"
        return Lowering(None, fwd + ")", values)


register(Resize)
