"""Identity, regularizers (dropout, drop-path) and the real 2-D FFT pair.

Dropout and drop-path are ``train_only``: identities in eval mode, removable at deploy time.

The FFT ops keep the graph real: ``rfft2`` packs its complex result as a trailing axis of size 2
holding (real, imaginary) — (B, …, H, W) → (B, …, H, W//2+1, 2) — and ``irfft2`` takes that
packing back to (B, …, H, W). None of these ops has parameters or MACs (FlopCounterMode does not
count FFTs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register

__all__ = ["Identity", "Dropout", "StochasticDepth", "RFFT2", "IRFFT2"]

FFT_NORMS = ("backward", "ortho", "forward")


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


class RFFT2(Op):
    """y[..., 0] + i·y[..., 1] = rfft2(x, norm) over the last two axes: (B, …, H, W) → (B, …, H, W//2+1, 2)."""

    name = "rfft2"
    uncounted = "the FFT (O(HW log HW) per channel)"
    doc = "Real 2-D FFT over the last two axes; complex output packed as a trailing (real, imag) axis."
    attrs = (Attr("norm", "str", "backward", "FFT normalization", choices=FFT_NORMS),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 3:
            raise OpCheckError(f"'rfft2' transforms the last two axes and needs a rank >= 3 input (batch first), got {x}")
        return [x.with_shape((*x.shape[:-1], dim_int(x.shape[-1]) // 2 + 1, 2))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.view_as_real(torch.fft.rfft2({0}, norm={norm}))", {"norm": a["norm"]})


class IRFFT2(Op):
    """y = irfft2(x[..., 0] + i·x[..., 1], s=size, norm): (B, …, H, W//2+1, 2) → (B, …, H, W); inverts rfft2."""

    name = "irfft2"
    uncounted = "the inverse FFT (O(HW log HW) per channel)"
    doc = "Inverse real 2-D FFT of the (real, imag)-packed spectrum produced by rfft2; size gives (H, W)."
    attrs = (
        Attr("size", "pair", doc="output (H, W)", min=1),
        Attr("norm", "str", "backward", "FFT normalization", choices=FFT_NORMS),
    )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 4 or x.shape[-1] != 2:
            raise OpCheckError(
                f"'irfft2' expects a packed spectrum (B, ..., H, W//2+1, 2) of rank >= 4, got {x}",
                hint="feed the output of 'rfft2'",
            )
        h, w = a["size"]
        if x.shape[-3] != h or x.shape[-2] != w // 2 + 1:
            raise OpCheckError(
                f"'irfft2' size [{h}, {w}] needs a spectrum of (..., {h}, {w // 2 + 1}, 2), got {x}", "size"
            )
        return [x.with_shape((*x.shape[:-3], h, w))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(
            None,
            "torch.fft.irfft2(torch.complex({0}[..., 0], {0}[..., 1]), s={size}, norm={norm})",
            {"size": list(a["size"]), "norm": a["norm"]},
        )


for _cls in (Identity, Dropout, StochasticDepth, RFFT2, IRFFT2):
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
