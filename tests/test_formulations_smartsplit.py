"""SmartSplit: the MILP equals brute force; greedy is never better; recomputation helps; errors."""

from __future__ import annotations

import numpy as np
import pytest
from splitopt.formulations import smartsplit as ss

from splitopt.errors import InfeasibleError, InputError, SolverError
from splitopt.graph import LayerGraph, Node
from splitopt.scenario import Scenario
from splitopt.system import Channel, Device, Server, Training
from splitopt.testing import random_dag, random_scenario


def _instance(seed: int, *, n: int = 3, layers: int = 3, deadline: bool = False, **kw):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, layers, chain=True)
    sc = random_scenario(rng, g, n, training=Training(batch_size=int(rng.integers(16, 256)),
                                                      optimizer_copies=int(rng.integers(0, 3))))
    full = ss.instance(sc, budgets=[1e18] * n)
    # budgets between each device's least and largest memory, so recomputation matters
    lo = np.array([ss._min_memory(full, k) for k in range(n)])
    hi = full.mem.max(axis=1)
    bud = np.maximum(lo + rng.uniform(-0.1, 0.8, n) * (hi - lo), 0.5 * lo)
    data = rng.integers(1, 5, size=(n, 2)).astype(float)
    dl = float(np.median(full.base)) * rng.uniform(1, 3) if deadline else None
    return ss.instance(sc, budgets=bud, data=data, deadline=dl, **kw)


