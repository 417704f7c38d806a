"""Plans held as columns (splitopt.plan.DeviceRows) against plans of DevicePlan objects.

A solver's plan of 10^4 devices is held as arrays (names, each device's decision, shares); the
guard reads those arrays (``solving.verify_builder``, ``solving.reprice.plan_columns``). Pinned
here on random instances: the column plan is the same Plan as the tuple one (equality, JSON,
pickle, ``evaluate``), the guard gives the same verdict on both, the vectorised re-pricer equals the
scalar pricer ``evaluate()`` on it, and the guard refuses wrong column plans.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt.errors import InputError
from splitopt.model import Problem
from splitopt.plan import DevicePlan, DeviceRows, Plan, evaluate
from splitopt.pricing import DevicePlans
from splitopt.solving import reprice as rp
from splitopt.solving.verify_builder import verify_problem
from splitopt.testing import random_dag, random_scenario

REPRICED = ("round_s", "memory_bytes", "energy_j", "comm_bytes")


def _random_plan(seed: int):
    """A random Problem (modes, batches, selection, shared or dedicated) and a random plan of it
    twice: as columns and as a tuple of DevicePlans built one by one."""
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 6, chain=bool(seed % 2)), int(rng.integers(1, 7)),
                         serving="shared" if seed % 3 == 0 else "dedicated")
    p = Problem(sc, batch=[2, 8], modes=True, selection=bool(seed % 2))
    p.minimize(p.round_latency())
    n = p.n_devices
    option = np.array([rng.choice(np.flatnonzero(p.allowed[k])) for k in range(n)])
    beta = rng.dirichlet(np.ones(n)) * 0.999
    phi = rng.dirichlet(np.ones(n)) * 0.999 if p.server_share is not None else None
    rows = DevicePlans(p.table, p.options).build(sc.device_names(), option, beta, phi)
    one_by_one = tuple(DevicePlan(d.device, d.device_side, d.bandwidth_share, d.server_share,
                                  d.batch_size, d.mode, d.selected) for d in rows)
    return sc, p, option, Plan(rows, rounds=sc.training.rounds), Plan(one_by_one,
                                                                      rounds=sc.training.rounds)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_column_plan_is_the_same_plan(seed):
    sc, _, _, cols, objs = _random_plan(seed)
    assert isinstance(cols.devices, DeviceRows) and isinstance(objs.devices, tuple)
    assert cols == objs and cols.devices == objs.devices and objs.devices == cols.devices
    assert len(cols.devices) == len(objs.devices) and list(cols.devices) == list(objs.devices)
    assert cols.devices[-1] == objs.devices[-1] and cols.devices[1:] == objs.devices[1:]
    assert cols.to_dict(sc) == objs.to_dict(sc)
    assert Plan.from_dict(cols.to_dict()) == objs
    again = pickle.loads(pickle.dumps(cols))
    assert isinstance(again.devices, DeviceRows) and again == objs
    a, b = evaluate(sc, cols), evaluate(sc, objs)
    assert a.round_latency_s == b.round_latency_s and dict(a.per_device) == dict(b.per_device)
    with pytest.raises(ValueError):
        cols.devices.beta[0] = 0.5  # a frozen Plan's columns are read-only


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_guard_reads_columns_as_it_reads_device_plans(seed):
    """Same verdict, same re-priced objective; the re-pricer on columns equals evaluate()."""
    sc, p, option, cols, objs = _random_plan(seed)
    ref = evaluate(p.pricing_scenario(), objs)
    for plan in (cols, objs):
        fast = rp.reprice(p.pricing_scenario(), plan)
        assert fast.names == list(ref.per_device)
        assert fast.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
        for name, ph in ref.per_device.items():
            for key in REPRICED:
                assert fast.values[key][fast.row[name]] == pytest.approx(getattr(ph, key),
                                                                          rel=1e-12)
    obj = ref.total_delay_s
    v_cols = verify_problem(p, cols, objective=obj, bound=None, options=option)
    v_objs = verify_problem(p, objs, objective=obj, bound=None, options=option)
    assert v_cols.to_dict() == v_objs.to_dict()


def _solved_fleet(monkeypatch, n: int = 40):
    """A solved dedicated-server fleet large enough for the guard's vectorised re-pricer."""
    rng = np.random.default_rng(0)  # (an optimum with two decisions)
    sc = random_scenario(rng, random_dag(rng, 8, chain=True), n, classes=3, serving="dedicated")
    monkeypatch.setattr(rp, "SCALAR_UP_TO", 2)
    p = Problem(sc, server_share=False)
    p.minimize(p.round_latency())
    res = p.solve()
    assert res.termination == "optimal" and res.verification.passed
    assert isinstance(res.plan.devices, DeviceRows)
    assert any(c.startswith("re-pricing") for c in res.verification.to_dict()["checks"])
    # the predicted phases, made on first read from the Problem's table, are evaluate()'s
    ref = evaluate(p.pricing_scenario(), res.plan)
    assert res.plan.predicted.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
    for name, ph in ref.per_device.items():
        assert res.plan.predicted.per_device[name].to_dict() == pytest.approx(ph.to_dict(),
                                                                              rel=1e-12)
    return p, res


