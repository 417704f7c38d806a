"""Multi-tier multi-split: DP and MILP equal brute force; baselines never better; arch choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from splitopt.formulations import multitier as mt

from splitopt.errors import InfeasibleError, InputError
from splitopt.system import Link
from splitopt.testing import random_dag


def _path(rng, T: int, *, mem: bool = False):
    tiers = [mt.Tier(f"t{t}", float(10 ** rng.uniform(9, 13)),
                     float(10 ** rng.uniform(6.5, 8)) if mem and t < T - 1 else math.inf)
             for t in range(T)]
    links = [Link(float(10 ** rng.uniform(6, 9)), float(10 ** rng.uniform(6, 9)))
             for _ in range(T - 1)]
    return tiers, links


@pytest.mark.parametrize("seed", range(12))
def test_chain_dp_and_milp_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, int(rng.integers(2, 5)), chain=True)
    tiers, links = _path(rng, int(rng.integers(2, 4)), mem=seed % 2 == 0)
    c = mt.costs(g, tiers, links, batch=int(rng.integers(1, 64)), training=seed % 3 != 0)
    try:
        exact = mt.brute_force(c)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            mt.solve_chain(c)
        return
    dp, milp = mt.solve_chain(c), mt.solve_dag(c)
    assert dp.latency_s == pytest.approx(exact.latency_s, rel=1e-9)
    assert milp.latency_s == pytest.approx(exact.latency_s, rel=1e-7)
    assert mt.latency(c, dp.tiers) == pytest.approx(dp.latency_s)
    assert dp.status == milp.status == "optimal" and dp.verification.passed
    assert milp.verification.passed
    for base in (mt.greedy(c), mt.two_tier(c), mt.device_only(c)):
        assert base.latency_s >= exact.latency_s * (1 - 1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_dag_milp_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_dag(rng, int(rng.integers(3, 6)), skip_prob=0.8)
    tiers, links = _path(rng, 3, mem=seed % 2 == 1)
    c = mt.costs(g, tiers, links, batch=8)
    try:
        exact = mt.brute_force(c)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            mt.solve_dag(c)
        return
    got = mt.solve(c)
    assert got.latency_s == pytest.approx(exact.latency_s, rel=1e-7)
    assert got.bound <= got.latency_s * (1 + 1e-9)


def test_tensor_crossing_two_links_pays_both():
    g = random_dag(np.random.default_rng(0), 2, chain=True)
    tiers = [mt.Tier("d", 1e9), mt.Tier("e", 1e12), mt.Tier("c", 1e14)]
    links = [Link(1e6, 1e6), Link(1e8, 1e8)]
    c = mt.costs(g, tiers, links, batch=1)
    skip = (0, 2, 2, 2)  # the input goes straight to the cloud through the edge
    expect = c.sec[0, 0] + c.sec[1:, 2].sum() + c.out[0] * (c.link[0] + c.link[1])
    assert mt.latency(c, skip) == pytest.approx(expect)
    assert mt.latency(c, (1, 0, 0, 0)) == math.inf  # input off the device


def test_architecture_choice_front_and_budget():
    tiers = [mt.Tier("phone", 2e10), mt.Tier("edge", 5e12), mt.Tier("cloud", 5e13)]
    links = [Link(2e7, 5e7), Link(1e9, 1e9)]
    cands = [mt.Candidate(f"d{d}w{w}", mt.chain_variant(f"d{d}w{w}", d, w), acc)
             for (d, w, acc) in [(4, 16, 0.80), (8, 32, 0.88), (12, 64, 0.91), (12, 16, 0.79)]]
    loose = mt.choose_architecture(cands, tiers, links, latency_budget=1e9, batch=32)
    assert loose.candidate.accuracy == 0.91
    lat = {n: t for n, _, t in loose.front}
    tight = mt.choose_architecture(cands, tiers, links, latency_budget=min(lat.values()) * 1.0001,
                                   batch=32)
    assert tight.split.latency_s <= min(lat.values()) * 1.0001
    assert "d12w16" not in lat  # dominated: slower and less accurate than d4w16
    with pytest.raises(InputError, match="exactly one"):
        mt.choose_architecture(cands, tiers, links, batch=32)


def test_bad_input():
    g = random_dag(np.random.default_rng(0), 3, chain=True)
    with pytest.raises(InputError, match="links"):
        mt.costs(g, [mt.Tier("a", 1e9), mt.Tier("b", 1e9)], [])
    with pytest.raises(InputError, match="flops"):
        mt.Tier("a", -1.0)
    with pytest.raises(InputError, match="tiers"):
        mt.latency(mt.costs(g, [mt.Tier("a", 1e9)], []), (0, 0))
    dag = random_dag(np.random.default_rng(3), 6, skip_prob=1.0)
    if not dag.is_chain:
        with pytest.raises(InputError, match="chain"):
            mt.solve_chain(mt.costs(dag, [mt.Tier("a", 1e9)], []))


def test_cuts_of_a_chain_split():
    sp = mt.placement((0, 0, 1, 2, 2), 1.0, "optimal", "dp")
    assert mt.cuts(sp.tiers, 3) == [2, 3] and mt.cuts(sp.tiers, 4) == [2, 3, 5]
