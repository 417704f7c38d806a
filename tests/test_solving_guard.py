"""The verified-answer guard (splitopt.solving.verify) and the regressions it was built for."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splitopt import Problem
from splitopt.graph import LayerGraph, Node
from splitopt.scenario import Scenario
from splitopt.solving.verify import (
    UNVERIFIED,
    Row,
    checked_status,
    verify,
    verify_problem,
)
from splitopt.system import Channel, Device, Server, Training


def issue11_scenario() -> Scenario:
    """Issue 11 §2's reproduction: x -> a0 -> y, a slow device with a good uplink, a fast one."""
    g = LayerGraph([Node("x", 0, 0, 1e4, 0, "input"), Node("a0", 1e9, None, 100, 0, "op"),
                    Node("y", 0, None, 4, 0, "output")], [("x", "a0"), ("a0", "y")], ["x"], "y")
    return Scenario(g, [Device(name="d0", flops=1e9, spectral_eff_up=4, spectral_eff_dn=6),
                        Device(name="d1", flops=1e11, spectral_eff_up=1, spectral_eff_dn=6)],
                    Server(flops=1e12), Channel(bandwidth_up_hz=1e7, bandwidth_dn_hz=1e6),
                    Training(batch_size=32, aggregate=False))


@pytest.mark.parametrize("path", ["auto", "generic"])
def test_issue11_server_share_reproduction(path):
    """Was: 6.83e9 with bound 0.587 labelled optimal (a device's shares at 1e-12)."""
    p = Problem(issue11_scenario(), server_share=True)
    p.minimize(p.round_latency())
    r = p.solve(path=path)
    assert r.termination == "optimal" and r.verification.passed
    assert r.objective == pytest.approx(0.9754424748, rel=1e-8)
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)
    assert r.bound <= r.objective and r.gap <= 1e-6
    assert min(d.bandwidth_share for d in r.plan.devices) > 0.4


def test_guard_flags_a_mismatched_objective_and_keeps_the_plan():
    p = Problem(issue11_scenario(), server_share=True)
    p.minimize(p.round_latency())
    r = p.solve()
    v = verify_problem(p, r.plan, objective=r.objective * 2, bound=r.bound)
    assert not v.passed and [c.name for c in v.failed] == ["repriced objective"]
    assert v.repriced == pytest.approx(r.objective, rel=1e-12)
    assert checked_status("optimal", v) == UNVERIFIED
    assert checked_status("time_limit", v) == "time_limit"


def test_guard_flags_a_bound_above_the_objective_and_a_gap_too_wide():
    v = verify(objective=1.0, repriced=1.0, bound=1.1)
    assert [c.name for c in v.failed] == ["bound"]
    v = verify(objective=-1.0, repriced=-1.0, bound=-1.1, sense="max")
    assert [c.name for c in v.failed] == ["bound"]
    v = verify(objective=1.0, repriced=1.0, bound=0.5, gap=1e-6)
    assert [c.name for c in v.failed] == ["gap"]
    assert verify(objective=1.0, repriced=1.0 + 1e-12, bound=1.0 - 1e-8, gap=1e-6).passed


def test_guard_checks_rows_shares_and_floors():
    v = verify(objective=1.0, repriced=1.0, rows=[Row("memory:d0", 2.0, hi=1.0),
                                                   Row("samples", 64.0, lo=64.0)],
               shares={"bandwidth": [0.6, 0.5]}, floors={"bandwidth": [0.7, 0.0]})
    assert {c.name for c in v.failed} == {"row memory:d0", "bandwidth shares sum <= 1",
                                          "bandwidth shares floor"}
    v = verify(objective=1.0, repriced=1.0, shares={"server": [0.0, 1.0]})
    assert [c.name for c in v.failed] == ["server shares in (0, 1]"]
    # a hair outside a floor or ceiling is within the tolerance; farther out is not
    near = verify(objective=1.0, repriced=1.0, shares={"bandwidth": [0.5, 0.25]},
                  floors={"bandwidth": [0.5 + 1e-12, 0.0]},
                  ceilings={"bandwidth": [1.0, 0.25 - 1e-12]})
    assert near.passed
    far = verify(objective=1.0, repriced=1.0, shares={"bandwidth": [0.5, 0.25]},
                 ceilings={"bandwidth": [1.0, 0.2]})
    assert [c.name for c in far.failed] == ["bandwidth shares ceiling"]
    assert not verify(objective=None, repriced=None).passed
    assert not verify(objective=1.0, repriced=math.inf).passed


def test_guard_evaluates_every_problem_row_on_the_plan():
    sc = issue11_scenario()
    p = Problem(sc, batch=[8, 32])
    p.add(p.memory("d0") <= 1e12, name="memory:d0")
    p.add(p.batch[0] + p.batch[1] >= 40, name="samples")
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.verification.passed and "row samples" in r.to_dict()["verification"]["checks"]
    q = Problem(sc, batch=[8, 32])
    q.add(q.batch[0] + q.batch[1] >= 60, name="samples")   # r's plan (40 samples) breaks it
    q.minimize(q.round_latency())
    v = verify_problem(q, r.plan, objective=r.objective, bound=r.bound)
    assert not v.passed and any(c.name == "row samples" for c in v.failed)


def test_result_to_dict_carries_the_verification_block():
    p = Problem(issue11_scenario())
    p.minimize(p.round_latency())
    d = p.solve().to_dict()
    assert d["verification"]["passed"] is True and d["verification"]["failed"] == []
    assert np.isclose(d["verification"]["repriced_objective"], d["objective"], rtol=1e-9)


def test_split_solving_guard_flags_a_wrong_combined_answer():
    from splitopt.backends import Result
    from splitopt.parallel import MilpBuilder
    from splitopt.parallel.split import guarded

    m = MilpBuilder()
    x = m.add_vars(2, ub=1, integer=True)
    m.add_row({int(x[0]): 1.0, int(x[1]): 1.0}, ub=1)
    m.minimize({int(x[0]): -1.0, int(x[1]): -2.0})
    prog = m.program()
    good = guarded(prog, Result("optimal", objective=-2.0, bound=-2.0, x=np.array([0.0, 1.0])))
    assert good.status == "optimal" and good.verification.passed
    lie = guarded(prog, Result("optimal", objective=-3.0, bound=-3.0, x=np.array([1.0, 1.0])))
    assert lie.status == UNVERIFIED
    assert {c.name for c in lie.verification.failed} == {"rows hold", "row r0"}
    off = guarded(prog, Result("optimal", objective=-2.5, bound=-2.5, x=np.array([0.0, 1.0])))
    assert [c.name for c in off.verification.failed] == ["repriced objective"]


def test_partition_plans_carry_their_verification():
    from splitopt import partition
    from splitopt.system import link_of

    sc = issue11_scenario()
    dev = sc.devices[0]
    plan = partition(sc.graph, dev, sc.server, link_of(dev, sc.channel, 1.0), batch=4)
    assert plan.status == "optimal" and plan.meta["verification"]["passed"] is True


def test_plans_are_priced_under_the_problems_own_server_flag():
    sc = issue11_scenario()  # serving: shared (the default)
    for flag, serving in ((False, "dedicated"), (True, "shared")):
        p = Problem(sc, server_share=flag)
        p.minimize(p.round_latency())
        r = p.solve()
        assert r.plan.meta["serving"] == serving and r.verification.passed
        assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)
