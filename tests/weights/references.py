"""Hand-written models in other code bases' layouts (key names and order as those libraries write them).

- :class:`TorchvisionResNet`: torchvision's ResNet with basic blocks (conv1, bn1, layer1.0.conv1, ...,
  downsample.0/1, fc).
- :class:`TimmConvNeXt`: timm's ConvNeXt (stem.0/1, stages.N.downsample.0/1, stages.N.blocks.M with the
  layer-scale ``gamma`` a parameter of the block, so first in its state dict; head.norm, head.fc);
  ``conv_mlp=True`` makes the MLP 1×1 convolutions ([o, i, 1, 1] weights), as timm's ConvMlp.
- :class:`TimmRepVgg`: timm's RepVGG block layout, the identity BatchNorm registered first.

Only torch; written from the libraries' documented structure, eval semantics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TorchvisionResNet(nn.Module):
    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(widths[0], layers[0], 1)
        self.layer2 = self._make_layer(widths[1], layers[1], 2)
        self.layer3 = self._make_layer(widths[2], layers[2], 2)
        self.layer4 = self._make_layer(widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of NCHW maps (timm's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, conv: bool) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1) if conv else nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1) if conv else nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, conv_mlp: bool, ls_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_mlp = conv_mlp
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6) if conv_mlp else nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim, conv_mlp)
        self.gamma = nn.Parameter(ls_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x)
        if self.conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x.mul(self.gamma.reshape(1, -1, 1, 1)) + shortcut


class ConvNeXtStage(nn.Module):
    def __init__(self, cin: int, dim: int, depth: int, conv_mlp: bool) -> None:
        super().__init__()
        if cin != dim:
            self.downsample: nn.Module = nn.Sequential(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, dim, 2, 2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, conv_mlp) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormHead(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.mean((2, 3), keepdim=True))
        return self.fc(x.flatten(1))


class TimmConvNeXt(nn.Module):
    def __init__(self, depths: Sequence[int], dims: Sequence[int], num_classes: int, conv_mlp: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        cins = [dims[0], *dims[:-1]]
        self.stages = nn.Sequential(*[ConvNeXtStage(cins[i], dims[i], depths[i], conv_mlp) for i in range(len(dims))])
        self.norm_pre = nn.Identity()
        self.head = NormHead(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm_pre(self.stages(self.stem(x))))


class ConvBn(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class RepVggBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None
        self.conv_kxk = ConvBn(cin, cout, 3, stride)
        self.conv_1x1 = ConvBn(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_kxk(x) + self.conv_1x1(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y)


class TimmRepVgg(nn.Module):
    """RepVGG in timm's block layout; stage widths as specs/repvgg.yaml computes them."""

    def __init__(self, depths: Sequence[int], widths: Sequence[int], stem_width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = RepVggBlock(3, stem_width, 2)
        stages = []
        cin = stem_width
        for depth, width in zip(depths, widths):
            stages.append(nn.Sequential(*[RepVggBlock(cin if i == 0 else width, width, 2 if i == 0 else 1)
                                          for i in range(depth)]))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Every float tensor random (BN statistics positive), as a trained checkpoint would be: nothing is 0 or 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
    return model.eval()


class ArchcRepVggBlock(nn.Module):
    """The same block in specs/repvgg.yaml's layout: rbr_dense, rbr_1x1, then rbr_identity (last)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.rbr_dense = ConvBn(cin, cout, 3, stride)
        self.rbr_1x1 = ConvBn(cin, cout, 1, stride)
        self.rbr_identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return F.relu(y)


class ArchcRepVgg(nn.Module):
    """RepVGG with specs/repvgg.yaml's module names (stage0, stages.N.blocks.M, linear)."""

    def __init__(self, depths: Sequence[int], widths: Sequence[int], stem_width: int, num_classes: int) -> None:
        super().__init__()
        self.stage0 = ArchcRepVggBlock(3, stem_width, 2)
        self.stages = nn.ModuleList()
        cin = stem_width
        for depth, width in zip(depths, widths):
            stage = nn.Module()
            stage.blocks = nn.ModuleList([ArchcRepVggBlock(cin if i == 0 else width, width, 2 if i == 0 else 1)
                                          for i in range(depth)])
            self.stages.append(stage)
            cin = width
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage0(x)
        for stage in self.stages:
            for blk in stage.blocks:
                x = blk(x)
        return self.linear(x.mean((2, 3)))


def torchvision_resnet18() -> TorchvisionResNet:
    """ResNet-18 as torchvision builds it (1000 classes)."""
    return TorchvisionResNet((2, 2, 2, 2))
