"""The partition problem as a MILP, solved by HiGHS through highspy (for comparison).

    min  sum_v (a_v - c_v) x_v + sum_u t_u y_u + sum_v c_v
    s.t. x_w - x_u <= 0          for every edge u -> w      (closure)
         x_u - x_w - y_u <= 0    for every edge u -> w      (u crosses if a consumer is outside)
         x binary (inputs fixed to 1, the output to 0 with labels on the server), 0 <= y <= 1

``y_u`` is continuous: with ``t_u >= 0`` it settles at ``max_w (x_u - x_w)``, so each tensor is paid
once however many consumers it has. The whole sparse matrix is handed to ``Highs.passModel`` at
once (MEASURED.md: the fastest route into HiGHS). This module drives highspy directly rather than
through splitopt's builder, which was written in parallel; the chosen set is re-priced in floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitopt.errors import SolverError
from splitopt.partitioning.problem import CutProblem, Solution, certified


def build_lp(prob: CutProblem) -> tuple[Any, float, float]:
    """The HighsLp of ``prob`` (costs divided by ``scale``), ``scale`` and the constant term."""
    import highspy

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
    dev, srv, tensor = (np.minimum(x, cap) for x in (prob.dev, prob.srv, prob.tensor))
    cost = np.concatenate([dev - srv, tensor[has_consumer]])
    scale = upper or 1.0
    m = ar.n_edges
    cols = np.concatenate([np.stack([ar.dst, ar.src], 1).ravel(),
                           np.stack([ar.src, ar.dst, ycol[ar.src]], 1).ravel()])
    vals = np.concatenate([np.tile([1.0, -1.0], m), np.tile([1.0, -1.0, -1.0], m)])
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = ncol, 2 * m
    lp.col_cost_ = cost / scale
    lp.col_lower_ = np.where(np.r_[force_in, np.zeros(ncol - n, bool)], 1.0, 0.0)
    lp.col_upper_ = np.where(np.r_[force_out, np.zeros(ncol - n, bool)], 0.0, 1.0)
    lp.row_lower_ = np.full(2 * m, -np.inf)
    lp.row_upper_ = np.zeros(2 * m)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.r_[0, np.cumsum(np.r_[np.full(m, 2), np.full(m, 3)])]
    lp.a_matrix_.index_ = cols.astype(np.int32)
    lp.a_matrix_.value_ = vals
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = ncol, 2 * m
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n + [highspy.HighsVarType.kContinuous] * (
        ncol - n)
    return lp, scale, float(srv.sum())


def solve(prob: CutProblem, time_limit: float = 600.0) -> Solution:
    """Solve the MILP with HiGHS (gap 0, one thread) and re-price the rounded set in floats."""
    from splitopt.backends.highs import new_highs

    lp, scale, const = build_lp(prob)
    h = new_highs()  # HiGHS's one-time banner must not reach stdout (--json, tables)
    for key, val in (("output_flag", False), ("mip_rel_gap", 0.0), ("mip_abs_gap", 0.0),
                     ("threads", 1), ("time_limit", float(time_limit)),
                     # the tightest tolerances HiGHS accepts: the default 1e-7 on reduced costs
                     # let it stop at sets up to ~5e-8 (relative) worse on wide-range instances
                     ("primal_feasibility_tolerance", 1e-10), ("dual_feasibility_tolerance", 1e-10),
                     ("mip_feasibility_tolerance", 1e-10),
                     # HiGHS's presolve spent 19 s of 19.5 s on a 963-node ResNet-like DAG (no
                     # branching needed: the LP relaxation was integral); without it 0.5 s
                     ("presolve", "off")):
        h.setOptionValue(key, val)
    h.passModel(lp)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    x = np.asarray(h.getSolution().col_value[: prob.n])
    if x.size != prob.n:
        raise SolverError(f"HiGHS returned no solution (status {status!r})")
    mask = x > 0.5
    if not prob.is_feasible(mask):
        raise SolverError(f"HiGHS returned an infeasible set (status {status!r})")
    info = h.getInfo()
    lower = const + scale * float(info.mip_dual_bound)
    # HiGHS proves its bound to its own tolerances: accept the certificate at 1e-6 relative (the
    # value itself is re-priced exactly in floats)
    sol = certified(prob, mask, lower, {"highs_status": status, "mip_gap": info.mip_gap,
                                        "nodes": int(info.mip_node_count)}, rel_tol=1e-6)
    if status != "Optimal":
        return Solution(sol.mask, sol.objective, lower, status.lower().replace(" ", "_"), sol.info)
    return sol
