"""The named baselines (issue 13 §4): honest and mispriced chain cuts, block contraction without a
certificate, device-only and server-only, each priced by the reference model, never below the
optimum, and each exactly what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from splitopt import Link, link_of
from splitopt.graph import LayerGraph, Node
from splitopt.partitioning import partition
from splitopt.partitioning.baselines import baselines, mispriced_prefix_costs
from splitopt.partitioning.brute import closed_sets
from splitopt.partitioning.problem import iteration_problem
from splitopt.partitioning.synthetic import random_block_dag
from splitopt.testing import random_dag, random_scenario

NAMES = ["device-only", "server-only", "best chain cut", "mispriced chain cut",
         "blocks, no certificate"]


def test_baselines_are_feasible_priced_and_never_below_the_optimum():
    rng = np.random.default_rng(3)
    for k in range(150):
        g = (random_block_dag(rng, int(rng.integers(1, 4)), leak=0.3) if k % 2 else
             random_dag(rng, int(rng.integers(1, 10)), skip_prob=0.6))
        sc = random_scenario(rng, g, 1)
        dev = sc.devices[0]
        link = link_of(dev, sc.channel, float(10 ** rng.uniform(-3, 0)))
        prob = iteration_problem(g, dev, sc.server, link)
        opt = partition(g, dev, sc.server, link).objective
        bs = {b.name: b for b in baselines(prob, extended=True)}
        assert list(bs) == NAMES
        for b in bs.values():
            assert prob.is_feasible(b.mask), b.name
            assert b.cost == pytest.approx(prob.price(b.mask), rel=1e-12)
            assert b.cost >= opt * (1 - 1e-9), b.name
        # the honest scan is the cheapest prefix; the mispriced one believes it pays less
        prefixes = [m for m in closed_sets(prob) if _is_prefix(m)]
        assert bs["best chain cut"].cost == pytest.approx(min(prob.price(m) for m in prefixes))
        assert bs["best chain cut"].cost <= bs["mispriced chain cut"].cost * (1 + 1e-12)
        claimed = bs["mispriced chain cut"].claimed
        assert claimed is None or claimed <= bs["mispriced chain cut"].cost


def _is_prefix(mask):
    k = int(mask.sum())
    return bool(mask[:k].all())


def skip_graph():
    """x -> a -> b -> c -> out with a big skip a -> c: a chain pricer sees only b's tensor."""
    nodes = [Node("x", 0, 0, 1e5, 0, "input"), Node("a", 1e6, out_bytes=1e6),
             Node("b", 1e6, out_bytes=1e2), Node("c", 1e9, out_bytes=1e2),
             Node("out", 1e3, out_bytes=4, kind="output")]
    edges = [("x", "a"), ("a", "b"), ("b", "c"), ("a", "c"), ("c", "out")]
    return LayerGraph(nodes, edges, ["x"], "out")


def test_mispriced_chain_cut_pays_the_skip_tensor_it_ignored():
    from splitopt import Device, Server

    g = skip_graph()
    dev = Device(name="d", flops=1e8, spectral_eff_up=1, spectral_eff_dn=1)
    prob = iteration_problem(g, dev, Server(name="s", flops=1e12), Link(1e6, 1e6))
    bs = {b.name: b for b in baselines(prob, extended=True)}
    mis = bs["mispriced chain cut"]
    assert sorted(g.names_of(mis.mask)) == ["a", "b", "x"]  # believes only b's 100 B cross
    assert mis.claimed == pytest.approx(mispriced_prefix_costs(prob)[2])
    assert mis.cost - mis.claimed == pytest.approx(prob.tensor[g.index["a"]])  # a's 1 MB too
    assert bs["best chain cut"].cost < mis.cost


def test_uncertified_contraction_can_lose_the_optimum():
    # the optimum cuts through a block in some instances (test_blockwise_stress); contracting every
    # block without the certificate then pays more, the certified blockwise method does not
    rng = np.random.default_rng(5)
    lost = 0
    for _ in range(200):
        g = random_block_dag(rng, int(rng.integers(1, 5)), leak=0.0, decades=8.0)
        sc = random_scenario(rng, g, 1)
        dev = sc.devices[0]
        link = link_of(dev, sc.channel, float(10 ** rng.uniform(-4, 0)))
        prob = iteration_problem(g, dev, sc.server, link)
        opt = partition(g, dev, sc.server, link).objective
        blind = next(b for b in baselines(prob, extended=True)
                     if b.name == "blocks, no certificate")
        lost += blind.cost > opt * (1 + 1e-9)
        assert partition(g, dev, sc.server, link, method="blockwise").objective == \
            pytest.approx(opt, rel=1e-9)
    assert lost > 0
