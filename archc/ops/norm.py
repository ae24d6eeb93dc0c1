"""Normalization layers: batch norm, layer norm (channels-last and channels-first), group norm, GRN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register

__all__ = ["BatchNorm", "LayerNorm", "LayerNorm2d", "GroupNorm", "GRN"]


def _channels(x: TensorType, axis: int, op: str) -> int:
    if x.rank < 2:
        raise OpCheckError(f"'{op}' needs at least 2 dims, got {x}")
    return dim_int(x.shape[axis])


class BatchNorm(Op):
    name = "batchnorm"
    doc = "Batch normalization over channel axis 1 (NC, NCL or NCHW)."
    attrs = (Attr("eps", "float", 1e-5, min=0.0), Attr("momentum", "float", 0.1, min=0.0), Attr("affine", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if ins[0].rank not in (2, 3, 4, 5):
            raise OpCheckError(f"'batchnorm' expects a rank 2-5 input, got {ins[0]}")
        return [ins[0]]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = _channels(ins[0], 1, self.name)
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = _channels(ins[0], 1, self.name)
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        cls = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d", 5: "nn.BatchNorm3d"}[ins[0].rank]
        kw: dict[str, Any] = {}
        if a["eps"] != 1e-5:
            kw["eps"] = a["eps"]
        if a["momentum"] != 0.1:
            kw["momentum"] = a["momentum"]
        if not a["affine"]:
            kw["affine"] = False
        return Lowering(Call(cls, (ins[0].shape[1],), kw), "{m}({0})")


class LayerNorm(Op):
    name = "layernorm"
    doc = "Layer normalization over the last axis (channels-last)."
    attrs = (Attr("eps", "float", 1e-5, min=0.0), Attr("affine", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        _channels(ins[0], -1, self.name)
        return [ins[0]]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = dim_int(ins[0].shape[-1])
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def _kw(self, a: Mapping[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if a["eps"] != 1e-5:
            kw["eps"] = a["eps"]
        if not a["affine"]:
            kw["elementwise_affine"] = False
        return kw

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call("nn.LayerNorm", (ins[0].shape[-1],), self._kw(a)), "{m}({0})")


class LayerNorm2d(LayerNorm):
    name = "layernorm2d"
    doc = "Layer normalization over the channel axis of NCHW (channels-first)."

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if ins[0].rank != 4:
            raise OpCheckError(f"'layernorm2d' expects an NCHW input, got {ins[0]}")
        return [ins[0]]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = dim_int(ins[0].shape[1])
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(Call("LayerNorm2d", (ins[0].shape[1],), self._kw(a)), "{m}({0})", helpers=("LayerNorm2d",))


class GroupNorm(Op):
    name = "groupnorm"
    doc = "Group normalization over NC... inputs."
    attrs = (Attr("groups", "int", 1, min=1), Attr("eps", "float", 1e-5, min=0.0), Attr("affine", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        c = _channels(ins[0], 1, self.name)
        if c % a["groups"]:
            raise OpCheckError(f"groups={a['groups']} must divide the channels ({c})", "groups")
        per_group = c // a["groups"]
        for d in ins[0].shape[2:]:
            per_group *= d if isinstance(d, int) else 2
        if per_group == 1:
            # F.group_norm refuses this in eval mode too ("Expected more than 1 value per channel")
            raise OpCheckError(f"groupnorm needs more than one value per group and sample; input {ins[0]} with "
                               f"groups={a['groups']} has one (normalizing it would give 0)", "groups")
        return [ins[0]]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = dim_int(ins[0].shape[1])
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        kw: dict[str, Any] = {}
        if a["eps"] != 1e-5:
            kw["eps"] = a["eps"]
        if not a["affine"]:
            kw["affine"] = False
        return Lowering(Call("nn.GroupNorm", (a["groups"], ins[0].shape[1]), kw), "{m}({0})")


class GRN(Op):
    name = "grn"
    doc = "Global response normalization (ConvNeXt V2): x + γ·(x·N(x)) + β, N = ‖x‖₂,hw / mean_c ‖x‖₂,hw."
    attrs = (Attr("channels_last", "bool", False), Attr("eps", "float", 1e-6, min=0.0), Attr("bias", "bool", True))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        if ins[0].rank != 4:
            raise OpCheckError(f"'grn' expects a rank-4 input, got {ins[0]}")
        return [ins[0]]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = dim_int(ins[0].shape[-1] if a["channels_last"] else ins[0].shape[1])
        p = {"gamma": (c,)}
        if a["bias"]:
            p["beta"] = (c,)
        return p

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        c = ins[0].shape[-1] if a["channels_last"] else ins[0].shape[1]
        kw: dict[str, Any] = {"channels_last": a["channels_last"]}
        if a["eps"] != 1e-6:
            kw["eps"] = a["eps"]
        if not a["bias"]:
            kw["bias"] = False
        return Lowering(Call("GRN", (c,), kw), "{m}({0})", helpers=("GRN",))


for _cls in (BatchNorm, LayerNorm, LayerNorm2d, GroupNorm, GRN):
    register(_cls)

helper(
    "LayerNorm2d",
    '''
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
''',
)

helper(
    "GRN",
    '''
class GRN(nn.Module):
    """Global response normalization: x + gamma * (x * nx) + beta."""

    def __init__(self, dim: int, channels_last: bool = False, eps: float = 1e-6, bias: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
            shape = [1, 1, 1, -1]
        else:
            gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
            nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
            shape = [1, -1, 1, 1]
        out = x + self.gamma.view(shape) * (x * nx)
        if self.beta is not None:
            out = out + self.beta.view(shape)
        return out
''',
)
