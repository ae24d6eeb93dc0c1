"""Identity and the regularizers (dropout, drop-path); the real 2-D FFT pair lives in ``archc.ops.fft``.

Dropout and drop-path are ``train_only``: identities in eval mode, removable at deploy time. None of
these ops has parameters or MACs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, helper, register

__all__ = ["Identity", "Dropout", "StochasticDepth"]


def _check_p(op: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise OpCheckError(f"'{op}' probability p must be in [0, 1), got {p!r}", "p")


class Identity(Op):
    """y = x."""

    name = "identity"
    doc = "y = x"

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "{0}")


class Dropout(Op):
    """Training: zero each element with probability p and scale the rest by 1/(1−p); eval: y = x."""

    name = "dropout"
    doc = "Elementwise dropout (nn.Dropout); identity in eval."
    train_only = True
    attrs = (Attr("p", "float", 0.5, "drop probability in [0, 1)", min=0.0),)

    def check(self, a: dict[str, Any]) -> None:
        _check_p(self.name, a["p"])

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        return [ins[0]]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call("nn.Dropout", (a["p"],)), "{m}({0})")


class StochasticDepth(Dropout):
    """Stochastic depth. Training: zero whole samples with probability p, scale survivors by 1/(1−p); eval: y = x."""

    name = "drop_path"
    doc = "Per-sample stochastic depth (timm DropPath); identity in eval."
    attrs = (Attr("p", "float", 0.0, "drop probability in [0, 1)", min=0.0),)

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call("DropPath", (a["p"],)), "{m}({0})", helpers=("DropPath",))


for _cls in (Identity, Dropout, StochasticDepth):
    register(_cls)

helper(
    "DropPath",
    '''
class DropPath(nn.Module):
    """Stochastic depth: in training zero whole samples with probability p, scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask.div_(keep)
''',
)
