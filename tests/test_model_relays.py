"""Several cuts per device (relay tiers) in the builder, against multi-tier brute force."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations import multitier as mt
from splitopt.formulations.registry import tiers_of

from splitopt.errors import InputError
from splitopt.model import Problem
from splitopt.model.relays import Relay
from splitopt.solving.verify_builder import verify_problem
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _path_scenario(seed: int, *, tight: bool = False):
    """A chain and 1-3 devices read as a path (device -> relays -> server)."""
    rng = np.random.default_rng(seed)
    g = random_dag(rng, int(rng.integers(2, 5)), chain=True)
    sc = random_scenario(rng, g, int(rng.integers(1, 4)),
                         training=Training(batch_size=int(rng.integers(1, 32))),
                         serving="dedicated")
    if tight:  # memories between a node's and the whole model's: some placements do not fit
        tiers, links = tiers_of(sc)
        need = mt.costs(sc.graph, tiers, links, batch=sc.training.batch_size).mem
        devs = [d.model_copy(update={"memory_bytes": float(
            need.max() + rng.uniform(0, 1) * (need.sum() - need.max()))}) for d in sc.devices]
        sc = sc.replace(devices=devs)
    return sc


def _brute(sc) -> tuple[float, float]:
    """(best over every placement, best with the output off tier 0) by enumeration."""
    tiers, links = tiers_of(sc)
    c = mt.costs(sc.graph, tiers, links, batch=sc.training.batch_size)
    out = sc.graph.index[sc.graph.output]
    every = [(mt.latency(c, t), t) for t in itertools.product(range(c.n_tiers),
                                                              repeat=len(sc.graph))]
    return min(v for v, _ in every), min(v for v, t in every if t[out] != 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), tight=st.booleans())
def test_relays_equal_multitier_brute_force(seed, tight):
    sc = _path_scenario(seed, tight=tight)
    best, split = _brute(sc)
    p = mt.problem(sc)
    if split == math.inf:
        with pytest.raises(Exception, match="no plan"):
            p.solve()
    else:
        res = p.solve()
        assert res.termination == "optimal" and res.verification.passed
        assert res.objective == pytest.approx(split, rel=1e-6)
        tiers, links = tiers_of(sc)
        c = mt.costs(sc.graph, tiers, links, batch=sc.training.batch_size)
        assert mt.latency(c, mt.tiers_of_plan(p, res.plan)) == pytest.approx(res.objective,
                                                                             rel=1e-9)
    if best < math.inf:  # the registered solve: every placement, equal to the module's DP
        got = mt.solve_builder(sc)
        assert got.termination == "optimal" and got.verification.passed
        assert got.objective == pytest.approx(best, rel=1e-6)


def _solved(sc=None):
    sc = sc or _path_scenario(3)
    p = Problem(sc.replace(devices=sc.devices[:1]), server_share=False,
                relays=[Relay("edge", 5e11, 1e8, 1e8)])
    p.minimize(p.round_latency())
    return p, p.solve()


def test_a_relay_takes_work_off_the_server_and_the_plan_records_it():
    p, res = _solved()
    assert res.termination == "optimal" and res.verification.passed
    placed = res.plan.meta["relays"]["d0"]["edge"]
    side = res.plan.devices[0].device_side
    assert placed and not set(placed) & set(side)
    # what the relays add beside plan.predicted's two tiers (device -> server)
    assert res.plan.predicted.round_latency_s + res.plan.meta["relays_s"]["d0"] == pytest.approx(
        res.objective, rel=1e-9)
    assert res.objective == pytest.approx(
        p.round_time(0).value(*_point(p, res)), rel=1e-9)


def _point(p, res):
    """(columns, shares, options per device) of a result, for Expr.value."""
    x = np.zeros(p.n_cols)
    x[np.arange(p.n_devices) * p.n_options + res.options] = 1.0
    x[p.bandwidth.offset:p.bandwidth.offset + p.n_devices] = [
        d.bandwidth_share for d in res.plan.devices]
    for v in p.extras:
        x[v.offset:v.offset + v.size] = res.values[v.name]
    return x, np.vstack([x[p.bandwidth.offset:p.bandwidth.offset + p.n_devices],
                         np.ones(p.n_devices)]), p.n_options


def test_the_guard_reprices_relays_from_the_plan_record():
    p, res = _solved()
    meta = res.plan.meta
    wrong = replace(res.plan, meta={**meta, "relays": {"d0": {"edge": []}}})
    check = verify_problem(p, wrong, objective=res.objective, bound=res.bound, values=res.values)
    assert not check.passed  # the objective re-priced from the record differs
    unknown = replace(res.plan, meta={**meta, "relays": {"d0": {"cloud": ["out"]}}})
    check = verify_problem(p, unknown, objective=res.objective, bound=res.bound,
                           values=res.values)
    assert any("relay placement" in c.name for c in check.failed)


def test_relay_memory_and_several_devices():
    rng = np.random.default_rng(7)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 3, serving="dedicated")
    p = Problem(sc, server_share=False,
                relays=[Relay("edge", 1e12, 5e7, 5e7, memory_bytes=1.0)])  # holds nothing
    p.minimize(p.round_latency())
    res = p.solve()
    assert res.verification.passed
    assert all(not v["edge"] for v in res.plan.meta["relays"].values())
    free = Problem(sc, server_share=False)  # a path through the relay also pays its link
    free.minimize(free.round_latency())
    assert res.objective >= free.solve().objective * (1 - 1e-9)


def test_bad_relays_are_refused():
    sc = _path_scenario(1)
    edge = Relay("edge", 1e11, 1e8, 1e8)
    with pytest.raises(InputError, match="server_share"):
        Problem(sc, server_share=True, relays=[edge])
    with pytest.raises(InputError, match="relays"):
        Problem(sc, server_share=False, relays=[])
    with pytest.raises(InputError, match="distinct"):
        Problem(sc, server_share=False, relays=[edge, edge])
    with pytest.raises(InputError, match="flops"):
        Relay("edge", -1.0, 1e8, 1e8)
    with pytest.raises(InputError, match="memory_bytes"):
        Relay("edge", 1e9, 1e8, 1e8, memory_bytes=0)
    p = Problem(sc, server_share=False, relays=[edge])
    with pytest.raises(InputError, match="relay"):
        p.relays.memory(0, 2)
