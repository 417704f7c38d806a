"""The incremental Planner, the grouped bisection and the vectorised pricer.

Exactness: every update equals a from-scratch solve of the rebuilt problem; the grouped bisection
equals brute force over all option choices; the vectorised pricer equals plan.evaluate() (the
scalar reference) on random plans. No test measures time (benchmarks/bench_fleet.py does).
"""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import InputError, Planner
from splitopt.plan import DevicePlan, Plan, evaluate
from splitopt.pricing import DevicePlans, price_options
from splitopt.solving.bisection import MinMaxRows, bisect_minmax, fixed_option_time
from splitopt.solving.reprice import FIELDS as REPRICED
from splitopt.solving.reprice import reprice
from splitopt.testing import random_dag, random_scenario


def _fleet(seed, n=5, layers=8, classes=2):
    from splitopt.formulations.edgesplit import EdgeSplit
    from splitopt.formulations.sfl import SFL

    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, layers, chain=True), n, classes=classes)
    devs = [d.model_copy(update={"spectral_eff_up": float(rng.uniform(0.5, 8))})
            for d in sc.devices]  # one channel per device: the classes differ only in compute
    form = EdgeSplit(server_share=False) if seed % 2 else SFL(server_share=False)
    return sc.replace(devices=devs), form, rng


def _same(res, form, scenario):
    ref = form.problem(scenario).solve()
    assert res.termination == "optimal", res.verification.summary()
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert res.bound <= res.objective * (1 + 1e-12)
    repriced = evaluate(form.scenario_for(scenario), res.plan).total_delay_s
    assert repriced == pytest.approx(res.objective, rel=1e-9)


CHANGE = st.sampled_from(["flops", "spectral_eff_up", "spectral_eff_dn", "snr_db",
                          "memory_bytes", "join", "leave"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), changes=st.lists(st.tuples(CHANGE, st.floats(0.05, 20)),
                                                     min_size=1, max_size=4))
def test_updates_equal_from_scratch(seed, changes):
    sc, form, rng = _fleet(seed)
    # the fast set-up (no builder Problem) must define the same problem as the builder's
    pl = Planner.for_formulation(form, sc) if seed % 3 == 0 else Planner(form.problem(sc))
    assert pl.reason == ""
    _same(pl.solve(), form, sc)
    for i, (kind, x) in enumerate(changes):
        names = [d.name for d in pl.scenario.devices]
        name = names[int(rng.integers(len(names)))]
        dev = pl.scenario.device(name)
        if kind == "join":
            res = pl.join(dev.model_copy(update={"name": f"new{i}", "flops": dev.flops * x}))
        elif kind == "leave":
            if len(names) == 1:
                continue
            res = pl.leave(name)
        elif kind == "memory_bytes":  # between its smallest and largest option, or unbounded
            mem = form.problem(pl.scenario).options.mem[names.index(name)]
            cap = mem.min() + (mem.max() - mem.min()) * x / 18 if x < 18 else math.inf
            res = pl.update(name, memory_bytes=float(cap))
        elif kind == "snr_db":
            res = pl.update(name, snr_db=x)
        else:
            res = pl.update(name, **{kind: getattr(dev, kind) * x})
        _same(res, form, pl.scenario)


def test_shared_server_update_equals_from_scratch():
    from splitopt.formulations.sfl import SFLSharedServer

    for seed in range(3):
        sc, _, rng = _fleet(seed, n=4, layers=5)
        form = SFLSharedServer()
        pl = Planner.for_formulation(form, sc) if seed else Planner(form.problem(sc))
        assert pl.reason == "" and pl.path == "server-share"
        _same(pl.solve(), form, sc)
        _same(pl.update("d1", flops=sc.device("d1").flops * 3), form, pl.scenario)
        _same(pl.update("d2", spectral_eff_dn=0.3), form, pl.scenario)


