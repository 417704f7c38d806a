"""The generic path's share-budget dual (solving/lagrange*.py) against independent exact solves.

Random small instances of the structure it takes (total energy subject to a round deadline, FL
mode and server shares drawn, per-device energy caps): the plan it labels optimal equals SCIP's
optimum (the property suite's independent MINLP, no tangents) and the outer-approximation route's
(the same Problem with the dual switched off); its bound and the dual function at random prices
never exceed that optimum.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import InfeasibleError, Problem
from splitopt.backends import get_backend
from splitopt.model.expr import total
from splitopt.solving.generic import solve_generic
from splitopt.solving.lagrange import evaluate, extract
from splitopt.testing import random_dag, random_scenario

RTOL = 2e-6  # the paths' gap is 1e-6; SCIP's 1e-10


def energy_problem(seed: int, n: int, layers: int, modes: bool, server_share: bool,
                   slack: float, cap: float | None = None) -> Problem:
    """Min total energy s.t. round latency <= (1 + slack) x its least value (and, with ``cap``,
    each device's energy <= cap x the least it can use: a least bandwidth share per option)."""
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, layers, chain=True), n)
    q = Problem(sc, modes=modes, server_share=server_share)
    q.minimize(q.round_latency())
    least = q.solve().objective
    p = Problem(sc, modes=modes, server_share=server_share)
    p.add(p.round_latency() <= (1 + slack) * least, name="deadline")
    if cap is not None:  # per device, cap x its least energy (any option, the whole band)
        o = p.options
        floor = np.where(p.allowed, o.e_comp + o.e_tx, np.inf).min(axis=1)
        for k in range(n):
            p.add(p.energy(k) <= cap * floor[k], name=f"cap{k}")
    p.minimize(p.total_energy())
    return p


instances = st.builds(
    energy_problem, seed=st.integers(0, 10**6), n=st.integers(2, 3), layers=st.integers(1, 3),
    modes=st.booleans(), server_share=st.booleans(), slack=st.floats(0.02, 2.0),
    cap=st.one_of(st.none(), st.floats(1.05, 4.0)))


def _oracles(p: Problem) -> tuple[str, float | None]:
    """SCIP's status and optimum; the outer-approximation route must agree with it."""
    from test_solving_property import scip_solve  # skips when pyscipopt is missing

    status, want, _ = scip_solve(p)
    if status == "optimal":
        oa = solve_generic(p, get_backend("highs"), deadline=time.perf_counter() + 60,
                           gap=1e-6, log=False, lagrangian=False)
        assert oa.termination == "optimal"
        assert oa.objective == pytest.approx(want, rel=RTOL, abs=RTOL)
    return status, want


def _check(p: Problem) -> None:
    status, want = _oracles(p)
    try:
        r = p.solve(path="generic")
    except InfeasibleError:
        assert status == "infeasible"
        return
    assert status == "optimal", (status, r.objective)
    assert r.path == "lagrangian"
    assert r.termination == "optimal" and r.verification.passed, r.verification.summary()
    assert r.objective == pytest.approx(want, rel=RTOL, abs=RTOL)
    assert r.bound <= want + RTOL * max(1.0, abs(want))
    # the dual function is a bound at any prices, not only at its maximiser
    t = extract(p)
    rng = np.random.default_rng(0)
    for lam, mu in 10.0 ** rng.uniform(-6, 6, size=(6, 2)):
        assert evaluate(t, lam, mu).value <= want + RTOL * max(1.0, abs(want))


@settings(max_examples=12, deadline=None)
@given(instances)
def test_the_dual_route_equals_scip_and_outer_approximation(p: Problem) -> None:
    _check(p)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(instances)
def test_the_dual_route_equals_scip_slow(p: Problem) -> None:
    _check(p)


def test_branch_and_bound_closes_a_duality_gap() -> None:
    """Seed 27, 3 devices, 1% slack: the dual's own maximum is below the optimum (its argmin plan
    is not the best), so the branch and bound has nodes to close; it ends at SCIP's optimum."""
    p = energy_problem(27, 3, 3, True, True, 0.01)
    status, want = _oracles(p)
    r = p.solve(path="generic")
    assert r.path == "lagrangian" and r.termination == "optimal" and r.verification.passed
    assert r.objective == pytest.approx(want, rel=RTOL)
    assert r.iterations > 1


def test_only_its_structure_goes_to_the_dual() -> None:
    p = energy_problem(3, 3, 2, True, True, 0.5)
    assert extract(p) is not None
    coupled = energy_problem(3, 3, 2, True, True, 0.5)
    # a row over every device's options (never binding): the devices no longer separate
    coupled.add(total(coupled.cut.is_(k, 0) for k in range(3)) <= 3, name="coupled")
    assert extract(coupled) is None
    assert coupled.solve(path="generic").path == "outer-approximation"
    minmax = energy_problem(3, 3, 2, True, True, 0.5)
    minmax.minimize(minmax.round_latency())
    assert extract(minmax) is None


def test_a_time_limit_returns_the_plan_and_a_proven_bound() -> None:
    p = energy_problem(7, 300, 8, True, True, 0.5)
    r = p.solve(path="generic", time_limit=0.3)
    assert r.termination in ("time_limit", "optimal")
    assert r.plan is not None and r.verification.passed
    assert r.bound is not None and r.bound <= r.objective
