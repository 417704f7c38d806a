"""VGG (Simonyan and Zisserman, 2015, arXiv:1409.1556) with torchvision's module names.

``features`` is one ``nn.Sequential`` of 3x3 convolutions, ReLUs and max-pools (``features.0``
... ``features.30`` for VGG-16), then ``avgpool`` (adaptive, 7x7) and ``classifier.0`` ...
``classifier.6`` (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear), as
``torchvision.models.vgg16``. ReLUs are not in-place (torchvision's are), so backward hooks can
attach; parameters and names are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from splitopt.errors import InputError
from splitopt.zoo._init import init_cnn, linear_normal

# torchvision's configurations: channel counts, "M" for a 2x2 max-pool
_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def _features(cfg: list[int | str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG without batch normalisation, for ``(batch, 3, H, W)`` images (H, W >= 32).

    Parameters
    ----------
    cfg
        Channel counts and ``"M"`` (max-pool) markers of the feature extractor.
    num_classes
        Outputs of the last linear layer.
    dropout
        Dropout probability of the classifier.

    """

    def __init__(self, cfg: list[int | str], num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        init_cnn(self, linear_normal)  # torchvision's scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images to ``(batch, num_classes)`` logits."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def vgg(depth: int = 16, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """Build a torchvision-layout VGG of depth 11, 13, 16 or 19 (no batch norm)."""
    if depth not in _CFGS:
        raise InputError("depth", depth, f"one of {sorted(_CFGS)}")
    return VGG(_CFGS[depth], num_classes=num_classes, dropout=dropout)


def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """Torchvision ``vgg16``: 138,357,544 parameters."""
    return vgg(16, num_classes=num_classes, dropout=dropout)
