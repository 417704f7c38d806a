"""The fixed-option share kernels (splitopt.solving.shares) against plain grids over the shares."""

import numpy as np
import pytest

from splitopt.solving.shares import fixed_minmax, server_fixed_minmax, server_shares, sum_shares


def _simplex(n: int, steps: int) -> np.ndarray:
    """Points of the open simplex {x > 0, sum x <= 1} in n <= 3 dimensions (one per row)."""
    g = np.arange(1, steps) / steps
    pts = np.stack(np.meshgrid(*[g] * n), -1).reshape(-1, n)
    return pts[pts.sum(axis=1) <= 1]


@pytest.mark.parametrize("seed", range(12))
def test_fixed_minmax_is_the_least_over_a_grid(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    a = rng.uniform(0, 2, n)
    d = rng.uniform(0, 1, n) * 10 ** rng.uniform(-1, 1, n)
    d[rng.random(n) < 0.2] = 0.0
    bmin = np.where(rng.random(n) < 0.4, rng.uniform(0, 0.3, n), 0.0)
    value, bound, beta = fixed_minmax(a, d, bmin)
    grid = _simplex(n, 120)
    grid = grid[(grid >= bmin).all(axis=1)]
    best = float(np.min(np.max(a + d / grid, axis=1)))
    assert bound <= value <= best * (1 + 1e-12)  # no grid point beats it
    assert best <= value * (1 + 5e-2)  # and the grid comes close
    assert beta.sum() <= 1 + 1e-12 and np.all(beta >= bmin * (1 - 1e-12))
    assert value == pytest.approx(float(np.max(a + d / beta)), rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_fixed_minmax_start_changes_no_answer(seed):
    """A start below the root (used: it lies above max(a + d)), above it or below max(a + d)
    (ignored) gives the same root and a bound that holds."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    a, d = rng.uniform(0, 2, n), rng.uniform(0, 1, n) * 10 ** rng.uniform(-2, 1, n)
    bmin = np.where(rng.random(n) < 0.3 * (seed % 2), rng.uniform(0, 0.5 / n, n), 0.0)
    value, bound, _ = fixed_minmax(a, d, bmin)
    for start in (bound * (1 - 1e-9), bound, 2 * value, float(np.max(a + d)) * 0.5):
        v, b, beta = fixed_minmax(a, d, bmin, start=start)
        assert v == pytest.approx(value, rel=1e-12) and b <= v
        assert b == pytest.approx(bound, rel=1e-12)
        assert beta.sum() <= 1 + 1e-12 and np.all(beta >= bmin * (1 - 1e-12))


def test_fixed_minmax_infeasible_minimum_shares():
    value, bound, _ = fixed_minmax(np.zeros(2), np.ones(2), np.array([0.6, 0.6]))
    assert value == bound == np.inf


@pytest.mark.parametrize("seed", range(12))
def test_server_fixed_minmax_is_the_least_over_a_grid(seed):
    rng = np.random.default_rng(seed)
    n = 2
    a, s, d = rng.uniform(0, 2, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    s[rng.random(n) < 0.2] = 0.0
    value, bound, beta, phi = server_fixed_minmax(a, s, d)
    g = _simplex(n, 60)
    t = np.max(a + s / g[None, :, :] + d / g[:, None, :], axis=2)  # beta x phi grid
    best = float(t.min())
    assert bound <= value <= best * (1 + 1e-12)
    assert best <= value * (1 + 0.1)
    assert beta.sum() <= 1 + 1e-12 and phi.sum() <= 1 + 1e-12
    assert server_shares(a, s, d, value * (1 + 1e-9))[0]
    assert not server_shares(a, s, d, bound * (1 - 1e-9))[0]


def test_sum_shares_square_root_rule():
    d = np.array([1.0, 4.0, 0.0])
    value, beta = sum_shares(d)
    assert value == pytest.approx(9.0) and beta == pytest.approx([1 / 3, 2 / 3, 0.0])
