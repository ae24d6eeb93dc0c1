"""Cyclic shifts and fixed-index gathers: ``roll`` and ``index_select``.

``roll`` is Swin's cyclic window shift: ``y[..., i, ...] = x[..., (i − s) mod n, ...]`` along each
named axis (PyTorch's ``torch.roll``). ``index_select`` gathers with a fixed integer tensor (an
index buffer built at construction time, e.g. a relative-position index): for an input x and an
index I of any shape, ``y[a, I-dims, b] = x[a, I[I-dims], b]`` along axis ``dim`` — the axis is
replaced by the index's dims (a relative-position bias table (heads, T) gathered by an (N, N) index
gives (heads, N, N)). Neither op has parameters or MACs (moves and gathers are not counted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import BATCH, TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, register
from archc.ops.shape import axis

__all__ = ["Roll", "IndexSelect"]


class Roll(Op):
    """y = roll(x, shifts, dims): each listed non-batch axis shifted cyclically by its shift."""

    name = "roll"
    nonfloat_inputs = None
    doc = "Cyclic shift along non-batch axes (torch.roll), e.g. Swin's shifted windows: shifts [-3, -3], dims [1, 2]."
    attrs = (
        Attr("shifts", "ints", doc="shift per axis (positive moves elements to higher indices)"),
        Attr("dims", "ints", doc="the axes to shift, one per shift (not 0)"),
    )

    def check(self, a: dict[str, Any]) -> None:
        if not a["dims"]:
            raise OpCheckError("'roll' needs at least one axis in 'dims'", "dims")
        if len(a["shifts"]) != len(a["dims"]):
            raise OpCheckError(f"'roll' needs one shift per axis: shifts {list(a['shifts'])} vs dims {list(a['dims'])}",
                               "shifts", hint="list as many shifts as dims")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        seen = [axis(self.name, "dims", d, x.rank) for d in a["dims"]]
        if len(set(seen)) != len(seen):
            raise OpCheckError(f"'roll' dims {list(a['dims'])} name an axis twice (rank {x.rank})", "dims")
        return [x]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.roll({0}, {shifts}, {dims})", {"shifts": list(a["shifts"]), "dims": list(a["dims"])})


class IndexSelect(Op):
    """y = x gathered along ``dim`` by a fixed int64 index of any shape; the axis becomes the index's dims.

    The first input's axis 0 may be indexed only when it is not the batch (a parameter table).
    """

    name = "index_select"
    nonfloat_inputs = None  # the index, and a table of any dtype
    doc = ("Gather along one axis with a fixed int64 index (2nd input) of any shape; the axis is replaced by the "
           "index's dims, e.g. a (heads, T) bias table by an (N, N) relative-position index gives (heads, N, N).")
    arity = (2, 2)
    attrs = (Attr("dim", "int", 0, "axis to gather along (0 only for a tensor without batch axis)"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, idx = ins
        if idx.dtype != "int64":
            raise OpCheckError(f"'index_select' needs an int64 index as its second input, got {idx}",
                               hint="build the index with a constant op such as 'relative_position_index'")
        if BATCH in idx.shape:
            raise OpCheckError(f"'index_select' needs a fixed index (no batch axis), got {idx}")
        if x.rank < 1:
            raise OpCheckError(f"'index_select' needs an input of rank >= 1, got {x}")
        d = axis(self.name, "dim", a["dim"], x.rank, allow_batch=x.shape[0] != BATCH)
        return [x.with_shape((*x.shape[:d], *idx.shape, *x.shape[d + 1:]))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        x, idx = ins
        d = a["dim"] % x.rank
        if idx.rank == 1:
            return Lowering(None, "torch.index_select({0}, {dim}, {1})", {"dim": d})
        # torch.index_select takes a 1-D index: gather by the flat index, then unfold the index's dims in place.
        # Every size is read at run time (the index's too), so one generated class serves any index size.
        parts = []
        if d > 0:
            parts.append("[" + ", ".join(f"{{0}}.shape[{i}]" for i in range(d)) + "]")
        parts.append("list({1}.shape)")
        if d < x.rank - 1:
            parts.append("[" + ", ".join(f"{{0}}.shape[{i}]" for i in range(d + 1, x.rank)) + "]")
        return Lowering(None, f"torch.index_select({{0}}, {d}, {{1}}.reshape(-1)).reshape({' + '.join(parts)})")


register(Roll)
register(IndexSelect)
