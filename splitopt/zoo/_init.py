"""Weight initialisation shared by the zoo's CNNs (torchvision's schemes)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def on_meta(module: nn.Module) -> bool:
    """Tell whether ``module``'s parameters live on the meta device.

    Initialisation is skipped there: there are no values to set, and ``normal_`` on meta is slow.
    """
    first = next(module.parameters(), None)
    return first is not None and first.is_meta


def linear_normal(m: nn.Linear) -> None:
    """``N(0, 0.01)`` weight and zero bias (torchvision's VGG and MobileNetV2 classifiers)."""
    nn.init.normal_(m.weight, 0.0, 0.01)
    nn.init.zeros_(m.bias)


def linear_uniform_fan_out(m: nn.Linear) -> None:
    """``U(-1/sqrt(out), 1/sqrt(out))`` weight and zero bias (torchvision's EfficientNet)."""
    bound = m.out_features ** -0.5
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


def init_cnn(model: nn.Module, linear: Callable[[nn.Linear], None] | None = None) -> None:
    """Kaiming-normal (fan-out) convolutions with zero bias, unit/zero batch norms.

    ``linear`` initialises every ``nn.Linear``; ``None`` keeps nn.Linear's own initialisation.
    Nothing is done on the meta device.
    """
    if on_meta(model):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear is not None:
            linear(m)
