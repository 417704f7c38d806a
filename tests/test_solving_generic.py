"""The generic path's parts: array compile of fleet-wide maxes, lazy names, the share solve."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from splitopt import Problem
from splitopt.backends import get_backend
from splitopt.compile.program import Names, vstack_csr
from splitopt.compile.steps import generic_chain
from splitopt.model.expr import maximum
from splitopt.testing import random_dag, random_scenario


def _seed5() -> Problem:
    """Issue 15's 3-device instance whose gap never closed (500 rounds, incumbent 6.0095)."""
    rng = np.random.default_rng(5)
    sc = random_scenario(rng, random_dag(rng, 5, chain=True), 3)
    p = Problem(sc, batch=[8, 16], modes=True)
    p.add(p.round_latency() <= 1e6, name="deadline")
    p.minimize(p.total_energy())
    return p


def test_seed5_closes_at_the_brute_force_optimum() -> None:
    # the deadline does not bind and energy has no server term: for fixed options the least
    # energy is sum e_comp + (sum_k sqrt e_tx)^2 (Cauchy-Schwarz), so brute force over options
    p = _seed5()
    o = p.options
    best = min(sum(o.e_comp[k, c] for k, c in enumerate(cs))
               + sum(np.sqrt(o.e_tx[k, c]) for k, c in enumerate(cs)) ** 2
               for cs in itertools.product(*(np.flatnonzero(p.allowed[k]) for k in range(3))))
    r = p.solve(path="generic", time_limit=60)
    assert r.termination == "optimal" and r.verification.passed
    assert r.objective == pytest.approx(best, rel=2e-6)
    assert r.bound <= best * (1 + 1e-9)
    # the server shares were the trap: an LP vertex gave some device 0 (an infinite time)
    assert min(d.server_share for d in r.plan.devices) > 0


def test_fleet_max_as_arrays_compiles_like_the_per_term_max() -> None:
    rng = np.random.default_rng(3)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 5)
    optima = []
    for arrays in (True, False):
        p = Problem(sc, modes=True)
        lat = p.round_latency() if arrays else maximum([p.round_time(k) for k in range(5)])
        p.add(lat <= 50.0, name="deadline")
        p.minimize(p.total_energy() + (p.round_latency() if arrays else lat))
        prog = p.compile()
        r = get_backend("highs").solve_program(prog, mip_gap=1e-9)
        optima.append((prog.n_rows, prog.n_cols, prog.A.nnz, r.objective))
    (rows_a, cols_a, nnz_a, obj_a), (rows_t, cols_t, nnz_t, obj_t) = optima
    assert (rows_a, cols_a) == (rows_t, cols_t) and nnz_a == nnz_t
    assert obj_a == pytest.approx(obj_t, rel=1e-9)


def test_names_are_formatted_on_first_read_and_equal_the_eager_ones() -> None:
    made = []
    lazy = Names((2, lambda: made.append(1) or ["a", "b"])) + ["c"] + Names.numbered("s", 2, 5)
    assert len(lazy) == 5 and not made
    assert list(lazy) == ["a", "b", "c", "s5", "s6"] and lazy[3] == "s5" and made == [1]
    assert ["x"] + Names.numbered("r", 1) == ["x", "r0"]
    p = _seed5()
    prog = p.compile()
    assert len(prog.col_names) == prog.n_cols and len(prog.row_names) == prog.n_rows
    assert prog.col_names[0] == "z[d0,0]" and prog.row_names[-1].startswith("oa")


def test_vstack_csr_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    blocks = [sp.random(4, 7, 0.4, format="csr", random_state=rng),
              sp.random(3, 5, 0.5, format="csr", random_state=rng)]
    want = sp.vstack([sp.csr_matrix(b.toarray(), shape=(b.shape[0], 7)) for b in
                      [blocks[0], sp.hstack([blocks[1], sp.csr_matrix((3, 2))])]])
    assert np.array_equal(vstack_csr(blocks, 7).toarray(), want.toarray())


def test_fixed_shares_are_the_closed_form_shares() -> None:
    pytest.importorskip("clarabel")
    from splitopt.solving.generic import exact_value, fixed_shares

    p = _seed5()
    chain = generic_chain()
    prog, data = chain.apply(p)
    n, o = p.n_devices, p.n_options
    pick = np.array([1, 1, 0])
    x = np.zeros(prog.n_cols)
    x[np.arange(n) * o + pick] = 1.0
    exact = lambda y: exact_value(p, chain.invert(y, data))  # noqa: E731
    y = fixed_shares(prog, get_backend("highs"), x, exact, None)
    e_tx = p.options.e_tx[np.arange(n), pick]
    want = p.options.e_comp[np.arange(n), pick].sum() + np.sqrt(e_tx).sum() ** 2
    assert exact(y) == pytest.approx(want, rel=1e-8)
    beta = y[p.bandwidth.offset:p.bandwidth.offset + n]
    assert beta == pytest.approx(np.sqrt(e_tx) / np.sqrt(e_tx).sum(), rel=1e-5)


def test_a_start_keeps_user_integer_columns_within_their_bounds() -> None:
    # the starts carry options only: a user integer column fixed at 1 came into the share solve
    # as 0 (the guard then said unverified); it is rounded into its bounds now
    rng = np.random.default_rng(7)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 3)
    p = Problem(sc, modes=True)
    y = p.add_variable("y", lb=1, ub=1, integer=True)
    p.add(p.round_latency() <= 1e6, name="deadline")
    p.minimize(p.total_energy() + 0.5 * y.expr)
    r = p.solve(path="generic", time_limit=60)
    assert r.termination == "optimal" and r.verification.passed
    assert r.values["y"] == pytest.approx(1.0)
