"""LSNet's small-kernel aggregation (SKA): a per-pixel dynamic depthwise k×k aggregation.

Inputs: ``x`` (B, C, H, W) and dynamic weights ``w`` with G weight channels, either in the official
layout (B, G, k², H, W) or flat (B, G·k², H, W) (the same memory, as the GroupNorm of LSNet's LKP
emits it). G must divide C; channel c uses weight channel ``c mod G`` (LSNet: G = C/8, so each
weight map is shared by the 8 channels c ≡ g (mod G), i.e. channels g, g+G, g+2G, ...)::

    y[b, c, i, j] = Σ_{p, q < k} x[b, c, i + p − r, j + q − r] · w[b, c mod G, p·k + q, i, j]

with r = (k − 1)/2 and zero padding (k odd; stride 1; output shape = x's shape).

Lowering, plain torch: ``F.unfold`` gathers the k×k neighbourhoods, then an elementwise multiply
with the broadcast weights and a sum over the k² taps. MACs: 0 by convention — the actual
C·H·W·k² multiply-adds per sample are not counted (LSNet's reported 0.315 G MACs exclude SKA), and
the lowering uses no conv/matmul, so ``torch.utils.flop_counter`` sees 0 as well. No params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, helper, register

__all__ = ["SKA"]


class SKA(Op):
    """Per-pixel dynamic depthwise k×k aggregation (LSNet SKA); channel c uses weight channel c mod G."""

    name = "ska"
    uncounted = "per-pixel dynamic k×k aggregation (C·H·W·k² multiply-adds), left out as in LSNet"
    doc = "LSNet small-kernel aggregation: per-pixel dynamic k×k depthwise weights (B, G, k², H, W), channel c uses c mod G; 0 MACs"
    arity = (2, 2)
    counts_activations = True
    attrs = (Attr("kernel", "int", 3, "kernel size k (odd)", min=1),)

    def check(self, a: dict[str, Any]) -> None:
        if a["kernel"] % 2 == 0:
            raise OpCheckError(
                f"'ska' needs an odd kernel (padding (k-1)/2 keeps H×W), got kernel={a['kernel']}", "kernel"
            )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x, w = ins[0], ins[1]
        k2 = a["kernel"] ** 2
        if x.rank != 4:
            raise OpCheckError(f"'ska' expects an NCHW input x, got {x}")
        if x.dtype != w.dtype:
            raise OpCheckError(f"'ska' dtypes differ: x {x} vs weights {w}")
        b, c, h, wd = x.shape
        if w.rank == 5:
            g, taps, spatial = w.shape[1], w.shape[2], tuple(w.shape[3:])
        elif w.rank == 4:
            if w.shape[1] % k2:
                raise OpCheckError(
                    f"'ska' flat weights need G·k² channels (k² = {k2}), got {w.shape[1]} in {w}",
                    "kernel",
                )
            g, taps, spatial = w.shape[1] // k2, k2, tuple(w.shape[2:])
        else:
            raise OpCheckError(f"'ska' weights must be (B, G, k², H, W) or (B, G·k², H, W), got {w}")
        if w.shape[0] != b:
            raise OpCheckError(f"'ska': batch of the weights ({w.shape[0]}) differs from the batch of x ({b})")
        if taps != k2:
            raise OpCheckError(f"'ska' kernel={a['kernel']} needs {k2} taps, the weights have {taps} ({w})", "kernel")
        if spatial != (h, wd):
            raise OpCheckError(f"'ska': weights are per pixel, their spatial size {spatial} must equal x's {(h, wd)}")
        if c % g:
            raise OpCheckError(f"'ska': the {g} weight channels must divide the {c} channels of x")
        return [x]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call("SKA", (a["kernel"],), names=("kernel_size",)), "{m}({0}, {1})", helpers=("SKA",))


register(SKA)

helper(
    "SKA",
    '''
class SKA(nn.Module):
    """LSNet small-kernel aggregation: y[b,c] = sum over k*k taps of x's neighbourhood times the
    per-pixel weights w[b, c mod G]; w is (B, G, k*k, H, W) or (B, G*k*k, H, W). No conv/matmul."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        k = self.kernel_size
        g = w.shape[1] if w.dim() == 5 else w.shape[1] // (k * k)
        cols = F.unfold(x, k, padding=(k - 1) // 2).reshape(B, C // g, g, k * k, H, W)
        return (cols * w.reshape(B, 1, g, k * k, H, W)).sum(3).reshape(B, C, H, W)
''',
)
