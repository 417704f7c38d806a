"""Energy-delay: each epsilon-constraint point equals brute force; the front is non-dominated;
weighted sums reach only supported points; water-filling is optimal. The registered formulation is
the public builder with DVFS levels: its pareto_front equals the module's own loop and brute
force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splitopt.formulations import energy_delay as ed
from splitopt.formulations.registry import energy_delay_front

from splitopt import Problem, formulation
from splitopt.errors import InfeasibleError, InputError
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _problem(seed: int, n: int = 3, layers: int = 2, levels=(0.5, 1.0)):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, layers, chain=True)
    labels = "device" if seed % 2 else "server"
    sc = random_scenario(rng, g, n, training=Training(batch_size=16, labels=labels))
    return ed.instance(sc, levels=levels)


@pytest.mark.parametrize("seed", range(5))
def test_epsilon_points_equal_brute_force(seed):
    p = _problem(seed)
    t_min = ed.min_delay(p)
    e_min = ed.min_energy(p, math.inf)
    for f in (1.0 + 1e-7, 0.4):
        eps = t_min * (1 + 1e-7) if f > 1 else t_min + f * (e_min.delay_s - t_min) + 1e-12
        pt = ed.min_energy(p, eps)
        assert pt.delay_s <= eps * (1 + 1e-9)
        assert pt.energy_j == pytest.approx(ed.brute_force(p, epsilon=eps), rel=2e-7)
        assert pt.bound <= pt.energy_j * (1 + 1e-12)
        assert pt.status == "optimal" and pt.gap <= 1e-7 and pt.verification.passed
    with pytest.raises(InfeasibleError, match="least is"):
        ed.min_energy(p, t_min * 0.99)


@pytest.mark.parametrize("seed", range(2))
def test_front_nondominated_and_each_point_optimal(seed):
    p = _problem(10 + seed)
    front = ed.pareto_front(p, 5)
    for a in front:
        for b in front:
            if a is not b:
                assert not (a.delay_s <= b.delay_s and a.energy_j <= b.energy_j)
        assert a.energy_j == pytest.approx(ed.brute_force(p, epsilon=a.epsilon), rel=2e-7)


@pytest.mark.parametrize("seed", range(2))
def test_weighted_sum_equals_brute_force_and_lies_on_the_front(seed):
    p = _problem(20 + seed, n=2)
    ref = (ed.min_delay(p), ed.min_energy(p, math.inf).energy_j)
    for w in (0.3, 0.8):
        pt = ed.weighted_sum(p, w, ref)
        val = w * pt.delay_s / ref[0] + (1 - w) * pt.energy_j / ref[1]
        assert pt.objective == pytest.approx(val, rel=1e-9) and pt.gap <= 1e-7
        assert val == pytest.approx(ed.brute_force(p, w=w, ref=ref), rel=1e-6)
        on_front = ed.min_energy(p, pt.delay_s * (1 + 1e-9))
        assert on_front.energy_j == pytest.approx(pt.energy_j, rel=1e-5)


def test_unsupported_points_are_above_the_hull():
    mk = lambda t, e: ed.point((), (), t, e, e)  # noqa: E731
    front = [mk(1, 10), mk(2, 9), mk(3, 4), mk(4, 3.9)]
    assert [q.delay_s for q in ed.unsupported(front)] == [2]


@pytest.mark.parametrize("seed", range(20))
def test_water_fill_is_optimal(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    et = rng.uniform(0, 2, n) * (rng.random(n) > 0.2)
    lo = rng.uniform(0, 1.0 / n, n) * (rng.random(n) > 0.3)
    beta = ed.water_fill(et, lo)
    assert beta.sum() <= 1 + 1e-12 and np.all(beta >= lo - 1e-15)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.sum(np.where(et > 0, et / beta, 0))
    for _ in range(200):  # random feasible perturbations never do better
        trial = lo + rng.dirichlet(np.ones(n)) * (1 - lo.sum())
        assert np.sum(np.where(et > 0, et / trial, 0)) >= val * (1 - 1e-9)


def test_bad_input():
    p = _problem(0)
    with pytest.raises(InputError, match="levels"):
        ed.instance(random_scenario(np.random.default_rng(0),
                                   random_dag(np.random.default_rng(0), 2, chain=True), 2),
                   levels=(1.5,))
    with pytest.raises(InputError, match="epsilon"):
        ed.min_energy(p, -1)
    with pytest.raises(InputError, match="weight"):
        ed.weighted_sum(p, 2, (1, 1))
    with pytest.raises(InputError, match="beta"):
        ed.evaluate(p, [0, 0, 0], [0.9, 0.9, 0.9])


# ---------------------------------------------------------------- the registered (builder) side
LEVELS = st.lists(st.sampled_from([0.4, 0.5, 0.75, 1.0]), min_size=1, max_size=3, unique=True)


def _builder_scenario(seed: int, n: int = 3):
    rng = np.random.default_rng(seed)
    return random_scenario(rng, random_dag(rng, 3, chain=True), n,
                           training=Training(batch_size=8), serving="dedicated")


def _builder_min_energy(sc, levels, eps: float) -> float:
    p = Problem(sc, dvfs=levels)
    p.add(p.round_latency() <= eps)
    p.minimize(p.total_energy())
    res = p.solve()
    assert res.termination == "optimal" and res.verification.passed
    return float(res.objective)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), levels=LEVELS)
def test_builder_front_equals_the_modules_own_loop_and_brute_force(seed, levels):
    sc = _builder_scenario(seed)
    q = ed.instance(sc, levels=levels)
    front = energy_delay_front(sc, 4, levels=levels)
    assert front[0].extras["y_value"] == pytest.approx(ed.min_delay(q), rel=1e-6)
    assert front[-1].extras["x_value"] == pytest.approx(ed.min_energy(q, math.inf).energy_j,
                                                         rel=1e-6)
    for r in front:  # each builder point: the module's exact point and brute force
        assert r.termination == "optimal" and r.verification.passed
        eps = r.extras["y_value"] * (1 + 1e-9)
        assert r.extras["x_value"] == pytest.approx(ed.min_energy(q, eps).energy_j, rel=1e-6)
        assert r.extras["x_value"] == pytest.approx(ed.brute_force(q, epsilon=eps), rel=1e-6)
    for pt in ed.pareto_front(q, 3):  # each point of the module's own loop, on the builder
        assert pt.energy_j == pytest.approx(
            _builder_min_energy(sc, levels, pt.delay_s * (1 + 1e-9)), rel=1e-6)


def test_registered_solve_is_the_builder_with_levels_and_carries_the_front():
    sc, levels = _builder_scenario(4), (0.5, 1.0)
    f = formulation.get("energy-delay")
    assert not f.builder_lacks and isinstance(f.build(sc), Problem)
    res = f.solve(sc, levels=levels, n_points=3)
    q = ed.instance(sc, levels=levels)
    exact = ed.min_energy(q, 1.25 * ed.min_delay(q))
    assert res.termination == "optimal" and res.verification.passed
    assert res.objective == pytest.approx(exact.energy_j, rel=1e-6)
    assert set(res.plan.meta["dvfs"].values()) <= set(levels)
    assert res.extras["levels"] == levels and len(res.extras["front"]) >= 2
    ys = [r.extras["y_value"] for r in res.extras["front"]]
    assert ys == sorted(ys) and ys[0] == pytest.approx(ed.min_delay(q), rel=1e-6)
