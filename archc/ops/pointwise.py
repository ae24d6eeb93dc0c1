"""Elementwise math beyond the binary arithmetic: abs, clamp, n-ary sum, comparisons and where.

Broadcasting follows NumPy (``archc.ops.elementwise.broadcast``). Comparisons return a ``bool``
tensor (``eq ne lt le gt ge``), against a second input or against the constant ``value``;
``where(cond, a, b)`` picks a where cond holds, else b — together they express masks (a bool mask
also feeds ``sdpa`` directly). None of these ops has parameters or MACs (elementwise ops count 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, register
from archc.ops.elementwise import broadcast

__all__ = ["Abs", "Clamp", "Sum", "Compare", "Where"]


class Abs(Op):
    """y = |x|."""

    name = "abs"
    doc = "Absolute value, elementwise"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.abs({0})")


class Clamp(Op):
    """y = min(max(x, min), max); either bound may be omitted, not both."""

    name = "clamp"
    doc = "Clamp elementwise to [min, max] (either bound optional, not both)"
    attrs = (Attr("min", "float", None, "lower bound"), Attr("max", "float", None, "upper bound"))

    def check(self, a: dict[str, Any]) -> None:
        if a["min"] is None and a["max"] is None:
            raise OpCheckError("'clamp' needs 'min', 'max' or both", "min", hint="e.g. 'min: 0.0'")
        if a["min"] is not None and a["max"] is not None and a["min"] > a["max"]:
            raise OpCheckError(f"'clamp' min {a['min']:g} is above max {a['max']:g}", "min")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if a["max"] is None:
            return Lowering(None, "torch.clamp({0}, min={min})", {"min": a["min"]})
        if a["min"] is None:
            return Lowering(None, "torch.clamp({0}, max={max})", {"max": a["max"]})
        return Lowering(None, "torch.clamp({0}, {min}, {max})", {"min": a["min"], "max": a["max"]})


class Sum(Op):
    """y = x₀ + x₁ + … (two or more inputs, broadcast)."""

    name = "sum"
    doc = "Elementwise sum of two or more inputs (broadcast), e.g. the branches of a multi-path block"
    arity = (2, None)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        shape = ins[0].shape
        for i, t in enumerate(ins[1:], 1):
            if t.dtype != ins[0].dtype:
                raise OpCheckError(f"'sum' dtypes differ: input 0 is {ins[0]}, input {i} is {t}")
            shape = broadcast(shape, t.shape)
        return [ins[0].with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, " + ".join(f"{{{i}}}" for i in range(len(ins))))


class Compare(Op):
    """y = (a ⋄ b) as bool, b a second input or the constant ``value``."""

    arity = (1, 2)
    symbol = "=="
    attrs = (Attr("value", "float", None, "the constant to compare with (instead of a second input)", allow_inf=True),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if (len(ins) == 2) == (a["value"] is not None):
            got = "a second input and 'value'" if len(ins) == 2 else "neither"
            raise OpCheckError(f"'{self.name}' compares with a second input or with 'value', got {got}", "value",
                               hint="give 'in: [a, b]' or 'value: <number>'")
        if len(ins) == 1:
            return [TensorType(ins[0].shape, "bool")]
        if ins[0].dtype != ins[1].dtype:
            raise OpCheckError(f"'{self.name}' dtypes differ: {ins[0]} vs {ins[1]}")
        return [TensorType(broadcast(ins[0].shape, ins[1].shape), "bool")]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if len(ins) == 1:
            return Lowering(None, "{0} " + self.symbol + " {value}", {"value": a["value"]})
        return Lowering(None, "{0} " + self.symbol + " {1}")


def _compare(name: str, symbol: str, doc: str) -> None:
    register(type(name.title() + "Op", (Compare,), {"name": name, "symbol": symbol, "doc": doc}))


_compare("eq", "==", "a == b (bool), b a second input or 'value'")
_compare("ne", "!=", "a != b (bool), b a second input or 'value'")
_compare("lt", "<", "a < b (bool), b a second input or 'value'")
_compare("le", "<=", "a <= b (bool), b a second input or 'value'")
_compare("gt", ">", "a > b (bool), b a second input or 'value'")
_compare("ge", ">=", "a >= b (bool), b a second input or 'value'")


class Where(Op):
    """y = a where cond else b (cond bool; all three broadcast)."""

    name = "where"
    doc = "Select elementwise: a where the bool cond holds, else b (inputs [cond, a, b], broadcast)"
    arity = (3, 3)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        c, x, y = ins
        if c.dtype != "bool":
            raise OpCheckError(f"'where' needs a bool condition as its first input, got {c}",
                               hint="make one with a comparison op (gt, eq, ...)")
        if x.dtype != y.dtype:
            raise OpCheckError(f"'where' dtypes of the two branches differ: {x} vs {y}")
        shape = broadcast(broadcast(c.shape, x.shape), y.shape)
        return [x.with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.where({0}, {1}, {2})")


register(Abs)
register(Clamp)
register(Sum)
register(Where)
