"""EfficientNet (Tan and Le, 2019, arXiv:1905.11946) with torchvision's module names.

Names follow ``torchvision.models.efficientnet_b0``: ``features.0`` (conv-bn-SiLU stem),
``features.1`` ... ``features.7`` (stages of MBConv blocks ``features.S.B`` whose layers sit under
``block``: expansion ``block.0``, depthwise ``block.1``, squeeze-excitation ``block.2.{avgpool, fc1,
activation, fc2, scale_activation}``, projection ``block.3``; ``stochastic_depth``),
``features.8`` (1x1 conv-bn-SiLU), ``avgpool``, ``classifier.{0, 1}`` (Dropout, Linear). The
residual add is out-of-place and nothing is in-place; parameters equal torchvision's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from splitopt.zoo._checks import positive_ints
from splitopt.zoo._init import init_cnn, linear_uniform_fan_out
from splitopt.zoo.mobilenet import ConvNormActivation, make_divisible

# expand ratio, kernel, stride, in channels, out channels, layers (EfficientNet-B0 baseline)
_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
       (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class SqueezeExcitation(nn.Module):
    """Channel attention: ``x * sigmoid(fc2(silu(fc1(avgpool(x)))))`` (torchvision's names)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale each channel of ``x``."""
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch of a sample with probability ``p`` while training.

    Randomness comes from ``rand_like`` on a slice of the input, so the graph is shape-static.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in eval mode; row-wise Bernoulli(1 - p) mask, rescaled, in training."""
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = (torch.rand_like(x[:, :1, :1, :1]) < survival).to(x.dtype)
        return x * keep / survival


class MBConv(nn.Module):
    """Inverted residual block with squeeze-excitation (``block``) and stochastic depth."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int,
                 sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvNormActivation(cin, hidden, kernel_size=1, activation=nn.SiLU))
        layers += [
            ConvNormActivation(hidden, hidden, kernel_size=kernel, stride=stride, groups=hidden,
                               activation=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            ConvNormActivation(hidden, cout, kernel_size=1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; the skip exists when stride is 1 and channels are unchanged."""
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(nn.Module):
    """EfficientNet for ``(batch, 3, H, W)`` images (H, W >= 32).

    Parameters
    ----------
    width_mult, depth_mult
        Compound-scaling multipliers of channels and of blocks per stage (B0: 1.0, 1.0).
    dropout
        Dropout probability before the classifier.
    stochastic_depth_prob
        Drop probability of the last block's branch; earlier blocks get linearly less.
    num_classes
        Outputs of the classifier.

    """

    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, num_classes: int = 1000) -> None:
        super().__init__()
        cfgs = [(e, k, s, make_divisible(ci * width_mult), make_divisible(co * width_mult),
                 int(math.ceil(n * depth_mult))) for e, k, s, ci, co, n in _B0]
        total, done = sum(c[-1] for c in cfgs), 0
        features: list[nn.Module] = [ConvNormActivation(3, cfgs[0][3], stride=2,
                                                        activation=nn.SiLU)]
        for expand, kernel, stride, cin, cout, n in cfgs:
            stage: list[nn.Module] = []
            for i in range(n):
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1,
                                    cin if i == 0 else cout, cout,
                                    stochastic_depth_prob * done / total))
                done += 1
            features.append(nn.Sequential(*stage))
        last = 4 * cfgs[-1][4]
        features.append(ConvNormActivation(cfgs[-1][4], last, kernel_size=1, activation=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        init_cnn(self, linear_uniform_fan_out)  # torchvision's scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to ``(batch, num_classes)`` logits."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def efficientnet_b0(num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                    dropout: float = 0.2) -> EfficientNet:
    """Torchvision ``efficientnet_b0``: 5,288,548 parameters with the defaults.

    Other members of the family differ in ``width_mult``, ``depth_mult`` and ``dropout``
    (B1: 1.0, 1.1, 0.2; B2: 1.1, 1.2, 0.3; ...).
    """
    positive_ints(num_classes=num_classes)
    return EfficientNet(width_mult=width_mult, depth_mult=depth_mult, dropout=dropout,
                        num_classes=num_classes)
