"""Hand-written reference implementation of TransXNet (T / S / B).

Written from the architecture description of
"TransXNet: Learning Both Global and Local Dynamics with a Dual Dynamic Token
Mixer for Visual Recognition" (Lou et al.), matching the official ImageNet
classification model (LMMMEng/TransXNet, models/transxnet.py) layer for layer
so that parameter counts, MACs and state-dict shapes agree.

Purpose inside archc: ground truth for parameter / MAC counts and a latency
baseline. Eval-only: stochastic depth (drop path) and dropout are omitted
(both are identities in eval mode; all released configs use dropout 0).

Only depends on torch.
"""
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TransXNet", "CONFIGS", "transxnet_t", "transxnet_s", "transxnet_b"]


CONFIGS: dict[str, dict[str, Sequence]] = {
    "t": dict(depths=(3, 3, 9, 3), dims=(48, 96, 224, 448), kernel_sizes=(7, 7, 7, 7),
              num_groups=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), num_heads=(1, 2, 4, 8),
              mlp_ratios=(4, 4, 4, 4)),
    "s": dict(depths=(4, 4, 12, 4), dims=(64, 128, 320, 512), kernel_sizes=(7, 7, 7, 7),
              num_groups=(2, 2, 3, 4), sr_ratios=(8, 4, 2, 1), num_heads=(1, 2, 5, 8),
              mlp_ratios=(6, 6, 4, 4)),
    "b": dict(depths=(4, 4, 21, 4), dims=(76, 152, 336, 672), kernel_sizes=(7, 7, 7, 7),
              num_groups=(2, 2, 4, 4), sr_ratios=(8, 4, 2, 1), num_heads=(2, 4, 8, 16),
              mlp_ratios=(8, 8, 4, 4)),
}


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0,
             groups: int = 1, act: bool = False) -> nn.Sequential:
    """Bias-free conv -> BatchNorm (-> GELU)."""
    layers = [nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
              nn.BatchNorm2d(out_chs)]
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class LayerScale2d(nn.Module):
    """Per-channel affine y = gamma * x + beta, with a learnable bias (2*C params).

    Applied as a depthwise 1x1 conv, as in the official model: same state-dict shapes
    (weight [C, 1, 1, 1], bias [C]) and the flop counter counts it (C*H*W MACs), which is
    part of the reference 1.807 GMACs of TransXNet-T.
    """

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), init_value))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, groups=x.shape[1])


