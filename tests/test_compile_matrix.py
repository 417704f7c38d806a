"""The compiled matrix, built block by block in place, is the documented MILP.

`compile()` writes every row block once into the stacked CSR arrays (``program.vstack_csr`` with
``Rows``, ``csr_from_parts``) and adds the initial tangents on the Model (``steps.Tangents``)
instead of appending them to a finished Program. These tests pin that the result is the same
program: against a reference built here by hand from the option table (docs/builder.md), against
the Program-level ``OuterApproximation`` on varied problems, and the helpers against scipy.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from splitopt import Problem
from splitopt.compile.program import Rows, csr_from_parts, vstack_csr
from splitopt.compile.steps import generic_chain
from splitopt.compile.tangents import (
    MAX_TANGENT_COEF,
    OuterApproximation,
    capped_ratios,
    tangent_rows,
)
from splitopt.testing import random_dag, random_scenario

SHARES = np.array([1.0, 0.25, 0.05, 0.01])  # OuterApproximation's default tangent points


def _canonical(A: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix(A).sorted_indices()


def _same(A: sp.spmatrix, B: sp.spmatrix) -> bool:
    a, b = _canonical(A), _canonical(B)
    return a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(
        a.indices, b.indices) and np.array_equal(a.data, b.data)


def _reference(p: Problem) -> dict[str, np.ndarray]:
    """The MILP of ``min round_latency()`` (parallel rounds), written out from the option table.

    Columns: z[k,o], beta_k, (phi_k), t, then s and u per 1/share term (z-major, beta before phi);
    rows: share budgets, one-hot, t >= T_k, s <= z, sum_o s <= share, then 4 tangents per cone.
    """
    n, o, opt = p.n_devices, p.n_options, p.options
    shared = p.server_share is not None
    coef = [opt.d] + ([opt.a_srv] if shared else [])  # (N, O) per resource
    lin = opt.a_dev + (0.0 if shared else opt.a_srv)
    nz = n * o
    t = nz + n * (2 if shared else 1)
    keys = [(z, r) for z in range(nz) for r in range(len(coef))
            if coef[r].ravel()[z] != 0 and p.allowed.ravel()[z]]
    nk = len(keys)
    s0, u0 = t + 1, t + 1 + nk
    ncol = u0 + nk
    rows: list[tuple[dict[int, float], float, float]] = []
    for r in range(len(coef)):  # budgets
        rows.append(({nz + r * n + k: 1.0 for k in range(n)}, -math.inf, 1.0))
    for k in range(n):  # one-hot
        rows.append(({k * o + j: 1.0 for j in range(o)}, 1.0, 1.0))
    for k in range(n):  # sum_o z (lin + c / scale * u) - t <= 0, u scaled by its coefficient
        row = {k * o + j: lin[k, j] for j in range(o)}
        row.update({u0 + i: 1.0 for i, (z, _) in enumerate(keys) if z // o == k})
        row[t] = -1.0
        rows.append((row, -math.inf, 0.0))
    for i, (z, _) in enumerate(keys):  # s <= z
        rows.append(({s0 + i: 1.0, z: -1.0}, -math.inf, 0.0))
    for r in range(len(coef)):  # sum_o s[k,o] <= share_k
        for k in range(n):
            mine = [i for i, (z, rr) in enumerate(keys) if rr == r and z // o == k]
            if mine:
                rows.append(({**{s0 + i: 1.0 for i in mine}, nz + r * n + k: -1.0},
                             -math.inf, 0.0))
    for i, (z, r) in enumerate(keys):  # u - 2 K q z + K q^2 s >= 0, K the cone's scale
        scale = abs(coef[r].ravel()[z])
        for share in SHARES:
            q = min(1.0 / share, math.sqrt(MAX_TANGENT_COEF / scale))
            rows.append(({u0 + i: 1.0, z: -2 * scale * q, s0 + i: scale * q * q}, 0.0, math.inf))
    A = np.zeros((len(rows), ncol))
    for i, (row, _, _) in enumerate(rows):
        for j, v in row.items():
            A[i, j] += v
    col_ub = np.full(ncol, math.inf)
    col_ub[:nz] = p.allowed.ravel()
    col_ub[nz:t] = 1.0
    col_ub[s0:u0] = 1.0
    col_lb = np.zeros(ncol)
    col_lb[t] = -math.inf
    c = np.zeros(ncol)
    c[t] = 1.0
    return {"A": A, "row_lb": np.array([r[1] for r in rows]),
            "row_ub": np.array([r[2] for r in rows]), "col_lb": col_lb, "col_ub": col_ub,
            "c": c, "integrality": np.arange(ncol) < nz}


@pytest.mark.parametrize("seed", range(4))
def test_min_latency_program_is_the_hand_built_milp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sc = random_scenario(rng, random_dag(rng, 4, chain=True), 3)
    p = Problem(sc, server_share=bool(seed % 2), batch=[8, 16] if seed >= 2 else None)
    p.minimize(p.round_latency())
    prog, want = p.compile(), _reference(p)
    assert prog.A.shape == want["A"].shape
    assert np.allclose(prog.A.toarray(), want["A"], rtol=1e-12, atol=0.0)
    for field in ("row_lb", "row_ub", "col_lb", "col_ub", "c"):
        assert np.array_equal(getattr(prog, field), want[field]), field
    assert np.array_equal(prog.integrality, want["integrality"])
    assert prog.offset == 0.0 and prog.is_linear
    assert len(prog.row_names) == prog.n_rows and prog.row_names[-1].startswith("oa")


def _problems() -> list[Problem]:
    """Objectives, constraints, shares, modes, selection, a fixed share, batches."""
    out = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sc = random_scenario(rng, random_dag(rng, 5, chain=True), 4)
        p = Problem(sc, batch=[8, 16], server_share=bool(seed % 2), modes=seed % 3 == 0,
                    selection=seed == 4)
        if seed == 2:
            p.bandwidth.fix(1, 0.3)  # folded into linear terms: a row with fewer u columns
        for d in sc.devices[:2]:
            p.add(p.memory(d.name) <= 5e7, name=f"mem:{d.name}")
        if seed % 2:
            p.add(p.round_latency() <= 1e6, name="deadline")
            p.minimize(p.total_energy())
        else:
            p.minimize(p.round_latency() + 0.1 * p.total_energy())
        out.append(p)
    return out


@pytest.mark.parametrize("index", range(6))
def test_compile_equals_outer_approximation_of_the_conic_program(index: int) -> None:
    p = _problems()[index]
    conic, _ = generic_chain().apply(p)
    want, _ = OuterApproximation().apply(conic)
    got = p.compile()
    assert _same(got.A, want.A)
    for field in ("row_lb", "row_ub", "col_lb", "col_ub", "c", "integrality", "cones"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    assert got.offset == want.offset and got.cone_scale is None and got.cone_share is None
    assert list(got.row_names) == list(want.row_names)
    assert list(got.col_names) == list(want.col_names)


def test_csr_from_parts_equals_a_coo_build() -> None:
    rng = np.random.default_rng(3)
    n, ncol = 6, 9
    irregular = (np.sort(rng.integers(0, n, 10)), rng.integers(0, ncol, 10), rng.random(10))
    parts_irregular = [irregular, (2, rng.integers(0, ncol, 2 * n), 1.5)]
    parts_regular = [(3, rng.integers(0, ncol, 3 * n), rng.random(3 * n)),
                     (np.arange(n), rng.integers(0, ncol, n), -1.0)]
    for parts in (parts_irregular, parts_regular):
        rows, cols, vals = [], [], []
        for r, c, v in parts:
            r = np.repeat(np.arange(n), r) if isinstance(r, int) else r
            rows.append(r)
            cols.append(c)
            vals.append(np.broadcast_to(v, np.shape(c)))
        want = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, ncol)).toarray()  # duplicates summed, as toarray does
        assert np.array_equal(csr_from_parts(n, ncol, parts).toarray(), want)


def test_rows_block_stacks_like_its_csr() -> None:
    rng = np.random.default_rng(1)
    cones = rng.integers(0, 12, (5, 1, 3))
    vals = (1.0, rng.random((5, 4)), rng.random((5, 4)))
    block = Rows(cones, vals, (5, 4), 12)
    dense = np.zeros((20, 12))
    for i in range(5):
        for j in range(4):
            for slot, v in enumerate(vals):
                dense[4 * i + j, cones[i, 0, slot]] += v if np.ndim(v) == 0 else v[i, j]
    other = sp.random(3, 12, 0.3, format="csr", random_state=rng)
    stacked = vstack_csr([other, block, other], 12)
    assert np.allclose(stacked.toarray(), np.vstack([other.toarray(), dense, other.toarray()]))
    assert stacked.indices.dtype == np.int32


def test_capped_tangents_equal_the_row_by_row_construction() -> None:
    # cones with scales above 1e6 have k r^2 capped at MAX_TANGENT_COEF for small shares: the
    # broadcast fill sets those after; the rows must equal tangent_rows with explicit ratios
    p = _problems()[1]
    conic, _ = generic_chain().apply(p)
    k = len(conic.cones)
    scales = conic.scales.copy()
    scales[::3] = np.geomspace(1e5, 1e12, len(scales[::3]))
    conic = replace(conic, cone_scale=scales)
    lin, _ = OuterApproximation().apply(conic)
    ns = len(SHARES)
    cones = np.repeat(conic.cones, ns, axis=0)
    kk = np.repeat(scales, ns)
    want = tangent_rows(cones, capped_ratios(np.tile(1.0 / SHARES, k), kk), conic.n_cols, kk)
    assert (capped_ratios(np.tile(1.0 / SHARES, k), kk) < np.tile(1.0 / SHARES, k)).any()
    assert _same(lin.A[conic.n_rows:], want)
    assert np.all(lin.row_lb[conic.n_rows:] == 0) and np.all(np.isinf(lin.row_ub[conic.n_rows:]))
