"""Min-max round latency with constraints that couple devices: bisection on T plus a MILP.

The coupling rows: a shared memory budget, a common cut, a sum of batches, user variables; one
MILP feasibility step per probe.

At a round time T device k's least share for option o is need[k,o] = max(D / (T - A), beta_min);
T is achievable iff the MILP  min sum need[k,o] z[k,o]  s.t. one-hot z, the coupling rows  has an
optimum <= 1 (the shares only enter through their sum). A feasible probe's options give the exact
least T for those options (bisection without MILP), which becomes the new upper end; an infeasible
probe is a proven lower bound.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from splitopt.backends.base import INFEASIBLE, OPTIMAL, TIME_LIMIT, Backend
from splitopt.backends.results import Result
from splitopt.compile.steps import Model, ToMatrix
from splitopt.model.expr import Constraint, Expr
from splitopt.solving.bisection import bisect_minmax, fixed_option_time
from splitopt.solving.structure import Structure

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def _need(st: Structure, T: float) -> tuple[np.ndarray, np.ndarray]:
    R = T - st.A
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(st.D > 0, st.D / R, 0.0)
    ok = st.allowed & ((R > 0) | ((R >= 0) & (st.D == 0)))
    return np.where(ok, np.maximum(share, st.beta_min), 0.0), ok


def _probe(p: Problem, st: Structure, T: float, backend: Backend, deadline: float | None):
    """(verdict, options, extras) of the feasibility MILP at T."""
    n, o = p.n_devices, p.n_options
    need, ok = _need(st, T)
    if not ok.any(axis=1).all():
        return "infeasible", None, None
    lb, ub = p.col_lb.copy(), p.col_ub.copy()
    ub[: n * o] = ok.ravel()
    lb[n * o: p.extra_offset] = 0.0  # the shares do not enter the feasibility MILP
    ub[n * o: p.extra_offset] = 0.0
    integ = np.zeros(p.n_cols, dtype=bool)
    integ[: n * o] = True
    for v in p.extras:
        integ[v.offset:v.offset + v.size] = v.integer
    rows = [Constraint(Expr(k * o + np.arange(o), np.ones(o)), 1.0, 1.0, f"onehot:{k}")
            for k in range(n)] + st.coupling
    if st.tied:
        rows += [c for c in p.constraints if c.name.startswith("tie:")]
    obj = Expr(np.arange(n * o), need.ravel())
    m = Model(lb, ub, integ, [f"x{j}" for j in range(p.n_cols)], obj, rows, {}, o)
    prog, _ = ToMatrix().apply(m)
    left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
    res = backend.solve_program(prog, time_limit=left, mip_gap=1e-9)
    if res.x is not None and res.objective is not None and res.objective <= 1 + 1e-12:
        return "feasible", np.argmax(res.x[: n * o].reshape(n, o), axis=1), res.x
    if res.termination == INFEASIBLE or (res.bound is not None and res.bound > 1 + 1e-12):
        return "infeasible", None, None
    return "undecided", None, None


def coupled_minmax(p: Problem, st: Structure, backend: Backend, *, deadline: float | None = None,
                   rtol: float = 1e-9) -> Result:
    """Exact min max_k T_k under coupling rows (see the module docstring)."""
    free = bisect_minmax(st.A, st.D, st.beta_min, st.allowed)
    if free.termination != OPTIMAL:
        return free
    assert free.bound is not None and free.objective is not None
    lo, hi, best, x_best, it = float(free.bound), math.inf, None, None, 0
    r = np.arange(p.n_devices)

    def accept(opt: np.ndarray, x: np.ndarray) -> None:
        nonlocal hi, best, x_best
        t = fixed_option_time(st.A[r, opt], st.D[r, opt], st.beta_min[r, opt])
        if t < hi:
            hi, best, x_best = t, opt, x

    for T in (free.objective, math.inf):  # the uncoupled optimum, else any feasible plan
        it += 1
        verdict, opt, x = _probe(p, st, T, backend, deadline)
        if verdict == "feasible":
            accept(opt, x)
            break
        if verdict == "undecided":
            return Result(TIME_LIMIT, bound=lo, iterations=it)
    if best is None:
        return Result(INFEASIBLE, iterations=it)
    while hi - lo > rtol * abs(hi):
        if deadline is not None and time.perf_counter() > deadline:
            return _finish(st, best, hi, lo, it, x_best, TIME_LIMIT)
        mid = 0.5 * (lo + hi)
        it += 1
        verdict, opt, x = _probe(p, st, mid, backend, deadline)
        if verdict == "feasible":
            accept(opt, x)
            hi = min(hi, mid)
        elif verdict == "infeasible":
            lo = mid
        else:
            return _finish(st, best, hi, lo, it, x_best, TIME_LIMIT)
    return _finish(st, best, hi, lo, it, x_best, OPTIMAL)


def _finish(st, opt, T, lo, it, x, term) -> Result:
    r = np.arange(len(opt))
    out = bisect_minmax(st.A[r, opt][:, None], st.D[r, opt][:, None], st.beta_min[r, opt][:, None],
                        np.ones((len(opt), 1), dtype=bool))
    return Result(term, objective=out.objective, bound=min(lo, out.objective), iterations=it,
                  options=opt, beta=out.beta, x=x)
