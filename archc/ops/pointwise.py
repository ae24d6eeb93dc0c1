"""Elementwise math beyond the binary arithmetic: abs, clamp, sum, comparisons, where, complex_mul; and expand.

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
from archc.ops.shape import axis

__all__ = ["Abs", "Clamp", "Sum", "Expand", "Compare", "Where", "ComplexMul"]


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
    """Two or more inputs: y = x₀ + x₁ + … (broadcast). One input: the sum over ``dims`` (like ``mean``)."""

    name = "sum"
    doc = ("Elementwise sum of two or more inputs (broadcast), e.g. the branches of a multi-path block; with one "
           "input, the sum over the non-batch axes 'dims' (keepdim default true)")
    arity = (1, None)
    attrs = (Attr("dims", "ints", None, "axes to reduce, for one input (not 0)"), Attr("keepdim", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if len(ins) == 1:
            if not a["dims"]:
                raise OpCheckError("'sum' of one input reduces it over 'dims', and none are given", "dims",
                                   hint="e.g. 'dims: [-1]', or give two or more inputs to add")
            x = ins[0]
            dims = {axis(self.name, "dims", d, x.rank) for d in a["dims"]}
            if len(dims) != len(a["dims"]):
                raise OpCheckError(f"'sum' dims {list(a['dims'])} name an axis twice (rank {x.rank})", "dims")
            if a["keepdim"]:
                return [x.with_shape(tuple(1 if i in dims else d for i, d in enumerate(x.shape)))]
            return [x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in dims))]
        if a["dims"] is not None:
            raise OpCheckError(f"'sum' of {len(ins)} inputs adds them elementwise and takes no 'dims'", "dims",
                               hint="drop 'dims', or sum the result in a node of its own")
        shape = ins[0].shape
        for i, t in enumerate(ins[1:], 1):
            if t.dtype != ins[0].dtype:
                raise OpCheckError(f"'sum' dtypes differ: input 0 is {ins[0]}, input {i} is {t}")
            shape = broadcast(shape, t.shape)
        return [ins[0].with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if len(ins) == 1:
            return Lowering(None, "{0}.sum({dims}, keepdim={keepdim})", {"dims": list(a["dims"]), "keepdim": a["keepdim"]})
        return Lowering(None, " + ".join(f"{{{i}}}" for i in range(len(ins))))


class Expand(Op):
    """y = x broadcast to the batch of a reference: x has axis 0 of size 1 (a class token), the output the reference's batch."""

    name = "expand"
    nonfloat_inputs = None
    doc = "Broadcast a size-1 axis 0 (e.g. a class-token param (1, 1, C)) to the batch of the second input; a view, no copy"
    arity = (2, 2)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, ref = ins
        if x.rank < 1 or x.shape[0] != 1:
            raise OpCheckError(f"'expand' broadcasts an axis 0 of size 1 to the batch, got {x}",
                               hint="declare the tensor with a leading 1, e.g. param shape [1, 1, C]")
        if ref.rank < 1:
            raise OpCheckError(f"'expand' takes the batch from its second input, got {ref}")
        return [x.with_shape((ref.shape[0], *x.shape[1:]))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        keep = ", ".join(["-1"] * (ins[0].rank - 1))
        return Lowering(None, f"{{0}}.expand([{{1}}.shape[0]{', ' + keep if keep else ''}])")


class Compare(Op):
    """y = (a ⋄ b) as bool, b a second input or the constant ``value``."""

    arity = (1, 2)
    symbol = "=="
    nonfloat_inputs = None
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


class ComplexMul(Op):
    """(a_r + i·a_i)(b_r + i·b_i) on tensors packed as a trailing (real, imag) axis of size 2, broadcast."""

    name = "complex_mul"
    doc = ("Complex product of two tensors packed as (..., 2) = (real, imag), broadcast — e.g. an rfft2 spectrum times a "
           "learnable complex filter param stored as real pairs (GFNet's global filter)")
    arity = (2, 2)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, y = ins
        for name, t in (("first", x), ("second", y)):
            if t.rank < 1 or t.shape[-1] != 2:
                raise OpCheckError(f"'complex_mul' needs a trailing (real, imag) axis of size 2 on its {name} input, got {t}",
                                   hint="feed the output of 'rfft2' and a param of shape [..., 2]")
        if x.dtype != y.dtype:
            raise OpCheckError(f"'complex_mul' dtypes differ: {x} vs {y}")
        return [x.with_shape((*broadcast(x.shape[:-1], y.shape[:-1]), 2))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        # real arithmetic (no complex dtype): every target, ONNX included, takes it
        re = "{0}[..., 0] * {1}[..., 0] - {0}[..., 1] * {1}[..., 1]"
        im = "{0}[..., 0] * {1}[..., 1] + {0}[..., 1] * {1}[..., 0]"
        return Lowering(None, f"torch.stack([{re}, {im}], -1)")


class Where(Op):
    """y = a where cond else b (cond bool; all three broadcast)."""

    name = "where"
    nonfloat_inputs = (0,)
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
register(Expand)
register(Where)
register(ComplexMul)
