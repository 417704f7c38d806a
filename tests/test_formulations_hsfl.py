"""HSFL: exact delay-to-target equals brute force over cuts x modes x batches; BCD never better."""

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations._oracle import argmin_over
from splitopt.formulations.hsfl import (
    HSFL,
    Config,
    Surrogate,
    config_latency,
    estimate_surrogate,
    penalty_of,
)

from splitopt.errors import InfeasibleError, InputError
from splitopt.plan import evaluate
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _instance(seed, n=3, nodes=3, batches=(1, 4)):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, nodes, chain=True)
    sc = random_scenario(rng, g, n, training=Training(batch_size=max(batches),
                                                      local_iters=int(rng.integers(1, 3))))
    sur = Surrogate(A=10.0, G=float(rng.uniform(0, 0.5)), sigma2=float(rng.uniform(0.5, 3)),
                    eps=1.0)
    return sc, HSFL(surrogate=sur, batches=list(batches))


def _brute(form, data):
    """Every cut x mode x batch choice (per device, or one common cut), exact shares for each.

    The latency of a choice is checked independently of config_latency: bisection on L with the
    band each FL device needs, d / (L - a), and the SL group's, D / (L - V) (time-sharing).
    """
    n, nb = data.a_fl.shape
    n_cut = data.a_sl.shape[0]
    rows = np.arange(n)

    def latency(cfg):
        a_f, d_f = data.a_fl[rows, cfg.batch][cfg.fl], data.d_fl[rows, cfg.batch][cfg.fl]
        sl = ~cfg.fl
        v = data.a_sl[cfg.cut, rows, cfg.batch][sl].sum()
        dd = data.d_sl[cfg.cut, rows, cfg.batch][sl].sum()
        lo, hi = max([v, *a_f]), max([v + dd * 2 * n, *(a_f + d_f * 2 * n)])
        for _ in range(56):  # 2^-56: below the 1e-9 the comparisons need
            mid = 0.5 * (lo + hi)
            need = np.sum(d_f / (mid - a_f)) + (dd / (mid - v) if sl.any() else 0.0)
            lo, hi = (mid, hi) if need > 1 else (lo, mid)
        return hi

    def value(ch):
        cuts, rest = np.array(ch[:n]), np.array(ch[n:])
        if not form.per_device_cuts and len(set(cuts[rest < nb])) > 1:
            return math.inf
        fl, b = rest >= nb, rest % nb
        ok = np.where(fl, data.ok_fl[rows, b], data.ok_sl[cuts, rows, b])
        if not ok.all():
            return math.inf
        cfg = Config(cuts, fl, b)
        r = form.surrogate.rounds(penalty_of(data, cfg))
        return r * latency(cfg) if math.isfinite(r) else math.inf

    opts = [range(n_cut)] * n + [range(2 * nb)] * n
    return argmin_over(itertools.product(*opts), value)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("per_device", [True, False])
def test_exact_equals_brute_force(seed, per_device):
    sc, form = _instance(seed)
    form = replace(form, per_device_cuts=per_device)
    data = form.data(sc)
    want = _brute(form, data)
    plan = form.solve(sc)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(want, rel=form.tol)
    assert plan.bound <= want * (1 + 1e-9)
    assert plan.gap <= form.tol
    base = form.baseline(sc)
    assert base.objective >= plan.objective * (1 - form.tol)


def test_sl_devices_time_share_the_band():
    """Each SL device uses, in its turn, all the band the FL devices leave."""
    sc, form = _instance(11, n=4)
    data = form.data(sc)
    cfg = Config(np.array([0, 1, 1, 0]), np.array([True, False, False, False]),
                 np.array([1, 0, 1, 1]))
    lat, beta = config_latency(data, cfg)
    assert beta[1] == beta[2] == beta[3] and beta[0] + beta[1] == pytest.approx(1, rel=1e-9)
    plan = form.plan(sc, data, cfg, method="hand")
    costs = evaluate(form.scenario_for(sc), plan)
    assert costs.round_latency_s == pytest.approx(lat, rel=1e-9)
    sl = [costs.per_device[d.name].round_s for d in sc.devices[1:]]
    assert costs.round_latency_s == pytest.approx(max(sum(sl), costs.per_device[sc.devices[0]
                                                                                 .name].round_s))


