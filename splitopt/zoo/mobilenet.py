"""MobileNetV2 (Sandler et al., 2018, arXiv:1801.04381) with torchvision's module names.

``features.0`` is a conv-bn-relu6 stem (children ``0, 1, 2``), ``features.1`` ... ``features.17``
are inverted residual blocks whose layers sit under ``conv`` (``conv.0.0`` ..., then the
pointwise-linear ``conv.N`` and its batch norm), ``features.18`` is a 1x1 conv-bn-relu6, and
``classifier`` is ``Dropout, Linear``, as ``torchvision.models.mobilenet_v2``. The global pooling
is functional, as in torchvision. ReLU6 is not in-place and residual adds are out-of-place;
parameters are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitopt.errors import InputError
from splitopt.zoo._init import init_cnn, linear_normal

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
_SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
             [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% (torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormActivation(nn.Sequential):
    """Conv2d (no bias), BatchNorm2d, activation: torchvision's ``Conv2dNormActivation``.

    Children are named ``0, 1, 2`` as there; ``activation=None`` leaves out the third.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU6,
                 eps: float = 1e-5, momentum: float = 0.1) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout, eps=eps, momentum=momentum),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = cout


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); skip when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(inp, hidden, kernel_size=1))
        layers += [
            ConvNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; ``use_res_connect`` is fixed at construction, so tracing is static."""
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 for ``(batch, 3, H, W)`` images (H, W >= 32).

    Parameters
    ----------
    num_classes
        Outputs of the classifier.
    width_mult
        Multiplies every channel count (then rounded by :func:`make_divisible`).
    dropout
        Dropout probability before the classifier.

    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvNormActivation(3, cin, stride=2)]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvNormActivation(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        init_cnn(self, linear_normal)  # torchvision's scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to ``(batch, num_classes)`` logits."""
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2) -> MobileNetV2:
    """Torchvision ``mobilenet_v2``: 3,504,872 parameters at ``width_mult=1``."""
    if not isinstance(width_mult, (int, float)) or not 0 < width_mult <= 4:
        raise InputError("width_mult", width_mult, "a number in (0, 4]")
    return MobileNetV2(num_classes=num_classes, width_mult=float(width_mult), dropout=dropout)
