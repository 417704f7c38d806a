"""The partition problem as a MILP, solved by HiGHS through highspy (for comparison).

    min  sum_v (a_v - c_v) x_v + sum_u t_u y_u + sum_k p_k z_k + sum_v c_v
    s.t. x_w - x_u <= 0          for every edge u -> w      (closure)
         x_u - x_w - y_u <= 0    for every edge u -> w      (u crosses if a consumer is outside)
         x_i - x_j - z_k <= 0    for every pair term k = (i, j, p_k), 0 <= z <= 1
         x binary (inputs fixed to 1, the output to 0 with labels on the server), 0 <= y <= 1

``y_u`` is continuous: with ``t_u >= 0`` it settles at ``max_w (x_u - x_w)``, so each tensor is paid
once however many consumers it has. The whole sparse matrix is handed to ``Highs.passModel`` at
once (docs/benchmarks.md: the fastest route into HiGHS), through the project's one HiGHS driver
(:class:`splitopt.backends.highs.HighsBackend`) with this problem's own tolerances; the chosen set
is re-priced in floats.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from splitopt.backends.results import Result
from splitopt.compile.program import Program
from splitopt.errors import SolverError
from splitopt.partitioning.problem import CutProblem, certified, solution


def build_lp(prob: CutProblem) -> tuple[Program, float, float]:
    """The MILP of ``prob`` (costs divided by ``scale``), ``scale`` and the constant term."""
    from splitopt.partitioning.chain import solve as chain_solve
    from splitopt.partitioning.chain import valid_prefixes

    n, ar = prob.n, prob.arrays
    force_in, force_out = prob.forced()
    has_consumer = np.zeros(n, bool)
    has_consumer[ar.src] = True
    ycol = np.full(n, -1, np.int64)
    ycol[has_consumer] = n + np.arange(int(has_consumer.sum()))
    ncol = n + int(has_consumer.sum())
    # HiGHS's tolerances are absolute: measure costs in units of a known cut's cost (the best
    # topological prefix, an upper bound U on the optimum) so the optimum is O(1); and cap every
    # cost at 2U: a set paying a capped term costs more than U either way, so the optimum and its
    # value are unchanged while huge coefficients no longer swamp the tolerances
    upper = prob.price(force_in)  # server-only: always feasible
    if valid_prefixes(prob).size:
        upper = min(upper, chain_solve(prob).objective)
    cap = 2.0 * upper if upper > 0 else np.inf
    dev, srv, tensor, pair = (np.minimum(x, cap) for x in (prob.dev, prob.srv, prob.tensor,
                                                           prob.pair_cost))
    cost = np.concatenate([dev - srv, tensor[has_consumer], pair])
    scale = upper or 1.0
    m = ar.n_edges
    cols = np.concatenate([np.stack([ar.dst, ar.src], 1).ravel(),
                           np.stack([ar.src, ar.dst, ycol[ar.src]], 1).ravel()])
    vals = np.concatenate([np.tile([1.0, -1.0], m), np.tile([1.0, -1.0, -1.0], m)])
    k = pair.size  # one column z_k per pair term, after the y columns
    cols = np.concatenate([cols, np.stack([prob.pair_src, prob.pair_dst,
                                           ncol + np.arange(k)], 1).ravel()])
    vals = np.concatenate([vals, np.tile([1.0, -1.0, -1.0], k)])
    ncol += k
    rows = 2 * m + k
    A = sp.csr_matrix((vals, cols, np.r_[0, np.cumsum(np.r_[np.full(m, 2), np.full(m + k, 3)])]),
                      shape=(rows, ncol))
    prog = Program(cost / scale, A, np.full(rows, -np.inf), np.zeros(rows),
                   np.where(np.r_[force_in, np.zeros(ncol - n, bool)], 1.0, 0.0),
                   np.where(np.r_[force_out, np.zeros(ncol - n, bool)], 0.0, 1.0),
                   np.r_[np.ones(n, bool), np.zeros(ncol - n, bool)], [], [])
    return prog, scale, float(srv.sum())


def solve(prob: CutProblem, time_limit: float = 600.0) -> Result:
    """Solve the MILP with HiGHS (gap 0, one thread) and re-price the rounded set in floats."""
    from splitopt.backends.highs import HighsBackend

    prog, scale, const = build_lp(prob)
    # the project's one HiGHS driver (backends.highs), with this problem's own tuning
    res = HighsBackend(options=_HIGHS_OPTIONS).solve_program(prog, time_limit=float(time_limit),
                                                             mip_gap=0.0)
    status = res.message or res.termination
    if res.x is None:
        raise SolverError(f"HiGHS returned no solution (status {status!r})")
    x = np.asarray(res.x[: prob.n])
    mask = x > 0.5
    if not prob.is_feasible(mask):
        raise SolverError(f"HiGHS returned an infeasible set (status {status!r})")
    lower = const + scale * (res.bound if res.bound is not None else -np.inf)
    # HiGHS proves its bound to its own tolerances: accept the certificate at 1e-6 relative (the
    # value itself is re-priced exactly in floats)
    sol = certified(prob, mask, lower, {"highs_status": status}, rel_tol=1e-6)
    if res.termination != "optimal":
        return solution(sol.x, sol.objective, lower, res.termination, sol.extras)
    return sol


_HIGHS_OPTIONS = {
    # the tightest tolerances HiGHS accepts: the default 1e-7 on reduced costs let it stop at
    # sets up to ~5e-8 (relative) worse on wide-range instances
    "primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
    "mip_feasibility_tolerance": 1e-10,
    # HiGHS's presolve spent 19 s of 19.5 s on a 963-node ResNet-like DAG (no branching needed:
    # the LP relaxation was integral); without it 0.5 s
    "presolve": "off"}
