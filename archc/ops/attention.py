"""Attention: multi-head attention over NCHW maps and plain scaled-dot-product attention.

Both lower to explicit matmuls ``softmax((q @ kᵀ)·scale + bias) @ v``, which
``torch.utils.flop_counter`` counts exactly (two bmm: ``N·M·d + N·M·d_v`` MACs per head) on every
device and memory layout. ``F.scaled_dot_product_attention`` is deliberately not used: on CPU it
dispatches, depending on the inputs' strides and dtypes, to a flash kernel the flop counter does not
count (0 MACs), so its observed count would not be reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import Dim, TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, helper, register

__all__ = ["Attention2d", "SDPA"]


def _same_batch(op: str, names: Sequence[str], ts: Sequence[TensorType]) -> Dim:
    b = ts[0].shape[0]
    for n, t in zip(names[1:], ts[1:]):
        if t.shape[0] != b:
            raise OpCheckError(f"'{op}': batch of {n} ({t.shape[0]}) differs from the batch of {names[0]} ({b})")
    return b


def _check_bias(op: str, bias: TensorType, batch: Dim, heads: int, n: int, m: int, resize: bool) -> None:
    """bias: (1 | B, heads, N', M'); N', M' must equal (N, M) unless it is resized."""
    if bias.rank != 4:
        raise OpCheckError(f"'{op}': the bias must be (1 or B, heads, N, M), got {bias}")
    if bias.shape[0] not in (1, batch):
        raise OpCheckError(f"'{op}': bias batch must be 1 or {batch}, got {bias.shape[0]} in {bias}")
    if bias.shape[1] not in (1, heads):
        raise OpCheckError(f"'{op}': bias has {bias.shape[1]} heads, the attention has heads={heads}", "heads")
    if not resize and tuple(bias.shape[2:]) != (n, m):
        raise OpCheckError(f"'{op}': bias last dims {tuple(bias.shape[2:])} must be (N, M) = ({n}, {m})")


class Attention2d(Op):
    """Multi-head attention over NCHW maps.

    q (B,C,H,W), k (B,C,h,w), v (B,Cv,h,w), optional bias (1|B, heads, N', M'), N = H·W, M = h·w.
    Heads are contiguous channel blocks (channel = head·d + j, d = C/heads, d_v = Cv/heads):
    ``out_h = softmax(scale · q_h k_hᵀ + bias_h) v_h``, output (B, Cv, H, W). A bias whose last two
    dims are not (N, M) is first resized with bicubic interpolation (align_corners=False) to (N, M),
    as TransXNet's relative position encoding. scale defaults to d^−½.
    MACs per sample: N·M·C (q·kᵀ) + N·M·Cv (attn·v), two explicit batched matmuls.
    """

    name = "attention2d"
    doc = "softmax(scale·q·kᵀ + bias)·v per head over NCHW maps; bias bicubically resized to (HW, hw)"
    arity = (3, 4)
    attrs = (
        Attr("heads", "int", 1, "number of heads (contiguous channel blocks)", min=1),
        Attr("scale", "float", None, "logit scale (default head_dim^-0.5)"),
    )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        q, k, v = ins[0], ins[1], ins[2]
        for n, t in (("q", q), ("k", k), ("v", v)):
            if t.rank != 4:
                raise OpCheckError(f"'attention2d' expects NCHW inputs, got {n} = {t}")
        b = _same_batch(self.name, ("q", "k", "v"), (q, k, v))
        c, cv, h = q.shape[1], v.shape[1], a["heads"]
        if k.shape[1] != c:
            raise OpCheckError(f"'attention2d': q and k channels must match, got q {c} and k {k.shape[1]}")
        if tuple(k.shape[2:]) != tuple(v.shape[2:]):
            raise OpCheckError(f"'attention2d': k and v spatial sizes must match, got k {k} and v {v}")
        if c % h or cv % h:
            raise OpCheckError(f"'attention2d': heads={h} must divide the q/k channels ({c}) and v channels ({cv})", "heads")
        if len(ins) == 4:
            n, m = q.shape[2] * q.shape[3], k.shape[2] * k.shape[3]
            _check_bias(self.name, ins[3], b, h, n, m, resize=True)
        return [q.with_shape((b, cv, q.shape[2], q.shape[3]))]

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        q, k, v = ins[0].shape, ins[1].shape, ins[2].shape
        n, m = q[2] * q[3], k[2] * k[3]
        return n * m * q[1] + n * m * v[1]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        c, h = ins[0].shape[1], a["heads"]
        fwd = "{m}({0}, {1}, {2}, {3})" if len(ins) == 4 else "{m}({0}, {1}, {2})"
        # the default scale is derived from the channels inside the helper, so instances of a block share code
        call = Call("Attention2d", (h, c), {"scale": a["scale"]}, {"scale": None}, ("heads", "dim"))
        return Lowering(call, fwd, helpers=("Attention2d",))


class SDPA(Op):
    """Scaled-dot-product attention on (B, …, heads, N, d) tensors.

    q (B,…,h,N,d), k (B,…,h,M,d), v (B,…,h,M,d_v) — rank 4, or higher with extra leading axes such as
    Swin's windows (B, nW, h, N, d) — optional additive mask/bias broadcastable to (B,…,h,N,M) (a bool
    mask keeps True entries): ``softmax(scale·q·kᵀ + mask)·v`` → (B,…,h,N,d_v). scale defaults to d^−½.
    MACs per sample: L·(N·M·d + N·M·d_v) with L the product of the axes between batch and N (h, or
    nW·h), two explicit batched matmuls (numerically ``F.scaled_dot_product_attention``).
    """

    name = "sdpa"
    nonfloat_inputs = (3,)  # a bool mask
    doc = "softmax(scale·q·kᵀ + mask)·v on (B, heads, N, d) tensors (or (B, …, heads, N, d), e.g. windows)"
    arity = (3, 4)
    attrs = (Attr("scale", "float", None, "logit scale (default d^-0.5)"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        q, k, v = ins[0], ins[1], ins[2]
        for n, t in (("q", q), ("k", k), ("v", v)):
            if t.rank < 4 or t.rank != q.rank:
                raise OpCheckError(f"'sdpa' expects (B, heads, N, d) inputs (or one rank > 4 for all three), got {n} = {t}")
        b = _same_batch(self.name, ("q", "k", "v"), (q, k, v))
        lead = tuple(q.shape[1:-2])
        if not (lead == tuple(k.shape[1:-2]) == tuple(v.shape[1:-2])):
            what = "head counts" if q.rank == 4 else "axes before (N, d)"
            raise OpCheckError(f"'sdpa': {what} differ: q {q}, k {k}, v {v}")
        if q.shape[-1] != k.shape[-1]:
            raise OpCheckError(f"'sdpa': q and k head dims must match, got q {q.shape[-1]} and k {k.shape[-1]}")
        if k.shape[-2] != v.shape[-2]:
            raise OpCheckError(f"'sdpa': k and v lengths must match, got k {k.shape[-2]} and v {v.shape[-2]}")
        if len(ins) == 4:
            mask = ins[3]
            target = (b, *lead, q.shape[-2], k.shape[-2])
            ms = (1,) * (len(target) - mask.rank) + tuple(mask.shape) if mask.rank <= len(target) else None
            if ms is None or any(x != 1 and x != y for x, y in zip(ms, target)):
                names = "(B, heads, N, M)" if q.rank == 4 else "(B, ..., heads, N, M)"
                raise OpCheckError(f"'sdpa': mask {mask} does not broadcast to {names} = {target}")
        return [q.with_shape((b, *lead, q.shape[-2], v.shape[-1]))]

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        q, k, v = ins[0].shape, ins[1].shape, ins[2].shape
        lead = 1
        for d in q[1:-2]:
            lead *= d
        return lead * q[-2] * k[-2] * (q[-1] + v[-1])

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        scale = a["scale"] if a["scale"] is not None else ins[0].shape[-1] ** -0.5
        logits = "({0} @ {1}.transpose(-2, -1)) * {scale}"
        if len(ins) == 4:
            if ins[3].dtype == "bool":
                logits = "(" + logits + ").masked_fill(~{3}, float('-inf'))"
            else:
                logits = "(" + logits + " + {3})"
        else:
            logits = "(" + logits + ")"
        return Lowering(None, logits + ".softmax(-1) @ {2}", {"scale": scale})


register(Attention2d)
register(SDPA)

helper(
    "Attention2d",
    '''
class Attention2d(nn.Module):
    """Multi-head attention over NCHW maps; heads are contiguous channel blocks.

    softmax(scale * q k^T + bias) v per head; a bias whose last dims are not (H*W, h*w) is
    bicubically resized to them.
    """

    def __init__(self, heads: int, dim: int, scale=None):
        super().__init__()
        self.heads = heads
        self.scale = scale if scale is not None else (dim // heads) ** -0.5

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = q.shape
        Cv = v.shape[1]
        h = self.heads
        q = q.reshape(B, h, C // h, H * W).transpose(-1, -2)
        k = k.reshape(B, h, C // h, -1).transpose(-1, -2)
        v = v.reshape(B, h, Cv // h, -1).transpose(-1, -2)
        if bias is not None:
            if bias.shape[-2] != q.shape[-2] or bias.shape[-1] != k.shape[-2]:
                bias = F.interpolate(bias, size=(q.shape[-2], k.shape[-2]), mode="bicubic", align_corners=False)
        attn = (q @ k.transpose(-1, -2)) * self.scale
        if bias is not None:
            attn = attn + bias.to(attn.dtype)
        out = attn.softmax(dim=-1) @ v
        return out.transpose(-1, -2).reshape(B, Cv, H, W)
''',
)
