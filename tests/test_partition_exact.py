"""Every exact partition method against the brute-force oracle on many small random DAGs."""

import numpy as np
import pytest

from splitopt import Device, Link, Server, iteration_delay, link_of
from splitopt.partitioning import partition
from splitopt.partitioning.brute import closed_sets
from splitopt.partitioning.problem import iteration_problem
from splitopt.partitioning.synthetic import branching_dag, wide_range_dag
from splitopt.testing import random_dag, random_scenario

EXACT = ("maxflow", "blockwise", "milp", "brute")


def _instance(rng, wide):
    n = int(rng.integers(0, 13))
    kw = dict(n_inputs=int(rng.integers(1, 4)), skip_prob=float(rng.uniform(0, 1.5)),
              zero_prob=float(rng.choice([0.0, 0.0, 0.4])))
    if rng.random() < 0.5:  # parallel branches: many closed sets besides the prefixes
        g = branching_dag(rng, n, n_inputs=kw["n_inputs"], decades=12.0 if wide else 2.0)
    else:  # node i reads node i-1: the closed sets are prefixes, skip tensors cross them
        g = wide_range_dag(rng, n, **kw) if wide else random_dag(rng, n, **kw)
    sc = random_scenario(rng, g, 1)
    dev = sc.devices[0]
    link = link_of(dev, sc.channel, float(10 ** rng.uniform(-3, 0)))
    return g, dev, sc.server, link, int(rng.integers(1, 9))


def _check_plan(plan, g, dev, srv, link, batch, labels):
    side = plan.devices[0].device_side
    assert g.check_split(side, labels_on_device=labels == "device") == side
    assert plan.objective == pytest.approx(
        iteration_delay(g, side, dev, srv, link, batch=batch), rel=1e-9, abs=0)


@pytest.mark.parametrize("wide", [False, True], ids=["plain", "wide-range"])
@pytest.mark.parametrize("labels", ["server", "device"])
def test_exact_methods_agree_with_brute_force(wide, labels):
    rng = np.random.default_rng(1000 + 2 * wide + (labels == "device"))
    for _ in range(60):
        g, dev, srv, link, b = _instance(rng, wide)
        plans = {m: partition(g, dev, srv, link, method=m, batch=b, labels=labels) for m in EXACT}
        best = plans["brute"].objective
        for m, p in plans.items():
            assert p.status == "optimal", (m, p.status)
            assert p.objective == pytest.approx(best, rel=1e-9, abs=0), m
            assert p.bound == pytest.approx(best, rel=1e-9, abs=0), m
            _check_plan(p, g, dev, srv, link, b, labels)


def test_chain_is_exact_on_chains_and_a_bound_elsewhere():
    rng = np.random.default_rng(7)
    for _ in range(40):
        chain = bool(rng.random() < 0.5)
        g = random_dag(rng, int(rng.integers(1, 15)), chain=chain, skip_prob=0.8)
        sc = random_scenario(rng, g, 1)
        dev, link = sc.devices[0], link_of(sc.devices[0], sc.channel, 0.1)
        p = partition(g, dev, sc.server, link, method="chain")
        best = partition(g, dev, sc.server, link, method="brute").objective
        _check_plan(p, g, dev, sc.server, link, 1, "server")
        if g.is_chain:
            assert p.status == "optimal" and p.objective == pytest.approx(best, rel=1e-9)
        else:
            assert p.status == "heuristic" and p.bound is None
            assert p.objective >= best * (1 - 1e-12)


def test_chain_loses_on_parallel_branches():
    from splitopt import LayerGraph, Node
    # two branches; the topological order interleaves them (a1, b1, a2, b2): keeping branch a on
    # the device is no prefix. Branch a shrinks a big input, branch b is heavy compute.
    g = LayerGraph([Node("xa", kind="input", out_bytes=1e6), Node("xb", kind="input",
                                                                  out_bytes=1e3),
                    Node("a1", fwd_flops=1e6, out_bytes=1e6),
                    Node("b1", fwd_flops=1e9, out_bytes=1e6),
                    Node("a2", fwd_flops=1e6, out_bytes=1e3),
                    Node("b2", fwd_flops=1e9, out_bytes=1e3), Node("y", kind="output")],
                   [("xa", "a1"), ("xb", "b1"), ("a1", "a2"), ("b1", "b2"), ("a2", "y"),
                    ("b2", "y")], ["xa", "xb"], "y")
    assert g.names == ["xa", "xb", "a1", "b1", "a2", "b2", "y"]
    dev = Device(name="d", flops=1e9, spectral_eff_up=1, spectral_eff_dn=1)
    srv, link = Server(flops=1e12), Link(1e7, 1e7)
    best = partition(g, dev, srv, link)
    chain = partition(g, dev, srv, link, method="chain")
    assert best.devices[0].device_side == {"xa", "xb", "a1", "a2"}
    assert best.objective == partition(g, dev, srv, link, method="brute").objective
    assert chain.objective > best.objective * 1.5 and chain.status == "heuristic"