def test_guard_refuses_wrong_column_plans(monkeypatch):
    p, res = _solved_fleet(monkeypatch)
    rows = res.plan.devices

    def verdict(new_rows, **kw):
        plan = dataclasses.replace(res.plan, devices=new_rows, **kw)
        return verify_problem(p, plan, objective=res.objective, bound=res.bound,
                              options=res.options, gap=1e-6)

    assert verdict(rows).passed
    # shares that sum above 1
    wide = DeviceRows(rows.names, rows.decisions, rows.which, np.minimum(rows.beta * 1.5, 1.0),
                      rows.phi)
    assert not verdict(wide).passed
    assert len(rows.decisions) == 2
    # the devices on each other's decision (their sides, the same shares)
    other = DeviceRows(rows.names, rows.decisions, 1 - rows.which, rows.beta, rows.phi)
    assert not verdict(other).passed
    # a decision on another candidate cut than the solver's
    g = p.scenario.graph
    sides = {d.device_side for d in rows.decisions}
    prefix = next(frozenset(g.names[:i]) for i in range(1, len(g.names))
                  if frozenset(g.names[:i]) not in sides)
    moved = dataclasses.replace(rows.decisions[0], device_side=prefix)
    assert not verdict(DeviceRows(rows.names, [moved, rows.decisions[1]], rows.which, rows.beta,
                                  rows.phi)).passed
    # a side that is no split (a node without its input)
    cut = dataclasses.replace(rows.decisions[0], device_side=frozenset(g.names[1:2]))
    assert not verdict(DeviceRows(rows.names, [cut, rows.decisions[1]], rows.which, rows.beta,
                                  rows.phi)).passed
    # names in another order than the problem's devices: read one by one, still checked
    order = np.arange(len(rows))[::-1]
    flipped = DeviceRows([rows.names[k] for k in order], rows.decisions, rows.which[order],
                         rows.beta[order], rows.phi[order])
    assert verdict(flipped).passed
    # a stale prediction
    stale = dataclasses.replace(res.plan.predicted, round_latency_s=res.plan.predicted
                                .round_latency_s * 0.9)
    assert not verdict(rows, predicted=stale).passed


def test_guard_catches_a_wrong_table_on_column_plans(monkeypatch):
    """An option table that under-prices the uplink: the columns' re-pricing disagrees."""
    p, _ = _solved_fleet(monkeypatch)
    q = Problem(p.scenario, server_share=False)
    q.options = dataclasses.replace(q.options, up=q.options.up * 0.5)
    q.minimize(q.round_latency())
    bad = q.solve()
    assert isinstance(bad.plan.devices, DeviceRows)
    assert bad.termination == "unverified" and "re-priced" in bad.verification.summary()


def test_device_rows_refuse_bad_columns():
    d = DevicePlan("t", frozenset({"x"}), 1.0)
    with pytest.raises(InputError):
        DeviceRows(["a", "b"], [d], [0], [0.5, 0.5])  # one decision index short
    with pytest.raises(InputError):
        DeviceRows(["a"], [d], [1], [0.5])  # no decision 1
    with pytest.raises(InputError):
        DeviceRows(["a"], [d], [0], [0.0])  # a share of 0
    with pytest.raises(InputError):
        DeviceRows(["a"], [d], [0], [np.nan])
    with pytest.raises(InputError):
        DeviceRows([""], [d], [0], [0.5])
    with pytest.raises(InputError):
        DeviceRows(["a"], ["not a DevicePlan"], [0], [0.5])