def test_plan_prices_to_its_objective():
    sc, form = _instance(7, n=4)
    plan = form.solve(sc)
    costs = evaluate(form.scenario_for(sc), plan)
    assert costs.total_delay_s == pytest.approx(plan.objective, rel=1e-9)
    assert plan.rounds == pytest.approx(plan.objective / costs.round_latency_s)
    for d in plan.devices:
        assert d.batch_size in (1, 4) and d.mode in ("fl", "split")
        if d.mode == "fl":
            assert d.device_side == frozenset(sc.graph.names)
    doc = plan.to_dict(form.scenario_for(sc))
    assert {"mode", "batch_size", "bandwidth_share", "cut"} <= set(doc["devices"][0])


def test_latency_is_the_exact_min_over_bandwidth():
    sc, form = _instance(3, n=2)
    data = form.data(sc)
    cfg = Config(np.array([1, 1]), np.array([True, False]), np.array([1, 0]))
    lat, beta = config_latency(data, cfg)
    # grid over the two shares: FL device vs the single SL device
    g = np.linspace(1e-4, 1 - 1e-4, 20001)
    t_fl = data.a_fl[0, 1] + data.d_fl[0, 1] / g
    t_sl = data.a_sl[1, 1, 0] + data.d_sl[1, 1, 0] / (1 - g)
    grid = float(np.min(np.maximum(t_fl, t_sl)))
    assert lat <= grid * (1 + 1e-12) and grid <= lat * (1 + 1e-3)
    assert beta.sum() <= 1 + 1e-9


def test_time_limit_returns_plan_and_bound():
    sc, form = _instance(2, n=5, nodes=4, batches=(1, 2, 4, 8))
    plan = form.solve(sc, time_limit=0.05)
    assert plan.status in ("time_limit", "optimal")
    assert plan.bound <= plan.objective * (1 + 1e-12)
    with pytest.raises(InputError, match="time_limit"):
        form.solve(sc, time_limit=0)


