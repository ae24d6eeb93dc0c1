"""Dense layers: linear over the last axis, batched matmul, and softmax.

MACs per sample (batch 1), matching FlopCounterMode (2 FLOPs per MAC):

* linear: in·out·∏(non-batch leading dims) — e.g. a token MLP on (B, N, C) costs N·C·out;
* matmul: for (…, M, K) @ (…, K, N) with broadcast leading dims L, ∏(L without the batch)·M·K·N;
* softmax: 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, register
from archc.ops.elementwise import broadcast
from archc.ops.shape import axis

__all__ = ["Linear", "MatMul", "Softmax"]


def _prod(dims: Sequence[Any]) -> int:
    n = 1
    for d in dims:
        n *= dim_int(d)
    return n


class Linear(Op):
    """y = x·Wᵀ + b over the last axis; W is (out, in), any rank ≥ 2 (leading axes are independent rows)."""

    name = "linear"
    doc = "Fully connected layer over the last axis (rank >= 2 input)."
    counts_activations = True
    attrs = (Attr("out", "int", doc="output features", min=1), Attr("bias", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 2:
            raise OpCheckError(f"'linear' needs a rank >= 2 input (batch, ..., features), got {x}")
        return [x.with_shape((*x.shape[:-1], a["out"]))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        p = {"weight": (a["out"], dim_int(ins[0].shape[-1]))}
        if a["bias"]:
            p["bias"] = (a["out"],)
        return p

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        x = ins[0]
        return dim_int(x.shape[-1]) * a["out"] * _prod(x.shape[1:-1])

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        kw = {} if a["bias"] else {"bias": False}
        return Lowering(Call("nn.Linear", (dim_int(ins[0].shape[-1]), a["out"]), kw), "{m}({0})")


class MatMul(Op):
    """y = a @ b for a (…, M, K) and b (…, K, N), leading dims broadcast; the batch stays a's axis 0.

    b's rank may not exceed a's (so the output's axis 0 is a's batch); b may lack the batch axis
    (e.g. a (K, N) constant).
    """

    name = "matmul"
    doc = "Batched matrix product with broadcast leading dims (torch.matmul, both inputs rank >= 2)."
    arity = (2, 2)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, y = ins
        if x.rank < 2 or y.rank < 2:
            raise OpCheckError(f"'matmul' needs both inputs of rank >= 2, got {x} and {y}")
        if y.rank > x.rank:
            raise OpCheckError(
                f"'matmul' second input {y} has a higher rank than the first {x}; the batch must come from the first",
                hint="swap the operands with transposes, or reshape the second input",
            )
        if x.dtype != y.dtype:
            raise OpCheckError(f"'matmul' dtypes differ: {x} vs {y}")
        if x.shape[-1] != y.shape[-2]:
            raise OpCheckError(
                f"'matmul' inner dims differ: {x} is (..., M, {x.shape[-1]}) but {y} is (..., {y.shape[-2]}, N)"
            )
        lead = broadcast(x.shape[:-2], y.shape[:-2])
        if lead and lead[0] != x.shape[0]:
            raise OpCheckError(f"'matmul' would broadcast the batch axis of {x} against {y} (got {lead[0]})")
        return [x.with_shape((*lead, x.shape[-2], y.shape[-1]))]

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        k = dim_int(ins[0].shape[-1])
        return _prod(outs[0].shape[1:]) * k

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.matmul({0}, {1})")


class Softmax(Op):
    """y_i = exp(x_i) / Σ_j exp(x_j) along ``dim`` (never the batch axis)."""

    name = "softmax"
    doc = "Softmax along a non-batch axis (default the last)."
    attrs = (Attr("dim", "int", -1),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        axis(self.name, "dim", a["dim"], ins[0].rank)
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.softmax({0}, {dim})", {"dim": a["dim"]})


for _cls in (Linear, MatMul, Softmax):
    register(_cls)