def _same(a: ss.Result, b: ss.Result) -> None:
    assert a.selected_data == pytest.approx(b.selected_data, rel=1e-9)
    assert a.round_s == pytest.approx(b.round_s, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_latency_milp_equals_brute_force(seed):
    inst = _instance(seed, min_devices=int(seed % 3) + 1, coverage=0.5 * (seed % 2))
    try:
        exact = ss.brute_force(inst)
    except InfeasibleError:
        with pytest.raises(InfeasibleError, match="no plan"):
            ss.solve(inst)
        return
    got = ss.solve(inst)
    assert got.status == "optimal" and got.verification.passed
    _same(got, exact)
    assert got.bound <= got.round_s * (1 + 1e-9)
    try:
        assert ss.greedy(inst).round_s >= got.round_s * (1 - 1e-9)
    except InfeasibleError:
        pass  # the greedy may fail where an exact plan exists


@pytest.mark.parametrize("seed", range(12))
def test_participation_milp_equals_brute_force(seed):
    inst = _instance(100 + seed, deadline=True)
    exact = ss.brute_force(inst, objective="participation")
    got = ss.solve(inst, objective="participation")
    _same(got, exact)
    assert got.data_bound == pytest.approx(got.selected_data)
    gr = ss.greedy(inst, objective="participation")
    assert (gr.selected_data, -gr.round_s) <= (got.selected_data + 1e-9, -got.round_s + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_without_recomputation_equals_brute_force_and_is_never_better(seed):
    with_rc = _instance(200 + seed, deadline=True)
    without = ss.instance(with_rc.scenario, budgets=with_rc.budget, data=with_rc.data,
                          deadline=with_rc.deadline, recompute=False)
    a = ss.solve(with_rc, objective="participation")
    b = ss.solve(without, objective="participation")
    _same(b, ss.brute_force(without, objective="participation"))
    assert all(not ch.dropped for ch in b.choices if ch is not None)
    assert b.selected_data <= a.selected_data + 1e-9


def _memory_wall_scenario():
    """Activation-heavy early layers, a small bottleneck, a slow link: cut late, drop early."""
    nodes = [Node("x", 0, 0, 1e5, 0, "input"), Node("a", 1e6, None, 1e6, 1e3),
             Node("b", 1e6, None, 1e6, 1e3), Node("c", 1e7, None, 1e2, 1e3),
             Node("loss", 1e3, None, 4, 0, "output")]
    g = LayerGraph(nodes, [("x", "a"), ("a", "b"), ("b", "c"), ("c", "loss")], ["x"], "loss")
    dev = Device(name="pi", flops=1e10, spectral_eff_up=1, spectral_eff_dn=1)
    return Scenario(g, [dev], Server(flops=1e12), Channel(bandwidth_up_hz=1e5, bandwidth_dn_hz=1e5),
                    Training(batch_size=16))


def test_recomputation_lets_a_device_fit_and_costs_forward_time():
    sc = _memory_wall_scenario()
    free = ss.instance(sc, budgets=[1e18])
    assert ss.solve(free).choices[0].cut == 3
    budget = float(free.mem[0, 3]) - 0.9e6 * 16  # one early activation too many
    tight = ss.instance(sc, budgets=[budget])
    res = ss.solve(tight)
    ch = res.choices[0]
    assert ch.cut == 3 and ch.dropped
    t, m = ss.device_cost(tight, 0, ch.cut, ch.dropped)
    assert m <= budget and t > tight.base[0, ch.cut]
    assert res.round_s == pytest.approx(ss.brute_force(tight).round_s)
    without = ss.solve(ss.instance(sc, budgets=[budget], recompute=False))
    assert without.choices[0].cut < 3 and without.round_s > res.round_s
    plan = res.plan
    assert plan.meta["recompute"]["pi"]
    with pytest.raises(InfeasibleError, match="even with recomputation"):
        ss.solve(ss.instance(sc, budgets=[1e3]))


def test_changing_budgets_per_round():
    inst = _instance(3, n=2, layers=3)
    rounds = [inst.budget * f for f in (4.0, 1.0, 2.0)]
    res = ss.solve_rounds(inst, rounds)
    for b, r in zip(rounds, res, strict=True):
        one = ss.instance(inst.scenario, budgets=b, data=inst.data)
        _same(r, ss.brute_force(one))
    assert res[0].round_s <= res[2].round_s + 1e-12 <= res[1].round_s + 2e-12
    with pytest.raises(InputError, match="budgets\\[0\\]"):
        ss.solve_rounds(inst, [[1.0]])


def test_bad_input():
    inst = _instance(1)
    sc = inst.scenario
    with pytest.raises(InputError, match="budgets"):
        ss.instance(sc, budgets=[1.0])
    with pytest.raises(InputError, match="coverage"):
        ss.instance(sc, coverage=2)
    with pytest.raises(InputError, match="objective"):
        ss.solve(inst, objective="speed")
    with pytest.raises(InputError, match="beta"):
        ss.instance(sc, beta=[0.9, 0.9, 0.9])
    with pytest.raises(InputError, match="dropped"):
        ss.device_cost(inst, 0, 0, [0])
    dag = random_scenario(np.random.default_rng(0), random_dag(np.random.default_rng(1), 6,
                                                               skip_prob=1.0), 2)
    if not dag.graph.is_chain:
        with pytest.raises(InputError, match="chain"):
            ss.instance(dag)


def test_split_across_workers_is_exact():
    inst = _instance(11, n=3, layers=3, deadline=True)
    one = ss.solve(inst, objective="participation")
    two = ss.solve(inst, objective="participation", workers=2)
    _same(one, two)
    assert two.bound == pytest.approx(one.bound, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_subchannels_cap_participants_and_equal_brute_force(seed):
    base = _instance(300 + seed, deadline=True)
    inst = ss.instance(base.scenario, budgets=base.budget, data=base.data, channels=2,
                       deadline=base.deadline)
    got = ss.solve(inst, objective="participation")
    _same(got, ss.brute_force(inst, objective="participation"))
    assert got.participants <= 2 and np.allclose(inst.beta, 0.5)
    with pytest.raises(InputError, match="channels"):
        ss.instance(base.scenario, channels=0)


def test_time_limit_returns_plan_and_bound():
    from splitopt.benchmarks.bench_extensions import memory_wall_scenario

    inst = ss.instance(memory_wall_scenario(20), min_devices=10)
    res = ss.solve(inst, time_limit=0.01)  # the greedy MIP start guarantees a plan
    assert res.status in ("time_limit", "optimal")
    assert res.bound is None or res.bound <= res.round_s * (1 + 1e-9)
    assert res.round_s <= ss.greedy(inst).round_s * (1 + 1e-9)
    from splitopt.backends import Result

    with pytest.raises(SolverError, match="before finding a plan"):
        ss._check_found(inst, Result("time_limit", bound=1.0, solve_s=0.01))


@pytest.mark.parametrize("seed", range(6))
def test_mip_start_of_a_plan_is_feasible_and_decodes_back(seed):
    inst = _instance(400 + seed, deadline=True)
    plan = ss.brute_force(inst, objective="participation").choices
    m, s, T, arcs = ss.build(inst, phase="participation")
    prog = m.program()
    x = ss._start(prog.n_cols, s, T, arcs, inst, plan)
    assert prog.max_violation(x) <= 1e-9
    assert tuple(ss._decode(x, s, arcs)) == tuple(plan)


def test_the_builder_formulation_on_the_catalog_memory_wall():
    from splitopt.benchmarks.bench_extensions import memory_wall_scenario

    inst = ss.instance(memory_wall_scenario(20), channels=10, deadline=2.0)
    own = ss.solve(inst, objective="participation")
    got = ss.solve_builder(inst, objective="participation")
    assert got.termination == "optimal" and got.verification.passed
    assert (got.participants, got.round_s) == (own.participants, pytest.approx(own.round_s))
    assert any(ch is not None and ch.dropped for ch in got.choices)  # recomputation is used
