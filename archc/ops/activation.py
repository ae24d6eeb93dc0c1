"""Pointwise activations. Each is its own op; none has parameters or MACs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Lowering, Op, register

__all__ = ["Activation"]


class Activation(Op):
    """A shape-preserving pointwise function lowered to one ``F.*`` call."""

    template = "F.relu({0})"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, self.template, dict(a))


def _act(name: str, template: str, doc: str, attrs: tuple[Attr, ...] = ()) -> None:
    cls = type(name.title().replace("_", ""), (Activation,), {"name": name, "template": template, "doc": doc, "attrs": attrs})
    register(cls)


_act("relu", "F.relu({0})", "max(x, 0)")
_act("relu6", "F.relu6({0})", "min(max(x, 0), 6)")
_act("gelu", "F.gelu({0})", "Gaussian error linear unit (exact erf form)")
_act("gelu_tanh", "F.gelu({0}, approximate='tanh')", "GELU, tanh approximation")
_act("silu", "F.silu({0})", "x·sigmoid(x) (swish)")
_act("sigmoid", "torch.sigmoid({0})", "1 / (1 + e^−x)")
_act("tanh", "torch.tanh({0})", "hyperbolic tangent")
_act("hardswish", "F.hardswish({0})", "x·relu6(x + 3)/6")
_act("hardsigmoid", "F.hardsigmoid({0})", "relu6(x + 3)/6")
_act("mish", "F.mish({0})", "x·tanh(softplus(x))")
_act("leaky_relu", "F.leaky_relu({0}, {slope})", "max(x, slope·x)", (Attr("slope", "float", 0.01),))
_act("elu", "F.elu({0}, {alpha})", "exponential linear unit", (Attr("alpha", "float", 1.0),))
_act("softplus", "F.softplus({0})", "log(1 + e^x)")
