"""Outer approximation with cut generation: tangent MILPs until the gap closes.

Solve the tangent MILP, add tangents where a cone is violated, repeat until the gap between the
MILP bound and the exact objective closes. Every iterate's MILP optimum is a valid lower bound
(tangents under-estimate the convex k z^2/s), and an iterate whose cones hold is feasible for the
original program, so the loop returns a proven interval; a loop that can add no tangent while the
gap is open ends with ``error`` (never ``optimal``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from splitopt.backends.base import ERROR, OPTIMAL, TIME_LIMIT, Backend
from splitopt.backends.results import Result
from splitopt.compile.program import Program
from splitopt.compile.steps import OuterApproximation, capped_ratios, tangent_rows


def _outcome(term: str, x: np.ndarray | None, objective: float | None, bound: float | None,
             iterations: int, log: str) -> Result:
    """The loop's answer as the one Result (columns of the program with cones in ``x``)."""
    return Result(term, path="outer-approximation", objective=objective, bound=bound,
                  iterations=iterations, log=log, x=x)


def cone_need(prog: Program, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k z^2/s, z/s) of every cone at x (z/s is the tangent ratio that touches there)."""
    u, z, s = (x[prog.cones[:, i]] for i in range(3))
    # a binary z within the solver's integrality tolerance of 0 is 0: its "ratio" z/s (s = 0)
    # was 1e300 and the capped tangent added a 1e10 coefficient for nothing
    tiny = np.where(prog.integrality[prog.cones[:, 1]], 1e-9, 1e-12)
    z = np.where(z > tiny, z, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(z > 0, z / np.maximum(s, 1e-300), 0.0)
    return prog.scales * z * r, r


def lift(prog: Program, x: np.ndarray) -> np.ndarray:
    """X with every cone's u raised to z^2/s (feasible for all tangents)."""
    need, _ = cone_need(prog, x)
    y = x.copy()
    y[prog.cones[:, 0]] = np.maximum(x[prog.cones[:, 0]], need)
    return y


def solve_outer(prog: Program, backend: Backend, *, deadline: float | None, gap: float = 1e-7,
                exact: Callable[[np.ndarray], float | None] | None = None,
                stop: Callable[[float, float | None], bool] | None = None,
                max_iter: int = 500, log: bool = False,
                warm: np.ndarray | None = None,
                progress: Callable[[int, float | None, float | None], None] | None = None,
                repair: Callable[[np.ndarray], np.ndarray | None] | None = None) -> Result:
    """Minimise a program with cones by cut generation on ``backend``.

    ``exact(x)`` prices an iterate exactly (None when it breaks a constraint); by default the
    objective of the lifted iterate when every cone holds. ``stop(lb, ub)`` ends the loop early
    (e.g. a feasibility question already answered). ``progress(round, incumbent, bound)`` is
    called after every round (:class:`splitopt.solving.progress.Progress`). ``repair(x)`` may
    return another point for an iterate that is not exactly feasible (e.g. the best shares for
    its options); it is priced by ``exact`` like any iterate, so it only ever adds incumbents.
    """
    lin, _ = OuterApproximation().apply(prog)
    best_x, best_ub, lb, logs = None, None, -np.inf, []
    exact = exact or (lambda x: prog.objective(x) if prog.max_violation(x) <= 1e-7 else None)
    for it in range(1, max_iter + 1):
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        res = backend.solve_program(lin, time_limit=left, warm_start=warm, log=log,
                                    mip_gap=min(gap, 1e-6) / 10)
        logs.append(res.log)
        if res.bound is not None:
            lb = max(lb, res.bound)
        if res.x is None:
            term = res.termination if best_x is None or res.termination != OPTIMAL else TIME_LIMIT
            return _outcome(term, best_x, best_ub, lb if np.isfinite(lb) else None, it,
                             "".join(logs))
        x = lift(prog, res.x)
        ub = exact(x)
        if ub is None and repair is not None:
            fixed = repair(res.x)
            ub_fixed = None if fixed is None else exact(fixed)
            if ub_fixed is not None:
                x, ub = fixed, ub_fixed
        if ub is not None and (best_ub is None or ub < best_ub):
            best_x, best_ub = x, ub
        if progress is not None:
            progress(it, best_ub, lb if np.isfinite(lb) else None)
        done = best_ub is not None and best_ub - lb <= gap * max(abs(best_ub), 1e-12)
        if done or (stop is not None and stop(lb, best_ub)):
            return _outcome(OPTIMAL, best_x, best_ub, lb, it, "".join(logs))
        late = deadline is not None and time.perf_counter() > deadline
        if res.termination == TIME_LIMIT or late:
            return _outcome(TIME_LIMIT, best_x, best_ub, lb, it, "".join(logs))
        more = _add_cuts(prog, lin, res.x)
        if more is None:  # no cone violated, yet the gap is open: no tangent can close it
            logs.append(f"outer approximation stalled at iteration {it}: no cone violated, "
                        f"incumbent {best_ub}, bound {lb}\n")
            return _outcome(ERROR, best_x, best_ub, lb, it, "".join(logs))
        lin = more
        warm = res.x
    return _outcome(TIME_LIMIT, best_x, best_ub, lb, max_iter, "".join(logs))


def _add_cuts(prog: Program, lin: Program, x: np.ndarray) -> Program | None:
    need, r = cone_need(prog, x)
    u = x[prog.cones[:, 0]]
    bad = need - u > 1e-10 * need  # relative: objectives of 1e-3 J need it
    if not bad.any():
        return None
    # any ratio gives a valid tangent; capping it keeps coefficients (k r^2) within HiGHS's range
    k = prog.scales[bad]
    rows = tangent_rows(prog.cones[bad], capped_ratios(r[bad], k), lin.n_cols, k)
    m = rows.shape[0]
    return lin.add_rows(rows, np.zeros(m), np.full(m, np.inf))
