"""ResNet (He et al., 2016, arXiv:1512.03385) with torchvision's module names and initialisation.

Architecture and names follow ``torchvision.models.resnet`` (v1.5: the stride of a bottleneck sits
on its 3x3 convolution): ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``; a block has
``conv1, bn1, conv2, bn2[, conv3, bn3], relu[, downsample.0, downsample.1]``. Two deliberate
differences, neither changing parameters or names: ReLUs are not in-place and residual adds are
out-of-place (``out = out + identity``), so that backward hooks and graph capture see clean tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from splitopt.errors import InputError
from splitopt.zoo._init import init_cnn

# depth -> (block kind, blocks per stage), as torchvision's resnet18 ... resnet152
_DEPTHS: dict[int, tuple[str, list[int]]] = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (resnet18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 convolutions with a skip connection (resnet50/101/152)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet for ``(batch, 3, H, W)`` images (any H, W >= 32 thanks to the adaptive pooling).

    Parameters
    ----------
    block
        ``"basic"`` or ``"bottleneck"``.
    layers
        Number of blocks in each of the four stages.
    num_classes
        Outputs of the final ``fc`` layer.
    width
        Channels of the stem and of the first stage (torchvision: 64); later stages double it.

    """

    def __init__(self, block: str, layers: list[int], num_classes: int = 1000,
                 width: int = 64) -> None:
        super().__init__()
        self._block = BasicBlock if block == "basic" else Bottleneck
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * self._block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        block = self._block
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        init_cnn(self)  # torchvision's scheme; fc keeps nn.Linear's own initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to ``(batch, num_classes)`` logits."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet(depth: int = 18, num_classes: int = 1000, width: int = 64) -> ResNet:
    """Build a torchvision-layout ResNet of the given depth (18, 34, 50, 101 or 152).

    Examples
    --------
    >>> sum(p.numel() for p in resnet(18).parameters())
    11689512

    """
    if depth not in _DEPTHS:
        raise InputError("depth", depth, f"one of {sorted(_DEPTHS)}")
    kind, layers = _DEPTHS[depth]
    return ResNet(kind, layers, num_classes=num_classes, width=width)


def resnet18(num_classes: int = 1000, width: int = 64) -> ResNet:
    """Torchvision ``resnet18``: 11,689,512 parameters."""
    return resnet(18, num_classes=num_classes, width=width)


def resnet50(num_classes: int = 1000, width: int = 64) -> ResNet:
    """Torchvision ``resnet50``: 25,557,032 parameters."""
    return resnet(50, num_classes=num_classes, width=width)
