"""Every exact path against brute force over cuts x an exact (or fine-grid) share allocation."""

import itertools

import numpy as np
import pytest
from scipy.optimize import brentq

from splitopt.model import Problem
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _scenario(seed, n_dev=3, n_layers=4, **train):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, n_layers, chain=True)
    tr = Training(batch_size=int(rng.integers(1, 33)), local_iters=int(rng.integers(1, 4)), **train)
    return random_scenario(rng, g, n_dev, training=tr, serving="dedicated")  # phi = 1 models


def _combos(p):
    choices = [np.flatnonzero(p.allowed[k]) for k in range(p.n_devices)]
    return itertools.product(*choices)


def _minmax_fixed(a, d):
    """Least max_k a_k + d_k / beta_k, sum beta = 1 (root of sum d/(T-a) = 1, via brentq)."""
    if np.all(d == 0):
        return a.max()
    f = lambda T: np.sum(d / (T - a)) - 1.0  # noqa: E731
    lo = a.max() * (1 + 1e-15) + 1e-300
    hi = a.max() + d.sum() + 1.0
    while f(hi) > 0:
        hi *= 2
    return brentq(f, lo + 1e-15 * abs(lo), hi, xtol=1e-15, rtol=1e-14, maxiter=500)


def brute_minmax(p, extra_ok=lambda combo: True):
    o = p.options
    best = np.inf
    for combo in _combos(p):
        if not extra_ok(combo):
            continue
        k = np.arange(p.n_devices)
        best = min(best, _minmax_fixed(o.a_dev[k, combo] + o.a_srv[k, combo], o.d[k, combo]))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_bisection_equals_brute_force(seed):
    sc = _scenario(seed, n_dev=2 + seed % 3)
    p = Problem(sc)
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "bisection" and r.termination == "optimal"
    assert r.objective == pytest.approx(brute_minmax(p), rel=1e-9)
    assert r.bound <= r.objective * (1 + 1e-12) and r.gap < 1e-9
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_bisection_against_fine_grid(seed):
    """Two devices: cuts x a 20001-point bandwidth grid never beats the exact optimum."""
    sc = _scenario(100 + seed, n_dev=2)
    p = Problem(sc)
    p.minimize(p.round_latency())
    exact = p.solve().objective
    o = p.options
    b = np.linspace(1e-6, 1 - 1e-6, 20001)
    grid = min(np.min(np.maximum(o.a_dev[0, i] + o.a_srv[0, i] + o.d[0, i] / b,
                                 o.a_dev[1, j] + o.a_srv[1, j] + o.d[1, j] / (1 - b)))
               for i, j in _combos(p))
    assert exact <= grid * (1 + 1e-12)
    assert grid <= exact * (1 + 1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_generic_path_equals_fast_path(seed):
    sc = _scenario(200 + seed, n_dev=3)
    p = Problem(sc)
    p.minimize(p.round_latency())
    fast, slow = p.solve(), p.solve(path="generic", gap=1e-6)
    assert slow.path == "outer-approximation"
    assert slow.objective == pytest.approx(fast.objective, rel=5e-6)
    assert slow.bound <= fast.objective * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_memory_constraints_presolved_exactly(seed):
    sc = _scenario(300 + seed, n_dev=3)
    p = Problem(sc)
    o = p.options
    caps = [float(np.quantile(o.mem[k], 0.6)) for k in range(3)]
    for k in range(3):
        p.add(p.memory(k) <= caps[k], name=f"mem{k}")
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "bisection"
    ok = lambda c: all(o.mem[k, c[k]] <= caps[k] for k in range(3))  # noqa: E731
    assert r.objective == pytest.approx(brute_minmax(p, ok), rel=1e-9)
    for k, d in enumerate(r.plan.devices):
        assert r.plan.predicted.per_device[d.device].memory_bytes <= caps[k] * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_coupled_memory_budget_equals_brute_force(seed):
    sc = _scenario(400 + seed, n_dev=3)
    p = Problem(sc)
    o = p.options
    budget = float(np.sum(np.median(o.mem, axis=1)))
    p.add(sum(p.memory(k) for k in range(3)) <= budget, name="shared-memory")
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "coupled"
    ok = lambda c: sum(o.mem[k, c[k]] for k in range(3)) <= budget  # noqa: E731
    assert r.objective == pytest.approx(brute_minmax(p, ok), rel=1e-7)
    g = p.solve(path="generic", gap=1e-6)
    assert g.objective == pytest.approx(r.objective, rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_tied_cut_enumeration(seed):
    sc = _scenario(500 + seed, n_dev=3)
    p = Problem(sc)
    p.tie_cuts()
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "bisection"
    assert len({d.device_side for d in r.plan.devices}) == 1
    same = lambda c: len(set(c)) == 1  # noqa: E731
    assert r.objective == pytest.approx(brute_minmax(p, same), rel=1e-9)


def _server_fixed(a, s, d):
    """Least max_k a + s/phi + d/beta over both budgets, by cvxpy (Clarabel): an independent
    oracle."""
    import cvxpy as cp

    n = len(a)
    b, f, T = cp.Variable(n), cp.Variable(n), cp.Variable()
    cons = [cp.sum(b) <= 1, cp.sum(f) <= 1]
    cons += [a[k] + s[k] * cp.inv_pos(f[k]) + d[k] * cp.inv_pos(b[k]) <= T for k in range(n)]
    prob = cp.Problem(cp.Minimize(T), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-10, tol_feas=1e-10)
    return prob.value


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("seed", range(3))
def test_server_share_equals_brute_force(seed):
    sc = _scenario(600 + seed, n_dev=2, n_layers=3)
    p = Problem(sc, server_share=True)
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "server-share" and r.termination == "optimal"
    o, k = p.options, np.arange(2)
    brute = min(_server_fixed(o.a_dev[k, c], o.a_srv[k, c], o.d[k, c]) for c in _combos(p))
    assert r.objective == pytest.approx(brute, rel=1e-6)
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)
    # a 400 x 400 grid over (beta_0, phi_0) never beats it
    b = np.linspace(1e-4, 1 - 1e-4, 400)[:, None]
    f = np.linspace(1e-4, 1 - 1e-4, 400)[None, :]
    grid = min(np.min(np.maximum(o.a_dev[0, i] + o.a_srv[0, i] / f + o.d[0, i] / b,
                                 o.a_dev[1, j] + o.a_srv[1, j] / (1 - f) + o.d[1, j] / (1 - b)))
               for i, j in _combos(p))
    assert r.objective <= grid * (1 + 1e-9)
    g = p.solve(path="generic", gap=1e-6)
    assert g.objective == pytest.approx(r.objective, rel=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_sequential_equals_brute_force(seed):
    sc = _scenario(700 + seed, n_dev=3, schedule="sequential")
    p = Problem(sc)
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "separable"
    o, k = p.options, np.arange(3)
    brute = min(np.sum(o.a_dev[k, c] + o.a_srv[k, c]) + np.sum(np.sqrt(o.d[k, c])) ** 2
                for c in _combos(p))
    assert r.objective == pytest.approx(brute, rel=1e-7)
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)
    g = p.solve(path="generic", gap=1e-6)
    assert g.objective == pytest.approx(r.objective, rel=1e-5)


def test_sequential_two_devices_fine_grid():
    sc = _scenario(800, n_dev=2, schedule="sequential")
    p = Problem(sc)
    p.minimize(p.round_latency())
    exact = p.solve().objective
    o = p.options
    b = np.linspace(1e-6, 1 - 1e-6, 20001)
    grid = min(np.min(o.a_dev[0, i] + o.a_srv[0, i] + o.d[0, i] / b + o.a_dev[1, j] + o.a_srv[1, j]
                      + o.d[1, j] / (1 - b)) for i, j in _combos(p))
    assert exact <= grid * (1 + 1e-12) and grid <= exact * (1 + 1e-4)


def _hsfl_fixed(a, d, fl):
    """Least max(max_{FL} T_k, sum_{split} T_k) over sum beta <= 1 (Clarabel): the oracle."""
    import cvxpy as cp

    n = len(a)
    b, t = cp.Variable(n), cp.Variable()
    terms = [a[k] + d[k] * cp.inv_pos(b[k]) for k in range(n)]
    cons = [cp.sum(b) <= 1] + [terms[k] <= t for k in range(n) if fl[k]]
    split = [terms[k] for k in range(n) if not fl[k]]
    if split:
        cons.append(sum(split) <= t)
    prob = cp.Problem(cp.Minimize(t), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-10, tol_feas=1e-10)
    return prob.value


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("seed", range(2))
def test_hsfl_round_generic_equals_brute_force(seed):
    """FL-mode devices in parallel, split devices in turn: max(FL max, split sum)."""
    sc = _scenario(900 + seed, n_dev=3, n_layers=1, schedule="sequential", labels="device")
    p = Problem(sc, modes=True)
    p.minimize(p.round_latency())
    r = p.solve()
    assert r.path == "outer-approximation" and r.termination == "optimal"
    o, k = p.options, np.arange(3)
    brute = min(_hsfl_fixed(o.a_dev[k, c] + o.a_srv[k, c], o.d[k, c], o.is_fl[list(c)])
                for c in _combos(p))
    assert r.objective == pytest.approx(brute, rel=1e-5)
    assert r.bound <= brute * (1 + 1e-6)
    assert r.plan.predicted.round_latency_s == pytest.approx(r.objective, rel=1e-9)
