"""Binary elementwise arithmetic with broadcasting, and scaling by a constant. No MACs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import Dim, TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, register

__all__ = ["Binary", "broadcast"]


def broadcast(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes (symbolic dims must match exactly or meet a 1)."""
    n = max(len(a), len(b))
    a2 = (1,) * (n - len(a)) + tuple(a)
    b2 = (1,) * (n - len(b)) + tuple(b)
    out: list[Dim] = []
    for x, y in zip(a2, b2):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise OpCheckError(f"shapes {list(a)} and {list(b)} do not broadcast")
    return tuple(out)


class Binary(Op):
    arity = (2, 2)
    symbol = "+"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if ins[0].dtype != ins[1].dtype:
            raise OpCheckError(f"'{self.name}' dtypes differ: {ins[0]} vs {ins[1]}")
        return [ins[0].with_shape(broadcast(ins[0].shape, ins[1].shape))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "{0} " + self.symbol + " {1}")


class Add(Binary):
    name = "add"
    doc = "a + b"
    symbol = "+"


class Sub(Binary):
    name = "sub"
    doc = "a − b"
    symbol = "-"


class Mul(Binary):
    name = "mul"
    doc = "a · b (elementwise)"
    symbol = "*"


class Div(Binary):
    name = "div"
    doc = "a / b (elementwise)"
    symbol = "/"


class Scale(Op):
    name = "scale"
    doc = "x · value + offset for constants (e.g. HorNet's 1/3 scaling of the depthwise branch)"
    attrs = (Attr("value", "float", 1.0), Attr("offset", "float", 0.0))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if a["offset"] == 0.0:
            return Lowering(None, "{0} * {value}", {"value": a["value"]})
        return Lowering(None, "{0} * {value} + {offset}", dict(a))


for _cls in (Add, Sub, Mul, Div, Scale):
    register(_cls)