def test_problem_without_incremental_form_needs_rebuild():
    from splitopt.model import Problem

    sc, _, _ = _fleet(1, n=3, layers=4)
    p = Problem(sc, batch=[4, 8])
    p.add(sum(p.batch[k] for k in range(3)) >= 16, name="samples")
    p.minimize(p.round_latency())
    pl = Planner(p)
    assert "coupled" in pl.reason
    assert pl.solve().termination == "optimal"
    with pytest.raises(InputError, match="rebuild"):
        pl.update("d0", flops=1e12)

    def rebuild(scen):
        q = Problem(scen, batch=[4, 8])
        q.add(sum(q.batch[k] for k in range(3)) >= 16, name="samples")
        q.minimize(q.round_latency())
        return q

    pl = Planner(p, rebuild=rebuild)
    pl.solve()
    res = pl.update("d0", flops=1e12)
    assert res.objective == pytest.approx(rebuild(pl.scenario).solve().objective, rel=1e-9)
    res = pl.join(sc.device("d1").model_copy(update={"name": "d3"}))  # no warm start: 4 devices
    assert res.objective == pytest.approx(rebuild(pl.scenario).solve().objective, rel=1e-9)


def test_an_impossible_update_changes_nothing():
    from splitopt import InfeasibleError

    sc, form, _ = _fleet(5, n=3, layers=5)
    pl = Planner.for_formulation(form, sc)
    before = pl.solve().objective
    with pytest.raises(InfeasibleError, match="d1: no candidate fits"):
        pl.update("d1", memory_bytes=1.0)
    assert pl.scenario.device("d1").memory_bytes == sc.device("d1").memory_bytes
    with pytest.raises(InfeasibleError):  # several at once: all or nothing
        pl.update_many({"d0": {"flops": 1e13}, "d1": {"memory_bytes": 1.0}})
    assert pl.scenario.device("d0").flops == sc.device("d0").flops
    res = pl.update_many({"d0": {"flops": 1e13}, "d2": {"spectral_eff_dn": 0.3}})
    _same(res, form, pl.scenario)
    pl.update_many({"d0": {"flops": sc.device("d0").flops},
                    "d2": {"spectral_eff_dn": sc.device("d2").spectral_eff_dn}})
    assert pl.update("d2", flops=sc.device("d2").flops).objective == pytest.approx(before)


def test_bad_updates_are_named():
    sc, form, _ = _fleet(1, n=3, layers=4)
    pl = Planner(form.problem(sc))
    pl.solve()
    with pytest.raises(InputError, match="device"):
        pl.update("nope", flops=1e12)
    with pytest.raises(InputError, match="bandwith"):
        pl.update("d0", bandwith=3)
    with pytest.raises(InputError):
        pl.update("d0", flops=-1.0)
    with pytest.raises(InputError, match="splitopt Problem"):
        Planner(sc)


def _class_rows(rng: np.random.Generator, n_max: int, o_max: int, g_max: int, bmin_p: float):
    """Class rows (equal A, D up to a factor), some zeros, minimum shares, forbidden options."""
    n, o, g = (int(rng.integers(1, n_max)), int(rng.integers(1, o_max)),
               int(rng.integers(1, g_max)))
    cls = rng.integers(0, g, n)
    A = rng.uniform(0, 10, (g, o))[cls]
    D = rng.uniform(0, 5, (g, o))[cls] * (10 ** rng.uniform(-1, 1, n))[:, None]
    D[rng.random((n, o)) < 0.1] = 0.0
    bmin = np.where(rng.random((n, o)) < bmin_p, rng.uniform(0, 0.3, (n, o)), 0.0)
    allowed = rng.random((n, o)) < 0.8
    allowed[np.arange(n), rng.integers(0, o, n)] = True
    return A, D, bmin, allowed


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_grouped_bisection_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    A, D, bmin, allowed = _class_rows(rng, 5, 4, 3, 0.15)
    n = len(A)
    out = bisect_minmax(A, D, bmin, allowed)
    best, k = math.inf, np.arange(n)
    for c in itertools.product(*[np.flatnonzero(allowed[i]) for i in k]):
        best = min(best, fixed_option_time(A[k, c], D[k, c], bmin[k, c]))
    if not math.isfinite(best):
        assert out.termination == "infeasible"
        return
    assert out.objective == pytest.approx(best, rel=1e-9)
    assert out.bound <= best * (1 + 1e-12)
    assert np.all(out.beta >= bmin[k, out.options] * (1 - 1e-12))
    assert out.beta.sum() <= 1 + 1e-9


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_vectorised_pricer_equals_evaluate(seed):
    from splitopt.model import Problem

    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 6, chain=bool(seed % 2)), 4)
    serving = "shared" if seed % 3 == 0 else "dedicated"
    sc = sc.replace(server=sc.server.model_copy(update={"serving": serving}))
    if seed % 4 == 1:
        sc = sc.replace(training=sc.training.model_copy(update={"schedule": "sequential"}))
    if seed % 5 == 2:  # measured times on a few nodes for one class (priced per class)
        g = sc.graph.with_times(sc.devices[0].cls, {v: (1e-3, 2e-3) for v in sc.graph.names[1:3]})
        sc = sc.replace(graph=g)
    p = Problem(sc, batch=[2, 8], modes=True, selection=bool(seed % 2))  # "off" priced apart
    n = p.n_devices
    option = np.array([rng.choice(np.flatnonzero(p.allowed[k])) for k in range(n)])
    beta = rng.dirichlet(np.ones(n)) * 0.999
    phi = rng.dirichlet(np.ones(n)) * 0.999 if p.server_share is not None else None
    names = [d.name for d in sc.devices]
    devs = DevicePlans(p.table, p.options).build(
        names, option, beta, phi)
    plan = Plan(devs, rounds=sc.training.rounds)
    ref = evaluate(sc, plan)
    fast = price_options(sc, p.options, names, option, beta, phi, float(sc.training.rounds))
    assert fast.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
    assert list(fast.per_device) == list(ref.per_device)  # devices left out are not priced
    for name in ref.per_device:
        a, b = fast.per_device[name].to_dict(), ref.per_device[name].to_dict()
        assert a == pytest.approx(b, rel=1e-12, abs=1e-300)
    again = reprice(sc, plan)  # the guard's independent re-pricer for large fleets
    assert again.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
    assert again.names == list(ref.per_device)
    for name, ph in ref.per_device.items():
        for key in REPRICED:
            assert again.values[key][again.row[name]] == pytest.approx(getattr(ph, key), rel=1e-12)
    rebuilt = [DevicePlan(d.device, d.device_side, d.bandwidth_share, d.server_share,
                          d.batch_size, d.mode, d.selected) for d in devs]
    assert tuple(rebuilt) == devs  # the fast copies are what the validating constructor gives


