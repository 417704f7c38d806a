"""hull(): the lower convex hull of (compute, bits) by parametric min-cut, against brute force."""

import numpy as np
import pytest

from splitopt import Device, InputError, Link, Server, Training, device_phases
from splitopt.partitioning import hull
from splitopt.partitioning.brute import closed_sets
from splitopt.partitioning.hull import _Parametric, hull_points
from splitopt.partitioning.synthetic import branching_dag, wide_range_dag
from splitopt.testing import random_dag

LAMBDAS = [0.0, *np.logspace(-14, 2, 60), 1e6]


def _all_points(g, dev, srv, ib, aggregate, labels):
    par = _Parametric(g, dev, srv, ib, aggregate, labels == "device")
    rows = closed_sets(par.problem(1.0, 1.0))
    pts = [par.point(r) for r in rows]
    if labels == "device" and not aggregate:  # S = V also exchanges the model
        w = 8 * float(g.param_bytes.sum())
        pts = [(a, d + w) if r.all() else (a, d) for r, (a, d) in zip(rows, pts, strict=True)]
    return np.array(pts)


@pytest.mark.parametrize("labels", ["server", "device"])
@pytest.mark.parametrize("aggregate", [True, False])
def test_hull_is_exact_for_every_lambda(labels, aggregate):
    rng = np.random.default_rng(40 + 2 * aggregate + (labels == "device"))
    sizes = []
    for _ in range(25):
        n = int(rng.integers(0, 11))
        g = [wide_range_dag(rng, n, decades=6, n_inputs=2), random_dag(rng, n, zero_prob=0.3),
             branching_dag(rng, n, n_inputs=2)][int(rng.integers(0, 3))]
        dev = Device(name="d", flops=float(10 ** rng.uniform(10, 13)), spectral_eff_up=1,
                     spectral_eff_dn=1)
        srv = Server(flops=float(10 ** rng.uniform(11, 13)))
        b, it = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        pts = hull_points(g, dev, srv, batch=b, local_iters=it, aggregate=aggregate,
                          labels=labels)
        allp = _all_points(g, dev, srv, float(b * it), aggregate, labels)
        hp = np.array([(p.compute_s, p.bits) for p in pts])
        assert np.all(np.diff(hp[:, 0]) > 0) and np.all(np.diff(hp[:, 1]) < 0)
        for lam in LAMBDAS:
            best = (allp[:, 0] + lam * allp[:, 1]).min()
            assert (hp[:, 0] + lam * hp[:, 1]).min() == pytest.approx(best, rel=1e-9, abs=0)
        sizes.append(len(pts))
    assert max(sizes) >= 3, sizes  # the search really walks breakpoints


def test_hull_points_price_like_the_reference_model():
    rng = np.random.default_rng(3)
    g = random_dag(rng, 12)
    dev = Device(name="d", flops=3e10, spectral_eff_up=2, spectral_eff_dn=3)
    srv = Server(flops=1e13)
    link = Link(4e6, 9e6)
    tr = Training(batch_size=4, local_iters=3, aggregate=True)
    pts = hull_points(g, dev, srv, batch=4, local_iters=3)
    assert [p.device_side for p in pts] == hull(g, dev, srv, batch=4, local_iters=3)
    for p in pts:
        ph = device_phases(g, p.device_side, dev, srv, link, tr)
        assert ph.round_s == pytest.approx(p.compute_s + p.bits * link.seconds_per_bit, rel=1e-12)


def test_hull_bad_input():
    g = random_dag(np.random.default_rng(0), 3)
    dev, srv = Device(name="d", flops=1e9, spectral_eff_up=1, spectral_eff_dn=1), Server(flops=1e12)
    with pytest.raises(InputError, match="local_iters.*integer >= 1"):
        hull(g, dev, srv, local_iters=0)
    with pytest.raises(InputError, match="labels"):
        hull(g, dev, srv, labels="both")
