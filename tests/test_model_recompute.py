"""The builder's keep/recompute columns and coverage rows, against SmartSplit's brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations import smartsplit as ss

from splitopt.errors import InfeasibleError, InputError
from splitopt.graph import LayerGraph, Node
from splitopt.model import Problem, maximum
from splitopt.scenario import Scenario
from splitopt.solving.verify_builder import verify_problem
from splitopt.system import Channel, Device, Server, Training
from splitopt.testing import random_dag, random_scenario


def _wall(budget_cut: float = 0.9e6 * 16) -> tuple[Scenario, float]:
    """Activation-heavy early layers, a small bottleneck, a slow link: cut late, drop early."""
    nodes = [Node("x", 0, 0, 1e5, 0, "input"), Node("a", 1e6, None, 1e6, 1e3),
             Node("b", 1e6, None, 1e6, 1e3), Node("c", 1e7, None, 1e2, 1e3),
             Node("loss", 1e3, None, 4, 0, "output")]
    g = LayerGraph(nodes, [("x", "a"), ("a", "b"), ("b", "c"), ("c", "loss")], ["x"], "loss")
    dev = Device(name="pi", flops=1e10, spectral_eff_up=1, spectral_eff_dn=1,
                 power_compute_w=5.0)
    sc = Scenario(g, [dev], Server(flops=1e12), Channel(bandwidth_up_hz=1e5, bandwidth_dn_hz=1e5),
                  Training(batch_size=16))
    full = Problem(sc).options.mem[0, 3]  # every activation kept at the deepest cut
    return sc, float(full - budget_cut)


def _solved_wall() -> tuple[Scenario, float, Problem, object]:
    sc, budget = _wall()
    p = Problem(sc, server_share=False, recompute=True)
    p.add(p.memory("pi") <= budget, name="memory:pi")
    p.minimize(p.round_latency())
    return sc, budget, p, p.solve()


def test_recomputation_fits_a_deep_cut_priced_like_smartsplit():
    sc, budget, _, res = _solved_wall()
    assert res.termination == "optimal" and res.verification.passed
    assert len(res.plan.devices[0].device_side) == 4  # x, a, b, c: only 100 B/sample sent
    assert res.plan.meta["recompute"] == {"pi": ["a"]}
    # SmartSplit's own pricing of the same decision
    inst = ss.instance(sc, budgets=[budget], beta=[1.0])
    t, mem = ss.device_cost(inst, 0, 3, [1])
    assert res.objective == pytest.approx(t, rel=1e-9)
    assert res.plan.meta["recompute_s"]["pi"] == pytest.approx(t - inst.base[0, 3], rel=1e-9)
    assert res.plan.predicted.round_latency_s + res.plan.meta["recompute_s"]["pi"] == \
        pytest.approx(res.objective, rel=1e-9)  # predicted: the plan without recomputation
    assert res.objective == pytest.approx(ss.brute_force(inst).round_s, rel=1e-9)
    # without recomputation the deep cut does not fit: the answer sends the raw input
    q = Problem(sc, server_share=False)
    q.add(q.memory("pi") <= budget)
    q.minimize(q.round_latency())
    assert q.solve().objective > 100 * res.objective


def test_the_guard_reprices_recomputation_from_the_plan_record():
    from dataclasses import replace

    _, _, p, res = _solved_wall()
    kept_all = replace(res.plan, meta={**res.plan.meta, "recompute": {}})
    check = verify_problem(p, kept_all, objective=res.objective, bound=res.bound,
                           values=res.values)
    assert not check.passed and any("memory:pi" in c.name for c in check.failed)
    outside = replace(res.plan, meta={**res.plan.meta, "recompute": {"pi": ["loss"]}})
    check = verify_problem(p, outside, objective=res.objective, bound=res.bound,
                           values=res.values)
    assert not check.passed
    assert any("device side" in c.name for c in check.failed)


def test_terms_memory_time_energy_and_on_device():
    sc, _ = _wall()
    p = Problem(sc, server_share=False, recompute=True)
    cut3 = p.cut.index_of({"x", "a", "b", "c"})
    x = np.zeros(p.n_cols)
    x[cut3] = 1.0
    x[p.bandwidth.offset] = 1.0
    r = p.recompute.r.offset
    x[r + 0] = 1.0  # drop a: live bytes while a is recomputed = x + a
    act = sc.graph.act_bytes * 16
    x[p.recompute.live.offset] = (act[0] + act[1]) / p.recompute.scale
    shares = np.ones((2, 1))
    o = p.options
    assert p.on_device(0, "c").value(x, shares, p.n_options) == 1.0
    assert p.on_device(0, "loss").value(x, shares, p.n_options) == 0.0
    fwd_a = sc.graph.fwd_seconds(None, 1e10)[1] * 16
    assert p.round_time(0).value(x, shares, p.n_options) == pytest.approx(
        o.a_dev[0, cut3] + o.d[0, cut3] + o.a_srv[0, cut3] + fwd_a)
    assert p.energy(0).value(x, shares, p.n_options) == pytest.approx(
        o.e_comp[0, cut3] + o.e_tx[0, cut3] + 5.0 * fwd_a)
    peak = max(act[[0, 2, 3]].sum(), act[0] + act[1])
    assert p.memory(0).value(x, shares, p.n_options) == pytest.approx(
        o.mem[0, cut3] - act[:4].sum() + peak)
    assert p.recompute.seconds(0).value(x, shares, p.n_options) == pytest.approx(fwd_a)


def test_bad_recompute_input_is_refused():
    sc, _ = _wall()
    p = Problem(sc, recompute=True)
    with pytest.raises(InputError, match="recompute layer"):
        p.recompute["pi", "x"]  # the input is never recomputed
    with pytest.raises(InputError, match="recompute\\[...\\]"):
        p.recompute["pi"]
    with pytest.raises(InputError, match="node"):
        p.on_device(0, "nope")
    with pytest.raises(InputError, match="one batch size"):
        Problem(sc, batch=[8, 16], recompute=True)
    with pytest.raises(InputError, match="recompute"):
        Problem(sc, recompute="yes")
    with pytest.raises(InputError, match="parallel"):
        Problem(sc.replace(training=sc.training.model_copy(update={"schedule": "sequential"})),
                recompute=True)
    dag = random_scenario(np.random.default_rng(0),
                          random_dag(np.random.default_rng(1), 6, skip_prob=1.0), 2)
    if not dag.graph.is_chain:
        with pytest.raises(InputError, match="chain"):
            Problem(dag, recompute=True)


def test_fixing_and_forbidding_recomputation():
    sc, budget = _wall()
    p = Problem(sc, server_share=False, recompute=True)
    p.add(p.memory("pi") <= budget)
    p.recompute.forbid()
    p.minimize(p.round_latency())
    assert p.solve().plan.meta["recompute"] == {}
    q = Problem(sc, server_share=False, recompute=True)
    q.recompute.fix("pi", "b", True)
    q.minimize(q.round_latency())
    assert q.solve().plan.meta["recompute"] == {"pi": ["b"]}


def test_coverage_rows_helper():
    rng = np.random.default_rng(4)
    sc = random_scenario(rng, random_dag(rng, 3, chain=True), 4, serving="dedicated")
    data = np.array([[5, 0], [1, 4], [2, 2], [0, 1]], dtype=float)
    p = Problem(sc, selection=True)
    rows = p.selected.covers(data, 0.6)
    assert len(rows) == 2
    p.add(rows, name="coverage")
    p.minimize(p.round_latency())
    res = p.solve()
    sel = np.array([d.selected for d in res.plan.devices])
    assert np.all(data[sel].sum(axis=0) >= 0.6 * data.sum(axis=0))
    assert res.verification.passed
    # the same rows written by hand give the same optimum
    q = Problem(sc, selection=True)
    for j in range(2):
        q.add(sum(data[k, j] * q.selected[k] for k in range(4)) >= 0.6 * data[:, j].sum())
    q.minimize(q.round_latency())
    assert q.solve().objective == pytest.approx(res.objective, rel=1e-9)
    assert p.selected.covers(data, 0.0) == []
    for bad in ([[1, 2]], np.ones((4, 2)) * -1, "x"):
        with pytest.raises(InputError, match="coverage data"):
            p.selected.covers(bad, 0.5)
    with pytest.raises(InputError, match="coverage fraction"):
        p.selected.covers(data, 1.5)
    with pytest.raises(InputError, match="weights"):
        p.selected.total([1.0])


def test_a_max_of_maxes_is_one_max_and_its_rows_hold():
    rng = np.random.default_rng(2)
    sc = random_scenario(rng, random_dag(rng, 3, chain=True), 3, serving="dedicated")
    p = Problem(sc)
    server = sum(p.phase(k, "server_compute") for k in range(3))
    nested = maximum([p.round_latency(), server])
    assert len(nested.maxes) == 1 and len(nested.maxes[0][1]) == 4
    free = Problem(sc)
    free.minimize(free.round_latency())
    t = free.solve().objective
    p.add(nested <= 2 * t, name="deadline")
    p.minimize(p.total_energy())
    res = p.solve()
    assert res.verification.passed and res.plan.predicted.round_latency_s <= 2 * t * (1 + 1e-6)


# ------------------------------------------------------------------ property: vs brute force
def _random_instance(seed: int, objective: str) -> ss.Instance:
    rng = np.random.default_rng(seed)
    g = random_dag(rng, int(rng.integers(2, 4)), chain=True)
    n = int(rng.integers(1, 4))
    sc = random_scenario(rng, g, n, training=Training(batch_size=int(rng.integers(8, 128)),
                                                      optimizer_copies=int(rng.integers(0, 3))),
                         serving="dedicated")
    free = ss.instance(sc, budgets=[1e18] * n)
    lo, hi = free.mem.min(axis=1), free.mem.max(axis=1)
    budgets = lo + rng.uniform(0.0, 1.0, n) * (hi - lo)
    data = rng.integers(0, 5, size=(n, 2)).astype(float) + np.eye(n, 2)
    deadline = float(np.median(free.base)) * rng.uniform(1, 3) if objective == "participation" \
        else None
    channels = int(rng.integers(1, n + 1)) if rng.random() < 0.3 else None  # sub-channels
    most = n if channels is None else channels
    return ss.instance(sc, budgets=budgets, data=data, coverage=float(rng.choice([0, 0.5])),
                       deadline=deadline, recompute=bool(rng.random() < 0.8), channels=channels,
                       min_devices=None if deadline else int(rng.integers(1, most + 1)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), objective=st.sampled_from(["latency", "participation"]))
def test_builder_equals_smartsplit_brute_force(seed, objective):
    inst = _random_instance(seed, objective)
    try:
        exact = ss.brute_force(inst, objective=objective)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            ss.solve_builder(inst, objective=objective)
        return
    got = ss.solve_builder(inst, objective=objective)
    assert got.termination == "optimal" and got.verification.passed
    # SmartSplit's own pricing (sub-channels: the shares are solved, to the solver's tolerance)
    assert got.objective == pytest.approx(got.round_s, rel=1e-6)
    own = ss.solve(inst, objective=objective)  # the module's own path MILP
    for other in (exact, own):
        if objective == "participation":  # latency ties may select other devices
            assert got.selected_data == pytest.approx(other.selected_data, rel=1e-9)
        assert got.round_s == pytest.approx(other.round_s, rel=1e-6, abs=1e-12)
