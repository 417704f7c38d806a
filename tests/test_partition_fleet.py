"""partition_scenario: every device at its share, one cut per device class, against brute force."""

import numpy as np
import pytest

from splitopt import InputError, Training, device_phases, evaluate, link_of
from splitopt.partitioning import partition, partition_scenario
from splitopt.partitioning.brute import closed_sets
from splitopt.partitioning.fleet import round_problem
from splitopt.partitioning.synthetic import branching_dag
from splitopt.testing import random_dag, random_scenario


def _brute_round(sc, k, share):
    dev = sc.devices[k]
    link = link_of(dev, sc.channel, share)
    rows = closed_sets(round_problem(sc, dev, share))
    return min(device_phases(sc.graph, sc.graph.names_of(r), dev, sc.server, link,
                             sc.training).round_s for r in rows)


@pytest.mark.parametrize("labels", ["server", "device"])
def test_each_device_gets_its_optimal_round_time(labels):
    rng = np.random.default_rng(31 + (labels == "device"))
    for _ in range(25):
        n, k = int(rng.integers(1, 10)), int(rng.integers(1, 3))
        g = random_dag(rng, n, n_inputs=k) if rng.random() < 0.5 else branching_dag(rng, n,
                                                                                  n_inputs=k)
        tr = Training(batch_size=int(rng.integers(1, 16)), local_iters=int(rng.integers(1, 4)),
                      aggregate=bool(rng.random() < 0.5), labels=labels,
                      schedule=str(rng.choice(["parallel", "sequential"])))
        sc = random_scenario(rng, g, int(rng.integers(1, 5)), training=tr, classes=2,
                             serving="dedicated")  # per-device partition at the full server
        shares = list(rng.dirichlet(np.ones(sc.n_devices)) * 0.99)
        plan = partition_scenario(sc, shares)
        costs = evaluate(sc, plan)
        assert plan.status == "optimal" and plan.objective == costs.round_latency_s
        for k, d in enumerate(sc.devices):
            got = costs.per_device[d.name].round_s
            assert got == pytest.approx(_brute_round(sc, k, shares[k]), rel=1e-9), d.name
            assert plan.device(d.name).bandwidth_share == shares[k]


def test_identical_devices_share_one_cut_computation():
    rng = np.random.default_rng(2)
    g = random_dag(rng, 8)
    sc = random_scenario(rng, g, 6, classes=2)
    plan = partition_scenario(sc)
    assert plan.meta["cut_computations"] == 2
    assert {d.bandwidth_share for d in plan.devices} == {1 / 6}
    by_class = {}
    for d, dp in zip(sc.devices, plan.devices, strict=True):
        by_class.setdefault(d.signature(), set()).add(dp.device_side)
    assert all(len(v) == 1 for v in by_class.values())
    # different shares split a class again
    plan2 = partition_scenario(sc, {d.name: 0.1 + 0.01 * i for i, d in enumerate(sc.devices)})
    assert plan2.meta["cut_computations"] == 6


def test_one_iteration_case_matches_partition():
    rng = np.random.default_rng(8)
    g = random_dag(rng, 10)
    sc = random_scenario(rng, g, 1, training=Training(batch_size=4, aggregate=False))
    dev = sc.devices[0]
    plan = partition_scenario(sc, [0.5])
    single = partition(g, dev, sc.server, link_of(dev, sc.channel, 0.5), batch=4)
    assert plan.objective == pytest.approx(single.objective, rel=1e-12)


@pytest.mark.parametrize("method", ["blockwise", "milp", "brute"])
def test_methods_agree_on_a_fleet(method):
    rng = np.random.default_rng(9)
    sc = random_scenario(rng, random_dag(rng, 9), 3)
    assert partition_scenario(sc, method=method).objective == pytest.approx(
        partition_scenario(sc).objective, rel=1e-9)


def test_bad_shares_and_method():
    rng = np.random.default_rng(1)
    sc = random_scenario(rng, random_dag(rng, 4), 2)
    with pytest.raises(InputError, match="shares.*summing to at most 1"):
        partition_scenario(sc, [0.7, 0.7])
    with pytest.raises(InputError, match=r"shares\['d1'\].*\(0, 1\]"):
        partition_scenario(sc, [0.5, 0.0])
    with pytest.raises(InputError, match="one share per device"):
        partition_scenario(sc, {"d0": 0.5, "ghost": 0.5})
    with pytest.raises(InputError, match="2 numbers"):
        partition_scenario(sc, [1.0])
    with pytest.raises(InputError, match="method"):
        partition_scenario(sc, method="greedy")


def test_a_measured_class_gets_its_own_cut():
    from splitopt import Scenario
    rng = np.random.default_rng(4)
    g = random_dag(rng, 6)
    base = random_scenario(rng, g, 1).devices[0]
    devs = [base.model_copy(update={"name": f"p{i}", "device_class": c})
            for i, c in enumerate(["pi", "pi", "jetson", "nano"])]
    gm = g.with_times("jetson", {n: (1e-3, 2e-3) for n in g.names})
    sc = random_scenario(rng, gm, 1)
    sc = Scenario(gm, devs, sc.server, sc.channel, sc.training)
    plan = partition_scenario(sc)
    assert plan.meta["cut_computations"] == 2  # pi and nano price by FLOPs; jetson is measured


@pytest.mark.parametrize("seed", range(4))
def test_one_hull_per_compute_class_gives_the_per_device_hulls(seed):
    """Devices differing only in channel, memory or power share one hull: the union over compute
    classes equals the union of every device's own hull."""
    from splitopt.partitioning.fleet import class_hull_sets
    from splitopt.partitioning.hull import hull

    rng = np.random.default_rng(70 + seed)
    g = branching_dag(rng, 10) if seed % 2 else random_dag(rng, 10)
    sc = random_scenario(rng, g, 6, classes=2)
    devs = [d.model_copy(update={"spectral_eff_up": float(rng.uniform(0.5, 8)),
                                 "memory_bytes": float(10 ** rng.uniform(7, 10))})
            for d in sc.devices]
    sc = sc.replace(devices=devs)
    tr = sc.training
    every = {frozenset(s) for d in sc.devices
             for s in hull(g, d, sc.server, batch=tr.batch_size, local_iters=tr.local_iters,
                           aggregate=tr.aggregate, labels=tr.labels)}
    assert set(class_hull_sets(sc)) == every
