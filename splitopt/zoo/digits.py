"""A small CNN for scikit-learn's 8x8 handwritten digits, and the data set as tensors.

The digits set (1,797 grey 8x8 images, 10 classes) ships with scikit-learn, so real training runs
without any download. The network is deliberately tiny (38,282 parameters) so that split-learning
executors can train it end to end in seconds on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Conv(1->16), relu, conv(16->32), relu, maxpool, flatten, linear(512->64), relu, linear.

    Every operation with an output worth cutting after is its own module, so a layer graph of this
    model has one readable node per layer (``conv1``, ``relu1``, ..., ``fc2``).

    Parameters
    ----------
    num_classes
        Number of output classes (10 for the digits set).
    width
        Channels of the first convolution; the second has ``2 * width``.
    hidden
        Width of the hidden fully connected layer.

    """

    def __init__(self, num_classes: int = 10, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(2 * width * 4 * 4, hidden)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, 1, 8, 8)`` images to ``(batch, num_classes)`` logits."""
        x = self.relu1(self.conv1(x))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.fc2(x)


def digits_cnn(num_classes: int = 10, width: int = 16, hidden: int = 64) -> DigitsCNN:
    """Build :class:`DigitsCNN` (38,282 parameters with the defaults)."""
    return DigitsCNN(num_classes=num_classes, width=width, hidden=hidden)


def load_digits_tensors(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return scikit-learn's digits as ``(x_train, y_train, x_test, y_test)`` tensors.

    Images are ``float32`` of shape ``(n, 1, 8, 8)`` scaled to ``[0, 1]`` (the raw pixels are
    0..16); labels are ``int64``. The split is stratified and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from splitopt.errors import InputError

    if not 0.0 < test_fraction < 1.0:
        raise InputError("test_fraction", test_fraction, "a number strictly between 0 and 1")
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=seed,
        stratify=y.numpy(),
    )
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]
