"""DVFS levels in the public builder (``Problem(scenario, dvfs=...)``): options priced exactly as
energy-delay prices them, exact answers equal brute force, plans record their levels and the guard
re-prices a plan from that record (a plan claiming another level, or none, fails)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations import energy_delay as ed

from splitopt import InputError, Problem
from splitopt.plan import Plan, evaluate
from splitopt.solving.pareto import value_at
from splitopt.solving.verify_builder import verify_problem
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario

LEVELS = st.lists(st.sampled_from([0.4, 0.5, 0.75, 0.9, 1.0]), min_size=1, max_size=3,
                  unique=True)


def _scenario(seed: int, n: int = 3, layers: int = 3, schedule: str = "parallel"):
    rng = np.random.default_rng(seed)
    return random_scenario(rng, random_dag(rng, layers, chain=True), n,
                           training=Training(batch_size=8, schedule=schedule),
                           serving="dedicated")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), levels=LEVELS)
def test_options_are_priced_as_energy_delay_prices_them(seed, levels):
    sc = _scenario(seed)
    p, q = Problem(sc, dvfs=levels), ed.instance(sc, levels=levels)
    o, c = p.options, len(p.table)
    assert p.n_options == len(q.options) and p.levels == tuple(sorted(levels))
    for j, (cut, x) in enumerate(q.options):
        b = p.levels.index(x) * c + cut  # builder: level outermost, then the cut
        assert o.cut[b] == cut and o.level[b] == x
        for ours, theirs in ((o.a_dev[:, b] + o.a_srv[:, b], q.A[:, j]), (o.d[:, b], q.D[:, j]),
                             (o.e_comp[:, b], q.ec[:, j]), (o.e_tx[:, b], q.et[:, j])):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), levels=LEVELS, slack=st.floats(0.0, 1.0))
def test_least_delay_and_least_energy_within_a_delay_equal_brute_force(seed, levels, slack):
    sc = _scenario(seed)
    q = ed.instance(sc, levels=levels)
    fast = Problem(sc, dvfs=levels)
    fast.minimize(fast.round_latency())
    t = fast.solve()
    assert t.termination == "optimal" and t.verification.passed
    assert t.objective == pytest.approx(ed.min_delay(q), rel=1e-6)
    eps = ed.min_delay(q) * (1 + 1e-6 + slack)
    p = Problem(sc, dvfs=levels)
    p.add(p.round_latency() <= eps)
    p.minimize(p.total_energy())
    r = p.solve()
    assert r.termination == "optimal" and r.verification.passed
    assert r.objective == pytest.approx(ed.brute_force(q, epsilon=eps), rel=1e-6)
    assert r.plan.meta["dvfs"] == {sc.devices[k].name: float(p.options.level[j])
                                   for k, j in enumerate(r.options)}


@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_the_guard_reprices_a_plan_from_its_recorded_levels(tmp_path, schedule):
    sc = _scenario(3, schedule=schedule)
    p = Problem(sc, dvfs=(0.5, 0.8, 1.0))
    p.cut.fix(None, 1)  # a layer on every device: its level changes its compute
    p.add(p.round_latency() <= 1.3 * _least_latency(p))
    p.minimize(p.total_energy())
    r = p.solve()
    assert r.verification.passed
    plan = r.plan
    assert all(ph.device_compute_s > 0 for ph in plan.predicted.per_device.values())
    # evaluate()'s full-clock phases at the recorded levels give what the option table gave
    again = p.dvfs.reprice(plan, evaluate(p.pricing_scenario(), plan))
    assert again.round_latency_s == pytest.approx(plan.predicted.round_latency_s, rel=1e-12)
    for name, ph in plan.predicted.per_device.items():
        for key in ("device_compute_s", "iteration_s", "round_s", "energy_j"):
            assert getattr(again.per_device[name], key) == pytest.approx(getattr(ph, key),
                                                                         rel=1e-12)

    def check(pl: Plan):
        return verify_problem(p, pl, objective=r.objective, bound=r.bound, values=r.values)

    other = {k: 1.0 if v < 1.0 else 0.5 for k, v in plan.meta["dvfs"].items()}
    assert not check(replace(plan, meta={**plan.meta, "dvfs": other})).passed
    unrecorded = replace(plan, meta={k: v for k, v in plan.meta.items() if k != "dvfs"})
    failed = [c.name for c in check(unrecorded).checks if not c.passed]
    assert "plan uses allowed options" in failed
    plan.save(tmp_path / "plan.json", sc)  # a saved plan keeps its levels and is re-priced
    assert check(Plan.load(tmp_path / "plan.json")).passed


def _least_latency(p: Problem) -> float:
    p.minimize(p.round_latency())
    return float(p.solve().objective)


def test_the_level_variable_fixes_and_bounds():
    sc = _scenario(7)
    p = Problem(sc, dvfs=(0.5, 0.75, 1.0))
    p.level.fix(0, 1.0)
    p.level.fix(sc.devices[1].name, 0.75)
    p.minimize(p.total_energy())
    r = p.solve()
    names = [d.name for d in sc.devices]
    assert r.plan.meta["dvfs"] == {names[0]: 1.0, names[1]: 0.75, names[2]: 0.5}
    assert value_at(p, p.level[1], r) == pytest.approx(0.75)
    p.level.bound(None, 0.6, 1.0)
    assert p.solve().plan.meta["dvfs"][names[2]] == 0.75  # the least energy left at >= 0.6
    plain = Problem(sc)  # no dvfs: the full clock, nothing recorded
    plain.minimize(plain.total_energy())
    res = plain.solve()
    assert plain.dvfs is None and "dvfs" not in res.plan.meta
    assert value_at(plain, plain.level[0], res) == 1.0


def test_bad_dvfs_input_is_refused_with_the_field():
    sc = _scenario(0)
    for bad in (1.5, "fast", [], [0.0], [1.2], [True], {0.5: 1}):
        with pytest.raises(InputError, match="dvfs"):
            Problem(sc, dvfs=bad)
    with pytest.raises(InputError, match="dvfs"):
        Problem(sc, dvfs=(0.5, 1.0), recompute=True)
    p = Problem(sc, dvfs=(0.5, 1.0))
    with pytest.raises(InputError, match="level.fix"):
        p.level.fix(0, 0.3)
    with pytest.raises(InputError, match="level.bound"):
        p.level.bound(0, 0.6, 0.9)


@pytest.mark.parametrize("seed", [1, 3])
def test_levels_with_selection_modes_batches_and_a_shared_server_are_verified(seed):
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 4,
                         training=Training(batch_size=8, labels="device"))
    p = Problem(sc, dvfs=(0.5, 1.0), selection=True, modes=True, batch=[8, 16])
    p.add(p.selected.total() >= 2)
    p.minimize(p.total_energy() + p.round_latency())
    r = p.solve()
    assert r.termination == "optimal" and r.verification.passed
    chosen = {d.device for d in r.plan.devices if d.selected}
    assert set(r.plan.meta["dvfs"]) == chosen and len(chosen) >= 2  # selected devices only
