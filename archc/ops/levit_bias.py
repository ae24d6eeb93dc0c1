"""LeViT-style learnable attention bias indexed by the absolute 2-D offset between two positions.

``levit_bias`` (no inputs; attrs ``heads`` and ``resolution`` (H, W)) returns the additive attention
bias (1, heads, N, N), N = H·W, for row-major positions n = y·W + x::

    bias[0, h, n1, n2] = attention_biases[h, |y1 − y2|·W + |x1 − x2|]

Params: ``attention_biases`` [heads, H·W] (one per distinct offset (|dy|, |dx|), zeros init); buffer
``attention_bias_idxs`` [N, N] (int64). The offset numbering equals LeViT's / LSNet's first-seen
enumeration, so their checkpoints load as is. Used by LSNet's last-stage attention (fixed
resolution: the bias is not resized for other inputs). A gather: 0 MACs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, helper, register

__all__ = ["LeViTBias"]


class LeViTBias(Op):
    name = "levit_bias"
    doc = "LeViT attention bias (1, heads, N, N) gathered from params [heads, H·W] by |Δy|·W + |Δx|; no inputs"
    arity = (0, 0)
    attrs = (
        Attr("heads", "int", doc="number of heads", min=1),
        Attr("resolution", "pair", doc="token grid (H, W)", min=1),
    )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        h, w = a["resolution"]
        return [TensorType((1, a["heads"], h * w, h * w))]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        h, w = a["resolution"]
        return {"attention_biases": (a["heads"], h * w)}

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        h, w = a["resolution"]
        return {"attention_bias_idxs": (h * w, h * w)}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        h, w = a["resolution"]
        return Lowering(
            Call("LeViTBias", (a["heads"], h, w), names=("heads", "height", "width")), "{m}()", helpers=("LeViTBias",)
        )


register(LeViTBias)

helper(
    "LeViTBias",
    '''
class LeViTBias(nn.Module):
    """Attention bias (1, heads, N, N) from one learnable value per head and |dy|, |dx| offset."""

    def __init__(self, heads: int, height: int, width: int):
        super().__init__()
        self.attention_biases = nn.Parameter(torch.zeros(heads, height * width))
        ys = torch.arange(height).repeat_interleave(width)
        xs = torch.arange(width).repeat(height)
        idxs = (ys[:, None] - ys[None, :]).abs() * width + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idxs)

    def forward(self) -> torch.Tensor:
        return self.attention_biases[:, self.attention_bias_idxs].unsqueeze(0)
''',
)