def test_chain_scans_exactly_the_topological_prefixes():
    from splitopt import CutTable
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = random_dag(rng, int(rng.integers(1, 12)), n_inputs=2)
        sc = random_scenario(rng, g, 1)
        dev, link = sc.devices[0], link_of(sc.devices[0], sc.channel, 0.5)
        costs = [iteration_delay(g, s, dev, sc.server, link) for s in CutTable.chain(g).sets()]
        p = partition(g, dev, sc.server, link, method="chain")
        assert p.objective == pytest.approx(min(costs), rel=1e-12)


def test_brute_enumerates_every_closed_set_once():
    rng = np.random.default_rng(5)
    for _ in range(30):
        g = random_dag(rng, int(rng.integers(0, 9)), n_inputs=int(rng.integers(1, 3)))
        prob = iteration_problem(g, Device(name="d", flops=1e9, spectral_eff_up=1,
                                           spectral_eff_dn=1), Server(flops=1e12), Link(1e6, 1e6))
        rows = closed_sets(prob)
        assert len({r.tobytes() for r in rows}) == len(rows)
        # against a plain enumeration of all subsets of the free nodes
        free = [i for i, n in enumerate(g.nodes) if n.name not in g.inputs and n.name != g.output]
        count = 0
        for bits in range(2 ** len(free)):
            m = np.zeros(len(g), bool)
            m[[g.index[x] for x in g.inputs]] = True
            m[[free[j] for j in range(len(free)) if bits >> j & 1]] = True
            count += prob.is_feasible(m)
        assert count == len(rows)
        assert all(prob.is_feasible(r) for r in rows)


def test_zero_cost_everything_ties():
    from splitopt import LayerGraph, Node
    g = LayerGraph([Node("x", kind="input"), Node("a"), Node("b"), Node("y", kind="output")],
                   [("x", "a"), ("a", "b"), ("x", "b"), ("b", "y")], ["x"], "y")
    dev = Device(name="d", flops=1.0, spectral_eff_up=1, spectral_eff_dn=1)
    for m in EXACT:
        p = partition(g, dev, Server(flops=1.0), Link(1.0, 1.0), method=m)
        assert p.objective == 0.0 and p.status == "optimal"


def test_refinement_solve_closes_the_integer_rounding_gap():
    # a slow device on a wide-range DAG: force the residual re-solve and check its certificate
    from splitopt.partitioning.stgraph import build_network, solve_network
    rng = np.random.default_rng(11)
    for _ in range(20):
        g, dev, srv, link, b = _instance(rng, True)
        prob = iteration_problem(g, dev, srv, link, batch=b)
        net = build_network(prob)
        res = solve_network(net, lambda s, p=prob, n=net: p.price(s[n.node_of]), rel_tol=0.0)
        obj = prob.price(res.x[net.node_of])
        best = partition(g, dev, srv, link, method="brute", batch=b).objective
        assert obj == pytest.approx(best, rel=1e-12, abs=0)
        assert res.bound <= obj * (1 + 1e-15)
        assert obj - res.bound <= 1e-12 * obj


@pytest.mark.parametrize("labels", ["server", "device"])
def test_blockwise_on_block_graphs_matches_brute_force(labels):
    from splitopt.partitioning.synthetic import random_block_dag
    rng = np.random.default_rng(21 + (labels == "device"))
    contracted = expanded = 0
    for _ in range(120):
        g = random_block_dag(rng, int(rng.integers(1, 5)), leak=float(rng.choice([0.0, 0.3])))
        sc = random_scenario(rng, g, 1)
        dev = sc.devices[0]
        link = link_of(dev, sc.channel, float(10 ** rng.uniform(-3, 0)))
        p = partition(g, dev, sc.server, link, method="blockwise", labels=labels)
        best = partition(g, dev, sc.server, link, method="brute", labels=labels).objective
        assert p.status == "optimal"
        assert p.objective == pytest.approx(best, rel=1e-9, abs=0)
        _check_plan(p, g, dev, sc.server, link, 1, labels)
        info = p.meta["solver"]
        contracted += info["blocks_contracted"]
        expanded += info["blocks_found"] - info["blocks_contracted"]
    # both branches of the certificate are exercised
    assert contracted > 50 and expanded > 50


@pytest.mark.slow
def test_blockwise_stress():
    # test_blockwise_on_block_graphs_matches_brute_force, over 1500 instances (docs/partition.md)
    from splitopt.partitioning.synthetic import random_block_dag
    rng = np.random.default_rng(5)
    splits = 0
    for k in range(1500):
        labels = "device" if k % 2 else "server"
        g = random_block_dag(rng, int(rng.integers(1, 5)), leak=float(rng.choice([0.0, 0.3])),
                             decades=float(rng.choice([0, 3, 8])))
        sc = random_scenario(rng, g, 1)
        dev = sc.devices[0]
        link = link_of(dev, sc.channel, float(10 ** rng.uniform(-4, 0)))
        p = partition(g, dev, sc.server, link, method="blockwise", labels=labels)
        best = partition(g, dev, sc.server, link, method="brute", labels=labels)
        assert p.status == "optimal"
        assert p.objective == pytest.approx(best.objective, rel=1e-9, abs=0)
        side = best.devices[0].device_side
        splits += any(0 < len(side & set(m)) < len(m) for m in g.blocks().values())
    assert splits > 20  # optima that cut through a block occur, and blockwise still finds them