class IDConv(nn.Module):
    """Input-dependent depthwise conv (the "DynamicConv2d" of the paper).

    G static kernel banks W[G, C, K, K] and biases b[G, C] are mixed per sample by
    softmax-over-G attention maps predicted from the input.
    """

    def __init__(self, dim: int, kernel_size: int = 7, num_groups: int = 2, reduction: int = 4):
        super().__init__()
        assert num_groups > 1
        self.dim = dim
        self.kernel_size = kernel_size
        self.num_groups = num_groups
        self.weight = nn.Parameter(torch.empty(num_groups, dim, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_groups, dim))
        self.pool = nn.AdaptiveAvgPool2d(kernel_size)
        hidden = dim // reduction
        self.proj = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, dim * num_groups, 1, bias=True),
        )
        nn.init.trunc_normal_(self.weight, std=0.02)
        nn.init.trunc_normal_(self.bias, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        G, K = self.num_groups, self.kernel_size
        # kernel: attention over the G banks at every kernel tap
        attn_w = self.proj(self.pool(x)).reshape(B, G, C, K, K).softmax(dim=1)
        weight = (attn_w * self.weight.unsqueeze(0)).sum(dim=1)            # B, C, K, K
        # bias: same projection applied to the global mean
        attn_b = self.proj(x.mean(dim=(2, 3), keepdim=True)).reshape(B, G, C).softmax(dim=1)
        bias = (attn_b * self.bias.unsqueeze(0)).sum(dim=1)                 # B, C
        # per-sample depthwise conv as one grouped conv over the folded batch
        out = F.conv2d(x.reshape(1, B * C, H, W), weight.reshape(B * C, 1, K, K),
                       bias.reshape(B * C), padding=K // 2, groups=B * C)
        return out.reshape(B, C, H, W)


class OSRA(nn.Module):
    """Overlapping spatial-reduction attention (no output projection)."""

    def __init__(self, dim: int, num_heads: int = 1, sr_ratio: int = 1, fused_attn: bool = True):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = fused_attn
        self.q = nn.Conv2d(dim, dim, 1)
        if sr_ratio > 1:
            self.sr = nn.Sequential(
                _conv_bn(dim, dim, sr_ratio + 3, stride=sr_ratio, padding=(sr_ratio + 3) // 2,
                         groups=dim, act=True),
                _conv_bn(dim, dim, 1, groups=dim),
            )
        else:
            self.sr = nn.Identity()
        self.local_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.kv = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor, rel_pos: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(x).reshape(B, h, d, H * W).transpose(-1, -2)            # B, h, N, d
        kv = self.sr(x)
        kv = self.local_conv(kv) + kv
        k, v = self.kv(kv).chunk(2, dim=1)                                  # each B, C, h', w'
        k = k.reshape(B, h, d, -1).transpose(-1, -2)                        # B, h, M, d
        v = v.reshape(B, h, d, -1).transpose(-1, -2)                        # B, h, M, d
        if rel_pos is not None and rel_pos.shape[-2:] != (q.shape[-2], k.shape[-2]):
            rel_pos = F.interpolate(rel_pos, size=(q.shape[-2], k.shape[-2]),
                                    mode="bicubic", align_corners=False)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if rel_pos is None else rel_pos.to(q.dtype), scale=self.scale)
        else:
            attn = (q @ k.transpose(-1, -2)) * self.scale
            if rel_pos is not None:
                attn = attn + rel_pos
            out = attn.softmax(dim=-1) @ v
        return out.transpose(-1, -2).reshape(B, C, H, W)


class DMixer(nn.Module):
    """Dual dynamic token mixer: IDConv on one half, OSRA on the other, then STE."""

    def __init__(self, dim: int, kernel_size: int = 7, num_groups: int = 2, num_heads: int = 1,
                 sr_ratio: int = 1, reduction: int = 8, fused_attn: bool = True):
        super().__init__()
        assert dim % 2 == 0
        half = dim // 2
        self.local_unit = IDConv(half, kernel_size=kernel_size, num_groups=num_groups)
        self.global_unit = OSRA(half, num_heads=num_heads, sr_ratio=sr_ratio, fused_attn=fused_attn)
        inner = max(16, dim // reduction)
        self.proj = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
            nn.GELU(),
            nn.BatchNorm2d(dim),
            nn.Conv2d(dim, inner, 1),
            nn.GELU(),
            nn.BatchNorm2d(inner),
            nn.Conv2d(inner, dim, 1),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor, rel_pos: torch.Tensor | None = None) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        x = torch.cat([self.local_unit(x1), self.global_unit(x2, rel_pos)], dim=1)
        return self.proj(x) + x


class MultiScaleDWConv(nn.Module):
    """Split channels into len(kernel_sizes) groups, depthwise conv each with its own kernel size."""

    def __init__(self, dim: int, kernel_sizes: Sequence[int] = (1, 3, 5, 7)):
        super().__init__()
        n = len(kernel_sizes)
        self.splits: list[int] = [dim - (dim // n) * (n - 1)] + [dim // n] * (n - 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, k, padding=k // 2, groups=c) for c, k in zip(self.splits, kernel_sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.split(self.splits, dim=1)
        return torch.cat([conv(t) for conv, t in zip(self.convs, xs)], dim=1)


class MSFFN(nn.Module):
    """Multi-scale feed-forward network."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.GELU(), nn.BatchNorm2d(hidden))
        self.dwconv = MultiScaleDWConv(hidden)
        self.act = nn.GELU()
        self.norm = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Sequential(nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = self.dwconv(x) + x
        x = self.norm(self.act(x))
        return self.fc2(x)


class TransXNetBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 7, num_groups: int = 2, num_heads: int = 1,
                 sr_ratio: int = 1, mlp_ratio: float = 4.0, ls_init: float = 1e-5,
                 fused_attn: bool = True):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm1 = nn.GroupNorm(1, dim)
        self.token_mixer = DMixer(dim, kernel_size, num_groups, num_heads, sr_ratio, fused_attn=fused_attn)
        self.ls1 = LayerScale2d(dim, ls_init)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = MSFFN(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale2d(dim, ls_init)

    def forward(self, x: torch.Tensor, rel_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.ls1(self.token_mixer(self.norm1(x), rel_pos))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


class TransXNetStage(nn.Module):
    """Optional downsample + blocks; owns the relative position encoding shared by all its blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool, feat_size: int,
                 kernel_size: int, num_groups: int, num_heads: int, sr_ratio: int,
                 mlp_ratio: float, ls_init: float, fused_attn: bool):
        super().__init__()
        self.downsample = _conv_bn(in_dim, dim, 3, stride=2, padding=1) if downsample else nn.Identity()
        n = feat_size * feat_size
        n_sr = math.ceil(feat_size / sr_ratio) ** 2
        self.relative_pos_enc = nn.Parameter(torch.zeros(1, num_heads, n, n_sr))
        self.blocks = nn.ModuleList(
            TransXNetBlock(dim, kernel_size, num_groups, num_heads, sr_ratio, mlp_ratio, ls_init, fused_attn)
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for blk in self.blocks:
            x = blk(x, self.relative_pos_enc)
        return x


class TransXNet(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(48, 96, 224, 448), kernel_sizes=(7, 7, 7, 7),
                 num_groups=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), num_heads=(1, 2, 4, 8),
                 mlp_ratios=(4, 4, 4, 4), ls_init: float = 1e-5, num_classes: int = 1000,
                 in_chans: int = 3, img_size: int = 224, fused_attn: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.stem = _conv_bn(in_chans, dims[0], 7, stride=4, padding=3)
        feat = math.ceil(img_size / 4)   # rel-pos sizes are fixed at build resolution
        stages = []
        for i in range(4):
            stages.append(TransXNetStage(
                dims[i - 1] if i > 0 else dims[0], dims[i], depths[i], downsample=i > 0,
                feat_size=feat, kernel_size=kernel_sizes[i], num_groups=num_groups[i],
                num_heads=num_heads[i], sr_ratio=sr_ratios[i], mlp_ratio=mlp_ratios[i],
                ls_init=ls_init, fused_attn=fused_attn))
            feat = math.ceil(feat / 2)
        self.stages = nn.Sequential(*stages)
        self.norm = nn.GroupNorm(1, dims[-1])
        self.head = nn.Conv2d(dims[-1], num_classes, 1)
        self.apply(self._init_weights)
        self.eval()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).mean(dim=(2, 3), keepdim=True)
        return self.head(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, **kwargs) -> TransXNet:
    cfg = dict(CONFIGS[variant])
    cfg.update(kwargs)
    return TransXNet(**cfg)


def transxnet_t(**kwargs) -> TransXNet:
    return _create("t", **kwargs)


def transxnet_s(**kwargs) -> TransXNet:
    return _create("s", **kwargs)


def transxnet_b(**kwargs) -> TransXNet:
    return _create("b", **kwargs)
