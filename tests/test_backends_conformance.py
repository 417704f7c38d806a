"""One conformance suite that every installed backend passes (parametrised over the registry)."""

import numpy as np
import pytest
import scipy.sparse as sp

from splitopt import InputError, SolverError
from splitopt.backends import REGISTRY, available, get_backend
from splitopt.compile.program import Program
from splitopt.model import Problem
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario

BACKENDS = available()


def _prog(c, A, lb, ub, clb, cub, integ, cones=None):
    A = sp.csr_matrix(np.asarray(A, dtype=float))
    n, m = A.shape[1], A.shape[0]
    return Program(np.asarray(c, float), A, np.asarray(lb, float), np.asarray(ub, float),
                   np.asarray(clb, float), np.asarray(cub, float), np.asarray(integ, bool),
                   [f"x{j}" for j in range(n)], [f"r{i}" for i in range(m)],
                   cones=np.zeros((0, 3), int) if cones is None else np.asarray(cones))


# (program, known optimum)
KNOWN = {
    "lp": (_prog([1, 1], [[1, 1]], [1.5], [np.inf], [0, 0], [10, 10], [0, 0]), 1.5),
    "milp": (_prog([-1, -1], [[1, 2]], [-np.inf], [3.5], [0, 0], [3, 3], [1, 1]), -3.0),
    "knapsack": (_prog([-5, -4, -3], [[2, 3, 1], [4, 1, 2]], [-np.inf, -np.inf], [5, 11],
                       [0, 0, 0], [1, 1, 1], [1, 1, 1]), -9.0),
    "equality": (_prog([2, 3, 0], [[1, 1, 1]], [4], [4], [0, 1, 0], [np.inf, np.inf, 2],
                       [1, 0, 0]), 5.0),
}


def test_registry_order_and_capabilities():
    assert list(REGISTRY)[0] == "highs"
    for name, cls in REGISTRY.items():
        assert cls.name == name and {"lp", "mip"} <= cls.capabilities and cls.purpose
    assert "highs" in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(KNOWN))
def test_known_optima(backend, case):
    prog, opt = KNOWN[case]
    r = get_backend(backend).solve_program(prog)
    assert r.termination == "optimal"
    assert r.objective == pytest.approx(opt, abs=1e-7)
    assert prog.max_violation(r.x) <= 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_infeasible_program(backend):
    prog = _prog([1], [[1]], [2], [np.inf], [0], [1], [1])
    assert get_backend(backend).solve_program(prog).termination == "infeasible"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if "socp" in REGISTRY[b].capabilities])
def test_continuous_cone(backend):
    # min u s.t. u >= z^2 / s, z = 1, s <= 0.5  ->  u = 2
    prog = _prog([1, 0, 0], [[0, 1, 0]], [1], [1], [0, 0, 0], [np.inf, np.inf, 0.5], [0, 0, 0],
                 cones=[[0, 1, 2]])
    r = get_backend(backend).solve_program(prog)
    assert r.termination == "optimal" and r.objective == pytest.approx(2.0, rel=1e-6)


