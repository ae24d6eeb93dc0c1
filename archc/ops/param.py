"""A free-standing learnable tensor (e.g. TransXNet's relative position encoding, class tokens).

The ``param`` op has no inputs: its value is an ``nn.Parameter`` of exactly the declared ``shape``
(no batch dimension is added). The generated module attribute *is* the parameter, so its
state_dict key is the node path itself; :meth:`Param.params` reports it under the empty suffix
``""``, which means "the attribute itself" (not a sub-key such as ``weight``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, register

__all__ = ["Param", "INITS"]

INITS = ("zeros", "ones", "normal", "trunc_normal", "constant")


class Param(Op):
    name = "param"
    doc = (
        "A learnable tensor of the given shape (no batch dim), no inputs. init: zeros | ones | "
        "normal (N(0, std²)) | trunc_normal (N(0, std²) truncated to [−2, 2]) | constant (value)."
    )
    arity = (0, 0)
    attrs = (
        Attr("shape", "shape", doc="the tensor's shape, without a batch dimension", min=1),
        Attr("init", "str", "zeros", "initializer", choices=INITS),
        Attr("std", "float", 0.02, "standard deviation for normal / trunc_normal", min=0.0),
        Attr("value", "float", None, "fill value for init 'constant'"),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["init"] == "constant" and a["value"] is None:
            raise OpCheckError("param with init 'constant' needs a 'value'", "value", "add 'value: <number>'")
        if a["value"] is not None and a["init"] != "constant":
            raise OpCheckError(
                f"param attribute 'value' is only used with init 'constant', got init {a['init']!r}", "value",
                "set 'init: constant' or drop 'value'",
            )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [TensorType(tuple(a["shape"]))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        # "" = the generated attribute itself is the parameter (state_dict key = the node path)
        return {"": tuple(a["shape"])}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        shape = tuple(a["shape"])
        init = a["init"]
        if init == "zeros":
            t = Call("torch.zeros", (shape,))
        elif init == "ones":
            t = Call("torch.ones", (shape,))
        elif init == "constant":
            t = Call("torch.full", (shape, a["value"]))
        elif init == "normal":
            t = Call("nn.init.normal_", (Call("torch.empty", (shape,)),), {"std": a["std"]})
        else:
            t = Call("nn.init.trunc_normal_", (Call("torch.empty", (shape,)),), {"std": a["std"]})
        return Lowering(Call("nn.Parameter", (t,)), "{m}")


register(Param)
