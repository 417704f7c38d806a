"""pyomo: its HiGHS interface, or another MILP solver it finds.

The HiGHS interface is ``appsi_highs`` or the newer ``highs``; otherwise the solver pyomo finds
installed (cbc, glpk, scip, gurobi, cplex). Useful where a model must go through pyomo's
ecosystem; about 3x slower to build than handing HiGHS the arrays (docs/benchmarks.md).
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
from splitopt.errors import SolverError

CANDIDATES = ("cbc", "glpk", "scip", "gurobi", "cplex")


def find_solver(preferred: str | None = None) -> tuple[str, Any]:
    """(name, solver): pyomo's appsi HiGHS interface, else the first MILP solver pyomo finds."""
    if preferred in (None, "appsi_highs", "highs"):
        from pyomo.contrib.appsi.solvers import Highs

        solver = Highs()
        if solver.available():
            return "appsi_highs", solver
    import pyomo.environ as pyo

    for name in ((preferred,) if preferred else ()) + CANDIDATES:
        try:
            s = pyo.SolverFactory(name)
            if s is not None and s.available(exception_flag=False):
                return name, s
        except Exception:  # noqa: BLE001 - a plugin that fails to load is simply not available
            continue
    raise SolverError("pyomo finds no MILP solver; pip install highspy")


class PyomoBackend(Backend):
    """pyomo with its HiGHS interface (LP/MILP)."""

    name: ClassVar[str] = "pyomo"
    requires: ClassVar[tuple[str, ...]] = ("pyomo", "highspy")
    capabilities: ClassVar[frozenset[str]] = frozenset({"lp", "mip", "time_limit"})
    purpose: ClassVar[str] = "pyomo ecosystem; any MILP solver pyomo finds"

    def __init__(self, solver: str | None = None):
        self.solver = solver

    def solve_program(self, prog: Program, *, time_limit: float | None = None,
                      warm_start: np.ndarray | None = None, log: bool = False,
                      mip_gap: float = 1e-9) -> Result:
        """Build a pyomo ConcreteModel from the arrays and solve it."""
        if not prog.is_linear:
            raise SolverError("the pyomo backend takes linear programs; apply OuterApproximation")
        from splitopt.backends.highs import silence_banner

        silence_banner()  # pyomo's appsi HiGHS would print it on stdout
        t0 = time.perf_counter()
        m = _build(prog)
        name, solver = find_solver(self.solver)
        _options(name, solver, time_limit, mip_gap)
        done, res = run_with_watchdog(lambda: _run(name, solver, m, log), time_limit)
        secs = time.perf_counter() - t0
        if not done:
            return answer(TIME_LIMIT, None, None, None, secs, message="wall clock")
        return _result(prog, m, res, secs, name)


def _build(prog: Program) -> Any:
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    n = prog.n_cols
    m.J = pyo.RangeSet(0, n - 1)
    lb = [None if not np.isfinite(v) else float(v) for v in prog.col_lb]
    ub = [None if not np.isfinite(v) else float(v) for v in prog.col_ub]
    dom = [pyo.Integers if i else pyo.Reals for i in prog.integrality]
    m.x = pyo.Var(m.J, bounds=lambda _, j: (lb[j], ub[j]), domain=lambda _, j: dom[j])
    A = prog.A
    rows = [(A.indices[A.indptr[i]:A.indptr[i + 1]], A.data[A.indptr[i]:A.indptr[i + 1]])
            for i in range(prog.n_rows)]

    def row_rule(_: Any, i: int) -> Any:
        idx, val = rows[i]
        body = pyo.quicksum(float(v) * m.x[int(j)] for j, v in zip(idx, val))
        lo = None if not np.isfinite(prog.row_lb[i]) else float(prog.row_lb[i])
        hi = None if not np.isfinite(prog.row_ub[i]) else float(prog.row_ub[i])
        if lo is None and hi is None:
            return pyo.Constraint.Skip
        return (lo, body, hi)

    m.R = pyo.RangeSet(0, max(prog.n_rows - 1, 0)) if prog.n_rows else pyo.Set(initialize=[])
    m.rows = pyo.Constraint(m.R, rule=row_rule)
    nzc = np.flatnonzero(prog.c)
    m.obj = pyo.Objective(expr=pyo.quicksum(float(prog.c[j]) * m.x[int(j)] for j in nzc)
                          + float(prog.offset))
    return m


def _options(name: str, solver: Any, time_limit: float | None, gap: float) -> None:
    if name == "appsi_highs":
        cfg = solver.config
        if time_limit is not None:
            cfg.time_limit = float(time_limit)
        cfg.mip_gap = gap
        cfg.load_solution = False
    elif time_limit is not None:
        solver.options["timelimit" if name != "glpk" else "tmlim"] = time_limit


def _run(name: str, solver: Any, m: Any, log: bool) -> Any:
    if name == "appsi_highs":
        solver.config.stream_solver = log
        return solver.solve(m)
    return solver.solve(m, tee=log, load_solutions=False)


def _result(prog: Program, m: Any, res: Any, secs: float, name: str) -> Result:
    if name != "appsi_highs":
        return _legacy_result(prog, m, res, secs, name)
    from pyomo.contrib.appsi.base import TerminationCondition as TC

    tc = getattr(res, "termination_condition", None)
    term = {TC.optimal: OPTIMAL, TC.maxTimeLimit: TIME_LIMIT, TC.infeasible: INFEASIBLE,
            TC.unbounded: UNBOUNDED, TC.infeasibleOrUnbounded: INFEASIBLE}.get(tc, ERROR)
    x = None
    if getattr(res, "best_feasible_objective", None) is not None:
        res.solution_loader.load_vars()
        x = np.array([m.x[j].value if m.x[j].value is not None else 0.0
                      for j in range(prog.n_cols)], dtype=float)
    obj = None if x is None else prog.objective(x)
    bound = getattr(res, "best_objective_bound", None)
    if bound is not None and not np.isfinite(bound):
        bound = None
    if term == OPTIMAL and obj is not None:
        bound = obj if bound is None else bound
    return answer(term, x, obj, bound, secs, message=f"pyomo {name}: {tc}")


def _legacy_result(prog: Program, m: Any, res: Any, secs: float, name: str) -> Result:
    from pyomo.opt import TerminationCondition as TC

    tc = res.solver.termination_condition
    term = {TC.optimal: OPTIMAL, TC.maxTimeLimit: TIME_LIMIT, TC.infeasible: INFEASIBLE,
            TC.unbounded: UNBOUNDED}.get(tc, ERROR)
    x = None
    if len(res.solution) > 0:
        m.solutions.load_from(res)
        x = np.array([m.x[j].value or 0.0 for j in range(prog.n_cols)], dtype=float)
    obj = None if x is None else prog.objective(x)
    return answer(term, x, obj, obj if term == OPTIMAL else None, secs,
                         message=f"pyomo {name}: {tc}")