def _problem(seed, server=False, schedule="parallel"):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, 3, chain=True)
    sc = random_scenario(rng, g, 2, training=Training(batch_size=8, schedule=schedule))
    p = Problem(sc, server_share=server)
    p.minimize(p.round_latency())
    return p


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["minmax", "server", "sequential"])
def test_same_optimum_on_every_backend(backend, kind):
    p = _problem(7, server=kind == "server", schedule="sequential" if kind == "sequential"
                 else "parallel")
    exact = p.solve()
    r = p.solve(backend=backend, path="generic", gap=1e-6)
    assert r.termination == "optimal" and r.backend == backend
    assert r.objective == pytest.approx(exact.objective, rel=1e-5)
    assert r.bound <= exact.objective * (1 + 1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_paths_on_every_backend(backend):
    p = _problem(8, server=True)
    assert p.solve(backend=backend).objective == pytest.approx(p.solve().objective, rel=1e-9)


def test_cvxpy_solves_the_convex_form_directly():
    if "cvxpy" not in BACKENDS:
        pytest.skip("cvxpy not installed")
    p = _problem(9)
    p.cut.fix(None, 1)  # no integer choice left that matters: the cones go to Clarabel
    prog = p.compile(linear=False)
    prog = prog.__class__(**{**prog.__dict__, "integrality": np.zeros(prog.n_cols, bool)})
    r = get_backend("cvxpy").solve_program(prog)
    assert r.termination == "optimal"
    assert r.objective == pytest.approx(p.solve().objective, rel=1e-5)


def test_unknown_and_missing_backends():
    with pytest.raises(InputError, match="backend"):
        get_backend("nope")

    class Missing(REGISTRY["highs"]):  # type: ignore[misc, valid-type]
        requires = ("no_such_module_xyz",)

    assert not Missing.available()
    REGISTRY["missing-test"] = Missing
    try:
        with pytest.raises(SolverError, match="no_such_module_xyz"):
            get_backend("missing-test")
    finally:
        del REGISTRY["missing-test"]


def test_watchdog_returns_on_time_and_reraises():
    import threading
    import time

    from splitopt.backends._watch import run_with_watchdog

    gate = threading.Event()
    t0 = time.perf_counter()
    done, value = run_with_watchdog(lambda: gate.wait(30), 0.05)
    assert not done and value is None and time.perf_counter() - t0 < 10
    gate.set()
    assert run_with_watchdog(lambda: 7, 1.0) == (True, 7)
    with pytest.raises(ZeroDivisionError):
        run_with_watchdog(lambda: 1 / 0, 1.0)


@pytest.mark.parametrize("backend", ["highs"])  # cvxpy/pyomo: the watchdog test above
def test_time_limit_on_a_hard_milp(backend):
    rng = np.random.default_rng(11)
    sc = random_scenario(rng, random_dag(rng, 29, chain=True), 60)
    p = Problem(sc)
    p.minimize(p.round_latency())
    prog = p.compile()
    r = get_backend(backend).solve_program(prog, time_limit=0.2)
    assert r.termination in ("time_limit", "optimal")  # optimal only if it is that quick
    if r.termination == "time_limit" and r.x is not None:
        assert prog.max_violation(r.x) <= 1e-6


def test_highs_runs_after_another_highs_user_started_its_scheduler_with_other_threads():
    """HiGHS keeps one thread scheduler per process: after a HiGHS user with another ``threads``
    (cvxpy, pyomo, raw highspy) every later solve stopped with "error" (``splitopt bench --quick``:
    the extensions family's MILPs all failed after the builder family's cvxpy rows)."""
    from splitopt.backends.highs import HighsBackend, load_model

    rng = np.random.default_rng(1)
    p = Problem(random_scenario(rng, random_dag(rng, 5, chain=True), 4), server_share=False)
    p.minimize(p.round_latency())
    prog = p.compile()
    other = load_model(prog, threads=2)  # another HiGHS user, its own thread count
    other.run()
    for limit in (None, 30.0):  # in this thread, and in the watched thread of a timed solve
        res = HighsBackend(threads=1).solve_program(prog, time_limit=limit)
        assert res.termination == "optimal", res.message


def test_a_solve_without_a_plan_is_infeasible_only_when_proven():
    from splitopt.errors import InfeasibleError, no_plan

    assert isinstance(no_plan("no mapping fits", "infeasible", "Synergy"), InfeasibleError)
    assert isinstance(no_plan("no mapping fits", "unbounded", "Synergy"), InfeasibleError)
    for term in ("error", "time_limit"):
        err = no_plan("no mapping fits", term, "Synergy")
        assert isinstance(err, SolverError) and not isinstance(err, InfeasibleError)
        assert "Synergy" in str(err) and "fits" not in str(err)
