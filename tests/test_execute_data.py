"""Data for the executors: shards partition the training set; non-IID is skewed; batches resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitopt.errors import InputError
from splitopt.execute.data import DeviceData, digits_data, dirichlet_indices, synthetic_data


@pytest.mark.parametrize("seed", range(5))
def test_dirichlet_split_is_a_partition_with_no_empty_device(seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 10, 300)
    parts = dirichlet_indices(labels, 7, alpha=0.1, seed=seed)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(300)) and all(len(p) for p in parts)


def test_small_alpha_is_non_iid_and_iid_is_balanced() -> None:
    devs = [f"d{i}" for i in range(4)]
    skew = digits_data(devs, iid=False, alpha=0.1, seed=0)
    flat = digits_data(devs, iid=True, seed=0)
    classes = [len(torch.unique(y)) for _, y in skew.shards.values()]
    assert min(classes) < 10
    assert all(len(torch.unique(y)) == 10 for _, y in flat.shards.values())
    sizes = flat.sizes().values()
    assert max(sizes) - min(sizes) <= 1
    assert sum(flat.sizes().values()) + len(flat.test[1]) == 1797


def test_batches_have_the_size_asked_and_resume_from_state() -> None:
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    a = DeviceData(((x,), y), seed=3)
    for _ in range(3):
        (xb,), yb = a.next(4)
        assert xb.shape == (4, 1) and yb.shape == (4,)
    b = DeviceData(((x,), y), seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        assert torch.equal(a.next(7)[1], b.next(7)[1])


def test_synthetic_data_follows_the_example_inputs_and_errors() -> None:
    d = synthetic_data((torch.randn(1, 3, 4),), (1, 5), ["a", "b"], samples_per_device=8)
    (xa,), ya = d.shards["a"]
    assert xa.shape == (8, 3, 4) and ya.max() < 5 and d.source == "synthetic"
    with pytest.raises(InputError, match="alpha"):
        dirichlet_indices(np.zeros(5, dtype=int), 2, alpha=0.0, seed=0)
    with pytest.raises(InputError, match="devices"):
        dirichlet_indices(np.zeros(3, dtype=int), 5, alpha=1.0, seed=0)
