"""Clarabel (interior point) for small continuous programs with rotated cones.

The generic path's share subproblem: with every option fixed, what is left of a Problem is a
convex program over the shares (and user columns) with one rotated cone ``u * den >= rhs`` per
chosen option and resource. An interior-point solve gives it to ~1e-10 in tens of milliseconds at
1000 devices, where LP rounds of tangents converge slowly; and where the objective ignores a share
(a deadline that does not bind), it returns an interior point rather than an LP vertex that puts a
share at 0 (priced as an infinite time). Clarabel ships with cvxpy (the ``cvxpy`` extra); callers
fall back to tangent LPs without it (:func:`available`).
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import scipy.sparse as sp

from splitopt.backends.base import ERROR, INFEASIBLE, OPTIMAL, TIME_LIMIT, answer
from splitopt.backends.results import Result


def available() -> bool:
    """True when the clarabel package is installed."""
    return importlib.util.find_spec("clarabel") is not None


def solve_rotated(c: np.ndarray, A: sp.csr_matrix, row_lb: np.ndarray, row_ub: np.ndarray,
                  col_lb: np.ndarray, col_ub: np.ndarray, u: np.ndarray, den: np.ndarray,
                  rhs: np.ndarray, *, offset: float = 0.0, time_limit: float | None = None,
                  tol: float = 1e-10, den_guess: np.ndarray | None = None) -> Result:
    """Minimise ``c @ x + offset`` over rows, column bounds and rotated cones.

    Rows ``row_lb <= A x <= row_ub``; cones ``x[u[i]] * x[den[i]] >= rhs[i]`` (rhs >= 0, both
    columns >= 0), each the second-order cone ``|(u - den, 2 sqrt(rhs))| <= u + den``.
    ``den_guess`` (about the solution's den, e.g. a first solve's) rescales each cone's columns
    to u' = u g / rhs and den' = den / g, both near 1 at the solution: at 1000 devices, shares of
    1e-3 and server terms of 1e-3 s left cones 90% short at the solver's "solved" without it.
    """
    import clarabel

    t0 = time.perf_counter()
    n = len(c)
    scale = np.ones(n)  # x = scale * x'
    if den_guess is not None and len(u):
        g = np.maximum(np.asarray(den_guess, dtype=float), 1e-12)
        scale[den], scale[u] = g, np.maximum(rhs, 1e-300) / g
        c, A = c * scale, (A @ sp.diags(scale)).tocsr()
        col_lb, col_ub = col_lb / scale, col_ub / scale
        rhs = np.ones(len(u))
    eye = sp.identity(n, format="csr")
    blocks, bs, cones = [], [], []
    # equalities (ZeroCone), then  A x <= ub  and  -A x <= -lb  (NonnegativeCone)
    for M, lo, hi in ((A, row_lb, row_ub), (eye, col_lb, col_ub)):
        eq = np.isfinite(lo) & (lo == hi)
        if eq.any():
            blocks.append(M[eq])
            bs.append(hi[eq])
            cones.append(clarabel.ZeroConeT(int(eq.sum())))
    for M, lo, hi in ((A, row_lb, row_ub), (eye, col_lb, col_ub)):
        eq = np.isfinite(lo) & (lo == hi)
        up, down = np.isfinite(hi) & ~eq, np.isfinite(lo) & ~eq
        for sel, sign, b in ((up, 1.0, hi), (down, -1.0, lo)):
            if sel.any():
                blocks.append(sign * M[sel])
                bs.append(sign * b[sel])
                cones.append(clarabel.NonnegativeConeT(int(sel.sum())))
    m = len(u)
    if m:  # rows -(u + den), -(u - den), 0 with b = (0, 0, 2 sqrt(rhs)): s = b - A x in SOC
        r = np.arange(3 * m).reshape(m, 3)
        rows = np.concatenate([r[:, 0], r[:, 0], r[:, 1], r[:, 1]])
        cols = np.concatenate([u, den, u, den])
        # each cone's rows divided by sqrt(rhs) (the same cone): its constant is 2, whatever the
        # term's units (1e-4 s of server work beside 10 J of transmission)
        w = 1.0 / np.sqrt(np.maximum(rhs, 1e-300))
        vals = np.concatenate([-w, -w, -w, w])
        blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(3 * m, n)))
        b = np.zeros((m, 3))
        b[:, 2] = np.where(rhs > 0, 2.0, 0.0)
        bs.append(b.ravel())
        cones += [clarabel.SecondOrderConeT(3)] * m
    Amat = sp.vstack(blocks, format="csc") if blocks else sp.csc_matrix((0, n))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = tol
    settings.tol_feas = settings.tol_ktratio = tol
    settings.max_iter = 200
    if time_limit is not None:
        settings.time_limit = max(float(time_limit), 1e-3)
    solver = clarabel.DefaultSolver(sp.csc_matrix((n, n)), np.asarray(c, dtype=float), Amat,
                                    np.concatenate(bs) if bs else np.zeros(0), cones, settings)
    sol = solver.solve()
    status = str(sol.status)
    x = np.asarray(sol.x, dtype=float)
    if status in ("Solved", "AlmostSolved"):
        term = OPTIMAL
    elif "Infeasible" in status:
        return answer(INFEASIBLE, None, None, None, time.perf_counter() - t0, message=status,
                      backend="clarabel")
    elif "Time" in status:
        term = TIME_LIMIT
    else:
        term = ERROR
    obj = float(c @ x + offset) if x.size == n else None
    x = x * scale if x.size == n else x
    return answer(term, x if x.size == n else None, obj, None, time.perf_counter() - t0,
                  message=status, backend="clarabel")