def test_link_traces_replan_exactly(tmp_path):
    from splitopt.traces import FleetTrace, TraceReplanner, moved_devices, random_walk, steps

    sc, form, _ = _fleet(3, n=4, layers=6)
    band = sc.channel.bandwidth_up_hz
    trace = FleetTrace.of([steps("d0", [0.0, 10.0, 30.0], [2e6, 5e5, 4e6], [3e6, 1e6, 4e6]),
                           random_walk("d2", 1e6, duration_s=40, step_s=5, seed=1)])
    for path in (tmp_path / "t.json", tmp_path / "t.csv"):
        if path.suffix == ".json":
            trace.save(path)
        else:
            rows = [f"{t},{n},{u},{d}" for n, tr in trace.traces.items()
                    for t, u, d in zip(tr.time_s, tr.up_bps, tr.dn_bps)]
            path.write_text("time_s,device,up_bps,dn_bps\n" + "\n".join(rows) + "\n")
        assert FleetTrace.load(path) == trace
    rp = TraceReplanner(Planner.for_formulation(form, sc), trace)
    for t in (0.0, 5.0, 12.0, 31.0, 45.0):
        res = rp.at(t)
        now = rp.planner.scenario
        for name, tr in trace.traces.items():
            up, dn = tr.at(t)
            assert now.device(name).spectral_eff_up == pytest.approx(up / band)
        _same(res, form, now)
    assert rp.replans >= 3
    first = Planner.for_formulation(form, sc).solve().plan
    moved = moved_devices(first, res.plan)
    assert all(old != new for old, new in moved.values())
    assert set(moved) <= {d.device for d in res.plan.devices}
    with pytest.raises(InputError, match="time"):
        rp.at(1.0)


def test_bad_traces_are_named(tmp_path):
    from splitopt.traces import FleetTrace, steps

    with pytest.raises(InputError, match="increasing"):
        steps("d0", [0.0, 0.0], [1e6, 2e6])
    with pytest.raises(InputError, match="rates > 0"):
        steps("d0", [0.0], [-1.0])
    with pytest.raises(InputError, match="format"):
        FleetTrace.from_dict({"devices": {}})
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,device,up_bps,dn_bps\n0,d0,fast,1e6\n")
    with pytest.raises(InputError, match="row 2"):
        FleetTrace.load(bad)


