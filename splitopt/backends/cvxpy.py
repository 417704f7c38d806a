"""cvxpy: MILPs through its HiGHS interface, cones through Clarabel or SCIP when installed.

The cones go to Clarabel (continuous) or SCIP (mixed integer). Useful to cross-check HiGHS and to
solve the convex forms directly.

Only constant data is passed (no Parameters): an (N, L) Parameter took 48 s to compile here
(cvxpy issues #1332, #886).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from splitopt.backends._watch import run_with_watchdog
from splitopt.backends.base import (
    ERROR,
    INFEASIBLE,
    OPTIMAL,
    TIME_LIMIT,
    UNBOUNDED,
    Backend,
    answer,
)
from splitopt.backends.results import Result
from splitopt.compile.program import Program


def _installed() -> set[str]:
    import cvxpy as cp

    return set(cp.installed_solvers())


class CvxpyBackend(Backend):
    """cvxpy: HiGHS for LP/MILP, Clarabel for continuous cones, SCIP for mixed-integer cones."""

    name: ClassVar[str] = "cvxpy"
    requires: ClassVar[tuple[str, ...]] = ("cvxpy",)
    capabilities: ClassVar[frozenset[str]] = frozenset({"lp", "mip", "socp", "misocp",
                                                        "time_limit"})
    purpose: ClassVar[str] = "cross-check; convex forms (Clarabel); MISOCP through SCIP (slow)"

    def __init__(self, misocp: bool = False):
        self.misocp = misocp

    def supports(self, prog: Program) -> bool:
        """Mixed-integer cones only when asked (``misocp=True``) and SCIP is installed.

        SCIP took 19 s on 10 devices here, so by default they go through outer approximation on
        HiGHS.
        """
        if not prog.is_linear and prog.is_mip:
            return self.misocp and "SCIP" in _installed()
        return super().supports(prog)

    def solve_program(self, prog: Program, *, time_limit: float | None = None,
                      warm_start: np.ndarray | None = None, log: bool = False,
                      mip_gap: float = 1e-9) -> Result:
        """Build the cvxpy problem from the arrays and solve it."""
        import cvxpy as cp

        from splitopt.backends.highs import silence_banner

        silence_banner()  # cvxpy's HiGHS interface would print it on stdout
        t0 = time.perf_counter()
        problem, x = _build(prog)
        solver, opts = _solver(prog, time_limit, mip_gap)
        done, _ = run_with_watchdog(lambda: problem.solve(solver=solver, verbose=log, **opts),
                                    time_limit)
        secs = time.perf_counter() - t0
        if not done:
            return answer(TIME_LIMIT, None, None, None, secs, message="wall clock")
        st = problem.status
        xv = None if x.value is None else np.asarray(x.value, dtype=float)
        obj = None if xv is None else prog.objective(xv)
        if st in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return answer(OPTIMAL, xv, obj, obj, secs, message=st)
        term = {cp.INFEASIBLE: INFEASIBLE, cp.UNBOUNDED: UNBOUNDED,
                cp.USER_LIMIT: TIME_LIMIT}.get(st, ERROR)
        return answer(term, xv, obj, None, secs, message=str(st))


def _build(prog: Program) -> tuple[Any, Any]:
    import cvxpy as cp

    ints = np.flatnonzero(prog.integrality)
    x = cp.Variable(prog.n_cols)
    cons = []
    if len(ints):  # an integer copy of the integer columns (index lists trip cvxpy's MIP stuffing)
        y = cp.Variable(len(ints), integer=True)
        cons.append(x[ints] == y)
    for bound, sign in ((prog.row_lb, 1), (prog.row_ub, -1)):
        fin = np.flatnonzero(np.isfinite(bound))
        if len(fin):
            cons.append(sign * (prog.A[fin] @ x) >= sign * bound[fin])
    for bound, sign in ((prog.col_lb, 1), (prog.col_ub, -1)):
        fin = np.flatnonzero(np.isfinite(bound))
        if len(fin):
            cons.append(sign * x[fin] >= sign * bound[fin])
    if len(prog.cones):  # u * s >= k z^2  <=>  ||(2 sqrt(k) z, u - s)|| <= u + s
        u, z, s = (x[prog.cones[:, i]] for i in range(3))
        root = np.sqrt(prog.scales)
        cons.append(cp.SOC(u + s, cp.vstack([2 * cp.multiply(root, z), u - s]), axis=0))
    return cp.Problem(cp.Minimize(prog.c @ x + prog.offset), cons), x


def _solver(prog: Program, time_limit: float | None, gap: float) -> tuple[str, dict[str, Any]]:
    if prog.is_linear:
        opts: dict[str, Any] = {"mip_rel_gap": gap} if prog.is_mip else {}
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        return "HIGHS", opts
    if prog.is_mip:
        params: dict[str, Any] = {"limits/gap": gap}
        if time_limit is not None:
            params["limits/time"] = float(time_limit)
        return "SCIP", {"scip_params": params}
    opts = {} if time_limit is None else {"time_limit": float(time_limit)}
    return "CLARABEL", opts
