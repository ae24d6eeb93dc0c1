"""Input-dependent ops: TransXNet's dynamic depthwise conv (IDConv) and layer scale.

``dynamic_dwconv`` (IDConv, K×K kernel, G candidate kernels, reduction r, hidden = C // r)::

    proj(t) = conv1×1_{hidden→G·C, bias}(GELU(BN(conv1×1_{C→hidden, no bias}(t))))
    A = softmax_G(proj(AdaptiveAvgPool_K(x)))            # (B, G, C, K, K)
    a = softmax_G(proj(mean_hw(x)))                       # (B, G, C)
    kernel_b = Σ_g A_b,g ⊙ W_g,  bias_b = Σ_g a_b,g ⊙ b_g  # W: [G, C, K, K], b: [G, C]
    y_b = depthwise_conv(x_b, kernel_b, bias_b, padding K//2)

run as one grouped conv with groups = B·C over the batch folded into channels. MACs per sample
(exactly what the flop counter sees): the dynamic conv C·H·W·K², plus the projection on the K×K
pooled map (C·hidden + hidden·G·C)·K² and on the 1×1 mean (C·hidden + hidden·G·C).

``layer_scale``: y = γ ⊙ x (+ β) per channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, dim_int, helper, register

__all__ = ["DynamicDWConv", "LayerScale"]


class DynamicDWConv(Op):
    """TransXNet IDConv: a per-sample depthwise K×K conv mixing G kernel banks by softmax attention.

    Params: weight [G, C, K, K], bias [G, C], proj.0.weight [C//r, C, 1, 1], proj.1 (BN of C//r:
    weight, bias), proj.3.weight [G·C, C//r, 1, 1], proj.3.bias [G·C].
    MACs per sample: C·H·W·K² + (C·(C//r) + (C//r)·G·C)·(K² + 1).
    """

    name = "dynamic_dwconv"
    doc = "input-dependent depthwise K×K conv: Σ_g softmax_g(proj(pool_K x))⊙W_g per sample (TransXNet IDConv)"
    counts_activations = True
    attrs = (
        Attr("kernel", "int", 7, "kernel size K (odd)", min=1),
        Attr("groups", "int", 2, "number of kernel candidates G", min=1),
        Attr("reduction", "int", 4, "hidden width of the attention projection is C // reduction", min=1),
    )

    def check(self, a: dict[str, Any]) -> None:
        if a["kernel"] % 2 == 0:
            raise OpCheckError(
                f"dynamic_dwconv needs an odd kernel (padding K//2 keeps H×W), got kernel={a['kernel']}", "kernel"
            )

    def _hidden(self, a: Mapping[str, Any], c: int) -> int:
        return c // a["reduction"]

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank != 4:
            raise OpCheckError(f"'dynamic_dwconv' expects an NCHW input, got {x}")
        c = x.shape[1]
        if c // a["reduction"] < 1:
            raise OpCheckError(
                f"'dynamic_dwconv': reduction={a['reduction']} leaves no hidden channels for C={c} (C // reduction = 0)",
                "reduction", f"use reduction <= {c}",
            )
        return [x]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c, k, g = dim_int(ins[0].shape[1]), a["kernel"], a["groups"]
        hid = self._hidden(a, c)
        return {
            "weight": (g, c, k, k),
            "bias": (g, c),
            "proj.0.weight": (hid, c, 1, 1),
            "proj.1.weight": (hid,),
            "proj.1.bias": (hid,),
            "proj.3.weight": (g * c, hid, 1, 1),
            "proj.3.bias": (g * c,),
        }

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        hid = self._hidden(a, dim_int(ins[0].shape[1]))
        return {"proj.1.running_mean": (hid,), "proj.1.running_var": (hid,), "proj.1.num_batches_tracked": ()}

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        _, c, h, w = ins[0].shape
        k, g = a["kernel"], a["groups"]
        hid = self._hidden(a, c)
        proj = c * hid + hid * g * c
        return c * h * w * k * k + proj * (k * k + 1)

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        kw: dict[str, Any] = {}
        if a["kernel"] != 7:
            kw["kernel_size"] = a["kernel"]
        if a["groups"] != 2:
            kw["num_groups"] = a["groups"]
        if a["reduction"] != 4:
            kw["reduction"] = a["reduction"]
        return Lowering(Call("DynamicDWConv", (ins[0].shape[1],), kw), "{m}({0})", helpers=("DynamicDWConv",))


class LayerScale(Op):
    """Per-channel scale y = γ ⊙ x, or with ``bias`` y = γ ⊙ x + β.

    * bias=false: param ``gamma`` [C], an elementwise multiply (0 MACs); channels on axis 1
      (default) or on the last axis (``channels_last``).
    * bias=true, channels-first: TransXNet's layer scale — ``weight`` [C, 1, 1, 1] and ``bias`` [C]
      applied as a depthwise 1×1 ``F.conv2d(x, weight, bias, groups=C)`` on NCHW, so it counts
      C·H·W MACs per sample (as the flop counter does for the reference).
    * bias=true, channels_last: params ``gamma`` [C], ``beta`` [C], elementwise (0 MACs).
    """

    name = "layer_scale"
    doc = "per-channel y = γ⊙x (+β); with bias on NCHW a depthwise 1×1 conv (TransXNet LS, C·H·W MACs)"
    attrs = (
        Attr("channels_last", "bool", False, "channels on the last axis instead of axis 1"),
        Attr("init", "float", 1e-5, "initial value of γ"),
        Attr("bias", "bool", False, "add a learnable per-channel bias β"),
    )

    def _conv_form(self, a: Mapping[str, Any]) -> bool:
        return bool(a["bias"]) and not a["channels_last"]

    def _c(self, a: Mapping[str, Any], x: TensorType) -> int:
        return dim_int(x.shape[-1] if a["channels_last"] else x.shape[1])

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if self._conv_form(a) and x.rank != 4:
            raise OpCheckError(
                f"'layer_scale' with bias on channels-first data is a depthwise 1x1 conv and needs NCHW, got {x}",
                "bias", "use channels_last: true for (..., C) data or bias: false",
            )
        if x.rank < 2:
            raise OpCheckError(f"'layer_scale' needs at least 2 dims, got {x}")
        return [x]

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = self._c(a, ins[0])
        if self._conv_form(a):
            return {"weight": (c, 1, 1, 1), "bias": (c,)}
        if a["bias"]:
            return {"gamma": (c,), "beta": (c,)}
        return {"gamma": (c,)}

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        if not self._conv_form(a):
            return 0
        _, c, h, w = ins[0].shape
        return c * h * w

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        x = ins[0]
        c = self._c(a, x)
        if self._conv_form(a):
            kw: dict[str, Any] = {} if a["init"] == 1e-5 else {"init_value": a["init"]}
            return Lowering(Call("LayerScale2d", (c,), kw), "{m}({0})", helpers=("LayerScale2d",))
        kw = {"init_value": a["init"]}
        if a["channels_last"]:
            kw["channels_last"] = True
        elif x.rank != 4:
            kw["ndim"] = x.rank
        if a["bias"]:
            kw["bias"] = True
        return Lowering(Call("LayerScale", (c,), kw), "{m}({0})", helpers=("LayerScale",))


register(DynamicDWConv)
register(LayerScale)

helper(
    "DynamicDWConv",
    '''
class DynamicDWConv(nn.Module):
    """Input-dependent depthwise conv (TransXNet IDConv).

    kernel_b = sum_g softmax_g(proj(pool_K(x_b))) * W_g, bias_b likewise from proj(mean_hw(x_b));
    applied as one grouped conv (groups = B*C) over the batch folded into channels.
    """

    def __init__(self, dim: int, kernel_size: int = 7, num_groups: int = 2, reduction: int = 4):
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        self.num_groups = num_groups
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(num_groups, dim, kernel_size, kernel_size), std=0.02))
        self.bias = nn.Parameter(nn.init.trunc_normal_(torch.empty(num_groups, dim), std=0.02))
        self.pool = nn.AdaptiveAvgPool2d(kernel_size)
        hidden = dim // reduction
        self.proj = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, dim * num_groups, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        G = self.num_groups
        K = self.kernel_size
        attn_w = self.proj(self.pool(x)).reshape(B, G, C, K, K).softmax(dim=1)
        weight = (attn_w * self.weight.unsqueeze(0)).sum(dim=1)
        attn_b = self.proj(x.mean(dim=(2, 3), keepdim=True)).reshape(B, G, C).softmax(dim=1)
        bias = (attn_b * self.bias.unsqueeze(0)).sum(dim=1)
        out = F.conv2d(x.reshape(1, B * C, H, W), weight.reshape(B * C, 1, K, K), bias.reshape(B * C),
                       padding=K // 2, groups=B * C)
        return out.reshape(B, C, H, W)
''',
)

helper(
    "LayerScale2d",
    '''
class LayerScale2d(nn.Module):
    """Per-channel y = weight * x + bias on NCHW as a depthwise 1x1 conv (TransXNet layer scale)."""

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), init_value))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, groups=x.shape[1])
''',
)

helper(
    "LayerScale",
    '''
class LayerScale(nn.Module):
    """Per-channel y = gamma * x (+ beta), channels on axis 1 (of an ndim tensor) or on the last axis."""

    def __init__(self, dim: int, init_value: float = 1e-5, channels_last: bool = False, ndim: int = 4,
                 bias: bool = False):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))
        self.beta = nn.Parameter(torch.zeros(dim)) if bias else None
        self.shape = [-1] if channels_last else [-1] + [1] * (ndim - 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * self.gamma.view(self.shape)
        beta = self.beta
        if beta is not None:
            out = out + beta.view(self.shape)
        return out
''',
)