@pytest.mark.parametrize("seed", range(3))
def test_builder_problem_with_batches_modes_and_pins(seed):
    """A hand-built Problem (batch choice, FL mode, a pin, memory rows) re-plans exactly."""
    from splitopt.model import Problem

    sc, _, rng = _fleet(40 + seed, n=4, layers=6)
    sc = sc.replace(server=sc.server.model_copy(update={"serving": "dedicated"}))
    node = sc.graph.names[2]

    def build(scen):
        p = Problem(scen, batch=[2, 8], modes=True)
        p.pin(node, "server", devices=["d1"])
        for d in scen.devices:
            if math.isfinite(d.memory_bytes):
                p.add(p.memory(d.name) <= d.memory_bytes, name=f"memory:{d.name}")
        p.minimize(p.round_latency() * 3.0)
        return p

    pl = Planner(build(sc))
    assert pl.reason == "" and pl.path == "bisection"
    pl.solve()
    for name, change in (("d1", {"flops": 3e12}), ("d2", {"spectral_eff_dn": 0.2}),
                         ("d0", {"memory_bytes": float(np.median(build(sc).options.mem[0]))})):
        res = pl.update(name, **change)
        ref = build(pl.scenario).solve()
        assert res.objective == pytest.approx(ref.objective, rel=1e-9)
        assert res.termination == "optimal", res.verification.summary()
        assert node not in res.plan.device("d1").device_side
    with pytest.raises(InputError, match="Pins differ"):
        pl.join(sc.device("d0").model_copy(update={"name": "new"}))


def _scalar_total(T, A, D, bmin, allowed):
    """sum_k min over allowed o of max(D / (T - A), beta_min): out of reach when T < A (or T = A
    with D > 0), 0 when D = 0 and T >= A; inf when a device has no option in reach."""
    total = 0.0
    for k in range(len(A)):
        best = math.inf
        for o in np.flatnonzero(allowed[k]):
            R = T - A[k, o]
            if R > 0 or (R == 0 and D[k, o] == 0):
                best = min(best, max(D[k, o] / R if R > 0 else 0.0, bmin[k, o]))
        total += best
    return total


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_grouped_probe_equals_the_per_device_sum(seed):
    """MinMaxRows.total (group rows, option masks folded in) at, below and above the A values,
    without numpy warnings (options not allowed sit at A = inf in the probe: T = inf is quiet)."""
    rng = np.random.default_rng(seed)
    A, D, bmin, allowed = _class_rows(rng, 7, 5, 4, 0.2 if seed % 2 else 0.0)
    rows = MinMaxRows(A, D, bmin, allowed)
    k = min(6, A.size)
    for T in [*A.ravel()[:k], *(A.ravel()[:k] + rng.uniform(0, 3, k)), -1.0, 0.0, 50.0, math.inf]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = rows.total(T)
        want = _scalar_total(T, A, D, bmin, allowed)
        assert got == want if math.isinf(want) else got == pytest.approx(want, rel=1e-9,
                                                                           abs=1e-15)


def test_planner_check_reprices_independently_of_its_option_table():
    """The fleet path's check prices the plan from the scenario (solving.reprice), so an option
    table that under-prices server compute is caught, not confirmed by its own arithmetic."""
    import dataclasses

    from splitopt.model import Problem

    rng = np.random.default_rng(3)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 6)
    good = Problem(sc, server_share=False)
    good.minimize(good.round_latency())
    res = Planner(good).solve()
    assert res.termination == "optimal" and res.verification.passed
    bad = Problem(sc, server_share=False)
    bad.options = dataclasses.replace(bad.options, a_srv=bad.options.a_srv * 0.5)
    bad.minimize(bad.round_latency())
    out = Planner(bad).solve()
    assert out.termination == "unverified" and not out.verification.passed
    assert "re-priced" in out.verification.summary()


def test_a_returned_plan_keeps_its_devices_after_a_leave():
    """A plan's predicted phases hold their own device names, not the Planner's live list."""
    rng = np.random.default_rng(4)
    sc = random_scenario(rng, random_dag(rng, 5, chain=True), 5)
    from splitopt.formulations.edgesplit import EdgeSplit

    pl = Planner.for_formulation(EdgeSplit(server_share=False), sc)
    first = pl.solve().plan
    names = list(first.predicted.per_device)
    rows = {n: first.predicted.per_device[n].round_s for n in names}
    pl.leave(names[0])
    assert list(first.predicted.per_device) == names
    assert {n: first.predicted.per_device[n].round_s for n in names} == rows