def test_memory_is_applied_and_named():
    sc, form = _instance(6, n=3)
    plan = form.solve(sc)
    mem = {d: p.memory_bytes for d, p in plan.predicted.per_device.items()}
    cap = sorted(mem.values())[len(mem) // 2]  # tighter than some devices' current need
    tight = sc.replace(devices=[d.model_copy(update={"memory_bytes": cap}) for d in sc.devices])
    got = form.solve(tight)
    assert got.status == "optimal"
    assert all(p.memory_bytes <= cap for p in got.predicted.per_device.values())
    assert got.objective == pytest.approx(_brute(form, form.data(tight)), rel=form.tol)
    tiny = sc.replace(devices=[d.model_copy(update={"memory_bytes": 1000}) for d in sc.devices])
    with pytest.raises(InfeasibleError, match="memory_bytes 1000"):
        form.solve(tiny)


def test_cli_route_honours_time_limit_and_memory():
    from splitopt.model.problems import route

    sc, _ = _instance(1, n=3)
    res = route("hsfl")(sc, time_limit=5.0)
    assert res.plan is not None and res.termination == "optimal"
    assert res.objective == pytest.approx(evaluate(HSFL().scenario_for(sc), res.plan)
                                          .total_delay_s)
    assert res.verification.passed and res.to_dict()["verification"]["checks"]
    tiny = sc.replace(devices=[d.model_copy(update={"memory_bytes": 1000}) for d in sc.devices])
    with pytest.raises(InfeasibleError, match="memory"):
        route("hsfl")(tiny)


def test_estimate_surrogate_recovers_parameters():
    true = dict(A=30.0, G=0.4, sigma2=2.0)
    floor = 0.1
    runs = []
    for fl_share, var in ((0.0, 0.05), (0.5, 0.05), (0.0, 0.2), (1.0, 0.1)):
        r = np.arange(1, 41)
        runs.append({"losses": floor + true["A"] / r + true["G"] * fl_share
                     + true["sigma2"] * var, "fl_share": fl_share, "var_term": var})
    sur, f_star = estimate_surrogate(runs, target=0.9)
    assert f_star == pytest.approx(floor, abs=1e-6)
    assert (sur.A, sur.G, sur.sigma2) == pytest.approx((30.0, 0.4, 2.0), rel=1e-6)
    assert sur.eps == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(InputError, match="target"):
        estimate_surrogate(runs, target=0.05)
    with pytest.raises(InputError, match="losses"):
        estimate_surrogate([{"losses": [1.0]}], target=1.0)


def test_bad_input():
    sc, _ = _instance(0)
    with pytest.raises(InputError, match="eps"):
        Surrogate(eps=0.0)
    with pytest.raises(InputError, match="sigma2"):
        Surrogate(sigma2=-1.0)
    with pytest.raises(InputError, match="data_share"):
        HSFL(data_share=[1.0]).data(sc)
    with pytest.raises(InputError, match="batches"):
        HSFL(batches=[0, 2]).data(sc)
    with pytest.raises(InputError, match="candidates"):
        HSFL(candidates="hull?").data(sc)


def test_custom_surrogate_is_used():
    class Linear(Surrogate):
        def rounds(self, total_penalty):
            return self.A * (1 + total_penalty)

    sc, form = _instance(4)
    custom = HSFL(surrogate=Linear(A=5.0, G=0.2, sigma2=1.0), batches=[1, 4])
    data = custom.data(sc)
    assert custom.solve(sc).objective == pytest.approx(_brute(custom, data), rel=custom.tol)


@pytest.mark.parametrize("name", ["edgesplit", "sfl", "sfl-server"])
def test_registered_for_the_cli(name):
    from splitopt.model.problems import get
    from splitopt.solving import solve

    sc, _ = _instance(1, n=3)
    res = solve(get(name)(sc))
    assert res.plan is not None and res.termination == "optimal"
    assert res.plan.predicted.total_delay_s == pytest.approx(res.objective, rel=1e-6)


def test_estimate_surrogate_from_rounds_recovers_parameters():
    from splitopt.formulations.hsfl import estimate_surrogate_from_rounds, rounds_to_target

    a, g, s2, floor = 300.0, 0.3, 2.0, 0.1  # R in the hundreds: whole rounds barely bias
    runs = []
    for fl_share, var in ((0.0, 0.05), (0.5, 0.05), (0.0, 0.2), (1.0, 0.1)):
        r = np.arange(1, 30001)
        runs.append({"losses": (floor + g * fl_share + s2 * var + a / r).tolist(),
                     "fl_share": fl_share, "var_term": var})
    sur, f_star = estimate_surrogate_from_rounds(runs, [1.5, 1.2, 1.0, 0.9], target=0.8)
    assert (sur.A, sur.G, sur.sigma2, f_star) == pytest.approx((a, g, s2, floor), rel=2e-2,
                                                               abs=2e-2)
    assert rounds_to_target([3.0, 2.0, 2.5, 1.0], 2.0) == 2.0
    assert rounds_to_target([3.0], 1.0) == math.inf
    with pytest.raises(InputError, match="levels"):
        estimate_surrogate_from_rounds(runs, [0.0], target=0.8)


# ------------------------------------------------------------- the public builder (issue 16)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3),
       batches=st.sampled_from([(1, 4), (2,), (1, 2, 4)]))
def test_builder_path_equals_own_route_and_brute_force(seed, n, batches):
    """HSFL stated on the builder, solved by the delay-to-target path = own route = brute force."""
    sc, form = _instance(seed % 10_000, n=n, batches=batches)
    form = replace(form, tol=1e-7)
    want = _brute(form, form.data(sc))
    if not math.isfinite(want):  # the target is out of reach for every choice
        for route in (form.solve_builder, form.solve):
            with pytest.raises(InfeasibleError, match="out of reach"):
                route(sc)
        return
    res = form.solve_builder(sc)
    assert res.termination == "optimal" and res.path == "delay-to-target"
    assert res.verification.passed and res.repriced_hsfl["passed"]
    assert res.objective == pytest.approx(want, rel=1e-6)
    assert res.bound <= want * (1 + 1e-9)
    assert res.objective == pytest.approx(form.solve(sc).objective, rel=1e-6)
    costs = evaluate(form.scenario_for(sc), res.plan)  # the plan carries h(P) rounds
    assert costs.total_delay_s == pytest.approx(res.objective, rel=1e-9)


