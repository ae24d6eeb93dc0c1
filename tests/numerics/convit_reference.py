"""An independent ConViT in plain PyTorch, laid out as timm's ConViT (the reference of test_convit).

GPSA builds its positional input the way the paper's code does (``j − i`` tiled for x, interleaved
for y, then the squared distance), expands it over the batch, and mixes the two softmaxes with the
sigmoid of a per-head gate before renormalizing; the class token joins before the first MHSA block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConViT"]


def rel_indices(n: int) -> torch.Tensor:
    side = int(n ** 0.5)
    ind = torch.arange(side).view(1, -1) - torch.arange(side).view(-1, 1)
    indx = ind.repeat(side, side)
    indy = ind.repeat_interleave(side, dim=0).repeat_interleave(side, dim=1)
    out = torch.zeros(1, n, n, 3)
    out[:, :, :, 2] = (indx ** 2 + indy ** 2).unsqueeze(0)
    out[:, :, :, 1] = indy.unsqueeze(0)
    out[:, :, :, 0] = indx.unsqueeze(0)
    return out


class GPSA(nn.Module):
    def __init__(self, dim: int, heads: int, n: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qk = nn.Linear(dim, dim * 2, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, heads)
        self.gating_param = nn.Parameter(torch.ones(heads))
        self.register_buffer("rel", rel_indices(n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qk = self.qk(x).reshape(b, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k = qk[0], qk[1]
        pos = self.pos_proj(self.rel.expand(b, -1, -1, -1)).permute(0, 3, 1, 2).softmax(dim=-1)
        patch = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        gate = self.gating_param.view(1, -1, 1, 1)
        attn = (1.0 - torch.sigmoid(gate)) * patch + torch.sigmoid(gate) * pos
        attn = attn / attn.sum(dim=-1).unsqueeze(-1)
        v = self.v(x).reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class MHSA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, n: int, gpsa: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GPSA(dim, heads, n) if gpsa else MHSA(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConViT(nn.Module):
    def __init__(self, img: int = 224, patch: int = 16, head_width: int = 48, heads: int = 4, depth: int = 12,
                 local_layers: int = 10, num_classes: int = 1000) -> None:
        super().__init__()
        dim, n = head_width * heads, (img // patch) ** 2
        self.local_layers = local_layers
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, n, i < local_layers) for i in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for u, blk in enumerate(self.blocks):
            if u == self.local_layers:
                x = torch.cat((cls, x), dim=1)
            x = blk(x)
        return self.head(self.norm(x)[:, 0])
