"""Spatial resizing of NCHW tensors (``F.interpolate``).

Exactly one of: ``size`` gives the output (h, w); ``scale`` gives a factor s, or one per axis
[s_h, s_w], and the output is (⌊H·s_h⌋, ⌊W·s_w⌋) — PyTorch's rule, and the sampling grid then uses
the factors themselves (not the size ratio); or a second input, the *reference*, whose spatial size
(its last two axes) the output takes (an FPN's top-down path resized to the lateral map it is added
to). No parameters, 0 MACs (interpolation is not counted by FlopCounterMode nor fvcore).
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
    """y = interpolate(x, size | scale | the reference's size, mode); align_corners maps corner pixel centres."""

    name = "resize"
    doc = ("Resize NCHW spatially to size (h, w), by a scale factor (one, or [s_h, s_w]), or to the spatial size of a "
           "second (reference) input; modes nearest, bilinear, bicubic.")
    arity = (1, 2)
    attrs = (
        Attr("size", "pair", None, "output size (h, w); exclusive with scale and a reference input", min=1),
        Attr("scale", "any", None, "scale factor s or per-axis [s_h, s_w]; exclusive with size and a reference input"),
        Attr("mode", "str", "nearest", choices=("nearest", "bilinear", "bicubic")),
        Attr("align_corners", "bool", False, "only for bilinear/bicubic"),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["size"] is not None and a["scale"] is not None:
            raise OpCheckError("'resize' needs exactly one of 'size' and 'scale', got both", "size",
                               hint="give 'size: [h, w]' or 'scale: 2.0'")
        if a["scale"] is not None:
            _scales(a["scale"])
        if a["mode"] == "nearest" and a["align_corners"]:
            raise OpCheckError("'resize' align_corners=true is only valid for bilinear/bicubic, not mode 'nearest'",
                               "align_corners", hint="drop 'align_corners' or pick mode bilinear")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'resize' expects an NCHW (rank-4) input, got {x}")
        given = sum(v is not None for v in (a["size"], a["scale"])) + (len(ins) == 2)
        if given != 1:
            got = "neither" if given == 0 else "more than one"
            raise OpCheckError(f"'resize' needs exactly one of 'size', 'scale' and a reference input, got {got}",
                               "size", hint="give 'size: [h, w]', 'scale: 2.0' or 'in: [x, reference]'")
        if len(ins) == 2:
            ref = ins[1]
            if ref.rank < 3:
                raise OpCheckError(f"'resize' takes its output size from the last two axes of the reference, got {ref}")
            ho, wo = ref.shape[-2], ref.shape[-1]
        elif a["size"] is not None:
            ho, wo = a["size"]
        else:
            sh, sw = _scales(a["scale"])
            fh, fw = float(x.shape[2]) * sh, float(x.shape[3]) * sw
            shown = f"{sh:g}" if sh == sw else f"[{sh:g}, {sw:g}]"
            if not (fh <= _MAX_SIDE and fw <= _MAX_SIDE):  # also catches an overflow to inf
                raise OpCheckError(f"'resize' scale {shown} makes {x} larger than {_MAX_SIDE:,} pixels on a side", "scale",
                                   hint="use a scale that keeps the output a realistic size")
            ho, wo = math.floor(fh), math.floor(fw)
            if ho < 1 or wo < 1:
                raise OpCheckError(f"'resize' scale {shown} shrinks {x} to an empty {ho}x{wo} output", "scale")
        return [x.with_shape((x.shape[0], x.shape[1], ho, wo))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        values: dict[str, Any] = {"mode": a["mode"]}
        if len(ins) == 2:
            how = "size={1}.shape[-2:]"
        elif a["size"] is not None:
            values["size"] = list(a["size"])
            how = "size={size}"
        else:
            sh, sw = _scales(a["scale"])
            values["scale"] = sh if sh == sw and not isinstance(a["scale"], (list, tuple)) else [sh, sw]
            how = "scale_factor={scale}"
        fwd = "F.interpolate({0}, " + how + ", mode={mode}"
        if a["mode"] != "nearest":
            values["align_corners"] = a["align_corners"]
            fwd += ", align_corners={align_corners}"
        return Lowering(None, fwd + ")", values)


def _scales(v: Any) -> tuple[float, float]:
    """The scale attribute as (s_h, s_w): one positive finite number, or a list of two."""
    items = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(items) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in items):
        raise OpCheckError(f"'resize' scale must be a number or a pair [s_h, s_w], got {v!r}", "scale")
    for s in items:
        if not math.isfinite(float(s)):
            raise OpCheckError(f"'resize' scale must be a finite number, got {v!r}", "scale",
                               hint="write a finite scale such as 2.0")
        if float(s) <= 0.0:
            raise OpCheckError(f"'resize' scale must be > 0, got {v!r}", "scale")
    return float(items[0]), float(items[1])


register(Resize)
