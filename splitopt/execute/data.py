"""Training data for the executors.

scikit-learn's digits split across devices (IID or Dirichlet non-IID), synthetic data for models
without a shipped data set, and a held-out test set.

scikit-learn's digits ship with the package (no download). A device draws batches from its own
shard through :class:`DeviceData`, a seeded shuffler whose state is part of every checkpoint, so a
resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from splitopt.errors import InputError

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


@dataclass(frozen=True)
class FederatedData:
    """Per-device training shards and one held-out test set.

    Attributes
    ----------
    shards
        Device name -> (inputs, labels); inputs is a tuple (models may take several inputs).
    test
        (inputs, labels) held out from every device.
    source
        ``"digits"`` or ``"synthetic"``.

    """

    shards: dict[str, Batch]
    test: Batch
    source: str

    def sizes(self) -> dict[str, int]:
        """Samples per device (the FedAvg weights)."""
        return {k: int(y.shape[0]) for k, (_, y) in self.shards.items()}


def dirichlet_indices(labels: np.ndarray, n_devices: int, alpha: float,
                      seed: int) -> list[np.ndarray]:
    """Split sample indices across devices with class proportions drawn from Dir(alpha).

    For every class the device shares are one Dirichlet draw, so small ``alpha`` gives each device
    few classes (non-IID) and large ``alpha`` tends to an IID split. Every device gets at least one
    sample: a device left empty takes one sample from the largest shard.
    """
    if not (isinstance(alpha, (int, float)) and alpha > 0 and np.isfinite(alpha)):
        raise InputError("alpha", alpha, "a finite number > 0", "Smaller alpha is more non-IID.")
    if n_devices > len(labels):
        raise InputError("devices", n_devices, f"at most {len(labels)} (one sample each)")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(n_devices)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        share = rng.dirichlet(np.full(n_devices, float(alpha)))
        bounds = (np.cumsum(share)[:-1] * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, bounds)):
            parts[k].extend(chunk.tolist())
    for k in range(n_devices):
        if not parts[k]:
            donor = max(range(n_devices), key=lambda j: len(parts[j]))
            parts[k].append(parts[donor].pop())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def iid_indices(n: int, n_devices: int, seed: int) -> list[np.ndarray]:
    """A random split of ``n`` samples into ``n_devices`` near-equal shards."""
    if n_devices > n:
        raise InputError("devices", n_devices, f"at most {n} (one sample each)")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, n_devices)]


def digits_data(devices: Sequence[str], *, iid: bool = True, alpha: float = 0.5, seed: int = 0,
                test_fraction: float = 0.25) -> FederatedData:
    """scikit-learn's digits as ``(n, 1, 8, 8)`` images in [0, 1], split across ``devices``."""
    from splitopt.zoo.digits import load_digits_tensors

    x, y, xt, yt = load_digits_tensors(test_fraction=test_fraction, seed=seed)
    return _split_multi((x,), y, (xt,), yt, devices, iid, alpha, seed, "digits")


def synthetic_data(example_inputs: Sequence[torch.Tensor], out_shape: Sequence[int],
                   devices: Sequence[str], *, samples_per_device: int = 64, iid: bool = True,
                   alpha: float = 0.5, seed: int = 0, test_samples: int = 64,
                   task: str = "classification") -> FederatedData:
    """Learnable synthetic data shaped like a model's example inputs.

    Float inputs are standard normal; integer inputs (token ids) are uniform below
    ``max(example) + 1``. Labels come from a fixed random linear "teacher" on the first input, so
    the task is learnable; for outputs with extra dimensions (per-token logits ``(b, t, v)``) the
    labels have shape ``(b, t)``. ``task="lm"`` uses the token ids themselves as labels (the zoo's
    language-model loss shifts them); ``task="pooled"`` gives dummy zero labels.
    """
    if samples_per_device < 1:
        raise InputError("samples_per_device", samples_per_device, "an integer >= 1")
    n_classes = int(out_shape[-1])
    extra = tuple(int(s) for s in out_shape[1:-1])
    n = samples_per_device * len(devices) + test_samples
    g = torch.Generator().manual_seed(seed)
    xs = []
    for ex in example_inputs:
        shape = (n, *ex.shape[1:])
        if ex.is_floating_point():
            xs.append(torch.randn(shape, generator=g, dtype=ex.dtype))
        else:
            high = int(ex.max().item()) + 1 if ex.numel() else 2
            xs.append(torch.randint(0, max(high, 2), shape, generator=g, dtype=ex.dtype))
    flat = xs[0].reshape(n, -1).float()
    teacher = torch.randn(flat.shape[1], n_classes * max(1, int(np.prod(extra))), generator=g)
    y = (flat @ teacher).reshape(n, *extra, n_classes).argmax(-1)
    if task == "lm":
        y = xs[0].clone()
    elif task == "pooled":
        y = torch.zeros(n, dtype=torch.int64)
    cut = n - test_samples
    train = tuple(x[:cut] for x in xs)
    test = tuple(x[cut:] for x in xs)
    return _split_multi(train, y[:cut], test, y[cut:], devices, iid, alpha, seed, "synthetic")


def _split_multi(xs: tuple[torch.Tensor, ...], y: torch.Tensor, xt: tuple[torch.Tensor, ...],
                 yt: torch.Tensor, devices: Sequence[str], iid: bool, alpha: float, seed: int,
                 source: str) -> FederatedData:
    if not devices:
        raise InputError("devices", list(devices), "at least one device name")
    labels = y.reshape(len(y), -1)[:, 0].numpy()
    parts = (iid_indices(len(y), len(devices), seed) if iid
             else dirichlet_indices(labels, len(devices), alpha, seed))
    shards = {d: (tuple(x[torch.from_numpy(p)] for x in xs), y[torch.from_numpy(p)])
              for d, p in zip(devices, parts)}
    return FederatedData(shards, (xt, yt), source)


class DeviceData:
    """Endless seeded batches from one shard: reshuffled each epoch, always ``batch_size`` samples.

    A batch that runs past the end of an epoch continues into the next shuffled epoch, so every
    batch has the plan's size even on a shard smaller than the batch.
    """

    def __init__(self, shard: Batch, seed: int) -> None:
        self.inputs, self.labels = shard
        self.n = int(self.labels.shape[0])
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def next(self, batch_size: int) -> Batch:
        """The next ``batch_size`` samples."""
        taken: list[torch.Tensor] = []
        need = batch_size
        while need > 0:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
            chunk = self.perm[self.pos:self.pos + need]
            taken.append(chunk)
            self.pos += len(chunk)
            need -= len(chunk)
        idx = taken[0] if len(taken) == 1 else torch.cat(taken)
        return tuple(x[idx] for x in self.inputs), self.labels[idx]

    def state_dict(self) -> dict[str, Any]:
        """Shuffler state for checkpoints."""
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shuffler state."""
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])