def test_builder_option_table_prices_as_hsfl_data():
    """The Problem's options, read by the path, are HSFL's own round_terms pricing."""
    from splitopt.solving.hsfl_path import problem_data

    sc, form = _instance(5, n=3, nodes=4, batches=(1, 2, 4))
    p = form.problem(sc)
    got, fl_opt, sl_opt = problem_data(p, p.objective, p.allowed)
    ref = form.data(sc)
    for key in ("a_fl", "d_fl", "a_sl", "d_sl", "p_fl", "p_sl", "batches"):
        np.testing.assert_allclose(getattr(got, key), getattr(ref, key), rtol=1e-12, atol=0)
    assert np.all(fl_opt >= 0) and np.all(sl_opt >= 0)


def test_delay_to_target_statement_and_refusals():
    from splitopt.model import Problem
    from splitopt.model.delay import minimize_delay_to_target, mode_batch_penalty

    sc, form = _instance(3, n=3)
    scen = form.scenario_for(sc)
    sur = form.surrogate
    p = Problem(scen, modes=True, batch=[1, 4], server_share=False)
    pen = mode_batch_penalty(p, lambda k, fl, b: sur.penalty(1 / 3, fl, b))
    minimize_delay_to_target(p, pen, sur.rounds)
    res = p.solve(gap=1e-7)
    assert res.path == "delay-to-target" and res.termination == "optimal"
    assert res.objective == pytest.approx(replace(form, tol=1e-7).solve(sc).objective, rel=1e-6)
    with pytest.raises(InputError, match="path"):
        p.solve(path="generic")
    p.add(p.batch[0] + p.batch[1] <= 5, name="coupled")
    with pytest.raises(InputError, match="coupled"):
        p.solve()
    q = Problem(sc, modes=True, batch=[1, 4], server_share=False)  # parallel schedule
    with pytest.raises(InputError, match="schedule"):
        minimize_delay_to_target(q, pen, sur.rounds)
    r = Problem(scen, modes=True, batch=[1, 4], server_share=False)
    minimize_delay_to_target(r, r.cut[0] * 0.01, sur.rounds)  # a penalty of the cut
    with pytest.raises(InputError, match="penalty"):
        r.solve()
    with pytest.raises(InputError, match="per_device_cuts"):
        replace(form, per_device_cuts=False).problem(sc)


def test_registered_hsfl_is_a_builder_problem():
    from splitopt import formulation

    sc, _ = _instance(2, n=3)
    f = formulation.get("hsfl")
    assert not f.builder_lacks and f.build(sc).objective.kind == "delay-to-target"
    res = f.solve(sc, time_limit=30)
    assert res.termination == "optimal" and res.path == "delay-to-target"
    assert res.objective == pytest.approx(HSFL().solve(sc).objective, rel=2e-4)


def test_delay_to_target_path_starts_from_a_warm_start():
    """A Result's per-device options start the search (HSFL's BCD plan in solve_builder)."""
    import time

    from splitopt.solving import hsfl_path
    from splitopt.solving.structure import analyse

    sc, form = _instance(2, n=5, nodes=4, batches=(1, 2, 4, 8))
    p = form.problem(sc)
    best = p.solve(gap=1e-7)
    st = analyse(p)
    # a deadline already past: no node is explored, the answer is the start
    cold = hsfl_path.run(p, st, None, time.perf_counter(), 1e-7, False, None, None)
    warm = hsfl_path.run(p, st, None, time.perf_counter(), 1e-7, False, best, None)
    assert warm.objective == pytest.approx(best.objective, rel=1e-12)
    assert cold.objective > best.objective * (1 + 1e-6)  # the warm start is what made it
    assert cold.termination == warm.termination == "time_limit"
