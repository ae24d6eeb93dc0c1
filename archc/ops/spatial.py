"""Ops over the spatial positions of NCHW maps whose size is only known at run time.

``spatial_softmax`` normalizes each (n, c) map over all its H·W positions at once (an attention map
over space, as in global-context blocks and RCNet's fusion gates); with ``rescale`` the weights are
multiplied by H·W so that they average 1 and a weighted map keeps its scale.

``adaptive_pool_to`` is adaptive max/avg pooling to the spatial size of a second (reference) input,
the pooling counterpart of ``resize`` with a reference: a pyramid level brought to another level's
size, whatever the input image size.

No parameters and 0 MACs (FlopCounterMode counts neither softmax nor pooling); pooled outputs
count as activations (pycls convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, register

__all__ = ["SpatialSoftmax", "AdaptivePoolTo"]


def _nchw(op: str, x: TensorType, what: str = "input") -> None:
    if x.rank != 4:
        raise OpCheckError(f"'{op}' expects an NCHW (rank-4) {what}, got {x}")


class SpatialSoftmax(Op):
    """y[n,c,i,j] = exp(x[n,c,i,j]) / Σ_{i',j'} exp(x[n,c,i',j']), times H·W when ``rescale``."""

    name = "spatial_softmax"
    doc = ("Softmax of each NCHW map over all its H·W positions; rescale multiplies by H·W so the weights "
           "average 1 (a spatial attention map that keeps the scale of what it weights).")
    attrs = (Attr("rescale", "bool", False, "multiply by H·W (the number of positions)"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        _nchw(self.name, ins[0])
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        fwd = "torch.softmax({0}.flatten(2), -1).reshape({0}.shape)"
        if a["rescale"]:
            # the size is read at run time: the module is not tied to the size it was compiled at
            fwd = "(" + fwd + " * ({0}.shape[2] * {0}.shape[3]))"
        return Lowering(None, fwd)


class AdaptivePoolTo(Op):
    """Adaptive pooling of the first input to the last two axes of the second: output cell (i, j) pools
    rows ⌊i·H/h⌋..⌈(i+1)·H/h⌉ and the matching columns (PyTorch's adaptive pooling)."""

    name = "adaptive_pool_to"
    doc = ("Adaptive max or average pooling of NCHW to the spatial size of a second (reference) input, "
           "e.g. a pyramid level pooled to a coarser level's size.")
    arity = (2, 2)
    counts_activations = True
    attrs = (Attr("mode", "str", "max", choices=("max", "avg")),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, ref = ins
        _nchw(self.name, x)
        if ref.rank < 3:
            raise OpCheckError(f"'{self.name}' takes its output size from the last two axes of the reference, got {ref}")
        return [x.with_shape((x.shape[0], x.shape[1], ref.shape[-2], ref.shape[-1]))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, f"F.adaptive_{a['mode']}_pool2d({{0}}, {{1}}.shape[-2:])")


for _cls in (SpatialSoftmax, AdaptivePoolTo):
    register(_cls)
