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
from dataclasses import replace
from typing import Any

import numpy as np

from splitopt.backends.base import ERROR, OPTIMAL, TIME_LIMIT, Backend
from splitopt.backends.results import Result
from splitopt.compile.program import Program
from splitopt.compile.tangents import OuterApproximation, capped_ratios, tangent_rows


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
                repair: Callable[[np.ndarray], np.ndarray | None] | None = None,
                starts: tuple[np.ndarray, ...] = ()) -> Result:
    """Minimise a program with cones by cut generation on ``backend``.

    ``exact(x)`` prices an iterate exactly (None when it breaks a constraint); by default the
    objective of the lifted iterate when every cone holds. ``stop(lb, ub)`` ends the loop early
    (e.g. a feasibility question already answered). ``progress(round, incumbent, bound)`` is
    called after every round (:class:`splitopt.solving.progress.Progress`). ``repair(x)`` may
    return another point for the integer columns of x (the best shares for its options); it is
    priced by ``exact`` like any iterate, so it only ever adds incumbents. With ``repair`` the
    warm start and the ``starts`` (e.g. a structured path's plan) are repaired before the first
    MILP: an incumbent from the start.

    Each new incumbent adds a tangent to every cone at the incumbent's share of that cone's
    device (``Program.cone_share``): the MILP is then exact where the best plan so far is, for
    every option. The MILPs of the early rounds stop at a quarter of the open gap (at most 1%):
    their dual bound is as valid as a closed one, and the last rounds are solved to ``gap / 10``.
    """
    lin, _ = OuterApproximation().apply(prog)
    best_x, best_ub, lb, logs = None, None, -np.inf, []
    exact = exact or (lambda x: prog.objective(x) if prog.max_violation(x) <= 1e-7 else None)
    tight = min(gap, 1e-6) / 10
    tried: set[bytes] = set()
    force_tight = False

    def consider(x: np.ndarray | None) -> bool:
        """Price a candidate; keep it when it is the best so far (True then)."""
        nonlocal best_x, best_ub
        ub = None if x is None else exact(x)
        if ub is None or (best_ub is not None and ub >= best_ub):
            return False
        best_x, best_ub = x, ub
        return True

    def repaired(x: np.ndarray) -> np.ndarray | None:
        key = np.round(x[prog.integrality.astype(bool)]).astype(np.int8).tobytes()
        if repair is None or key in tried:
            return None
        tried.add(key)
        return repair(x)

    for x0 in (warm, *starts):
        if x0 is not None:
            consider(repaired(x0))
    if prog.is_mip and repair is not None:  # the generic path (the others' MILPs are tiny)
        shown = None if progress is None else (lambda bound: progress(0, best_ub, bound))
        lin, lb = _relaxation_tangents(prog, lin, backend, deadline, lb, consider, repaired,
                                       shown, lambda: best_ub)
    if best_x is not None:  # after the relaxation: with these rows its first LP at 1000
        warm = best_x       # devices did not finish in 30 s (3 s without)
        lin = _incumbent_tangents(prog, lin, best_x)
    for it in range(1, max_iter + 1):
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        open_gap = (1e-2 if best_ub is None or not np.isfinite(lb)
                    else (best_ub - lb) / max(abs(best_ub), 1e-12))
        mip_gap = tight if force_tight else max(tight, min(1e-2, open_gap / 4))
        res = backend.solve_program(lin, time_limit=left, warm_start=warm, log=log,
                                    mip_gap=mip_gap)
        logs.append(res.log)
        if res.bound is not None:
            lb = max(lb, res.bound)
        if res.x is None:
            term = res.termination if best_x is None or res.termination != OPTIMAL else TIME_LIMIT
            return _outcome(term, best_x, best_ub, lb if np.isfinite(lb) else None, it,
                             "".join(logs))
        new = consider(lift(prog, res.x))
        new = consider(repaired(res.x)) or new
        if new:
            lin = _incumbent_tangents(prog, lin, best_x)
        if progress is not None:
            progress(it, best_ub, lb if np.isfinite(lb) else None)
        done = best_ub is not None and best_ub - lb <= gap * max(abs(best_ub), 1e-12)
        if done or (stop is not None and stop(lb, best_ub)):
            return _outcome(OPTIMAL, best_x, best_ub, lb, it, "".join(logs))
        late = deadline is not None and time.perf_counter() > deadline
        if res.termination == TIME_LIMIT or late:
            return _outcome(TIME_LIMIT, best_x, best_ub, lb, it, "".join(logs))
        more = _add_cuts(prog, lin, res.x)
        force_tight = more is None
        if more is None and mip_gap <= tight:
            # no cone violated by an optimal MILP point, yet the gap is open: nothing can close it
            logs.append(f"outer approximation stalled at iteration {it}: no cone violated, "
                        f"incumbent {best_ub}, bound {lb}\n")
            return _outcome(ERROR, best_x, best_ub, lb, it, "".join(logs))
        # none violated at a loose MILP gap: the same MILP again, to the tight gap
        lin = lin if more is None else more
        warm = res.x if best_x is None else best_x
    return _outcome(TIME_LIMIT, best_x, best_ub, lb, max_iter, "".join(logs))


def _relaxation_tangents(prog: Program, lin: Program, backend: Backend,
                         deadline: float | None, lb: float, consider: Callable[[Any], bool],
                         repaired: Callable[[np.ndarray], np.ndarray | None],
                         progress: Callable[[float], None] | None = None,
                         best_ub: Callable[[], float | None] = lambda: None,
                         ) -> tuple[Program, float]:
    """Lin with tangents where the continuous relaxation's optimum is, and its bound.

    Cut generation on the LP relaxation (integrality dropped) first: LPs are cheap, and their
    tangents make the MILP's own relaxation the perspective relaxation (the convex hull of each
    device's options), which HiGHS then needs far fewer nodes to close. Stops when the LP bound
    moves by less than 1e-4 (relative) or after a fifth of the time left (the first LP may take
    60%: without it the loop may end with no bound at all). Each LP point is
    offered to ``repaired`` (relax and round: the caller rounds and fixes the options and finds
    their best shares) for an incumbent.
    """
    now = time.perf_counter()
    stop_at = None if deadline is None else now + 0.2 * max(deadline - now, 0.0)
    first_by = None if deadline is None else now + 0.6 * max(deadline - now, 0.0)
    relaxed = replace(lin, integrality=np.zeros_like(lin.integrality))
    last, res, solved = -np.inf, None, None
    for _ in range(30):
        # the first LP may take half the time: at 1000 devices it is the only bound in a minute
        end = first_by if res is None else stop_at
        left = None if end is None else end - time.perf_counter()
        if left is not None and left < 1e-2:
            break
        res = backend.solve_program(relaxed, time_limit=left)
        if res.x is None or res.termination != OPTIMAL or res.objective is None:
            break
        lb, solved = max(lb, res.objective), res
        consider(repaired(res.x))
        if progress is not None:  # shown as round 0: the relaxation's rounds
            progress(lb)
        more = _add_cuts(prog, relaxed, res.x)
        if more is None or res.objective - last <= 1e-4 * max(abs(res.objective), 1e-12):
            relaxed = relaxed if more is None else more
            break
        last, relaxed = res.objective, more
    lin = replace(relaxed, integrality=lin.integrality)
    if solved is not None:  # the last LP solved (later rows only tighten it: its costs hold)
        consider(repaired(_dive(lin, backend, solved.x, deadline)))
        if best_ub() is not None:
            lin = _fix_by_reduced_costs(lin, solved, best_ub())
    return lin, lb


def _fix_by_reduced_costs(lin: Program, lp: Result, incumbent: float) -> Program:
    """Lin with the integer columns that cannot be 1 in a plan better than the incumbent at 0.

    An optimal LP of a relaxation with value v and reduced cost d_j >= 0 of a column at 0: every
    point with x_j = 1 costs at least v + d_j (the LP's dual stays feasible), so where
    v + d_j exceeds the incumbent (by 1e-6 relative, far above the LP's dual tolerance) no
    better plan takes the option. At 100 devices this removes most of the options of most devices.
    """
    d = lp.extras.get("col_dual") if lp.extras else None
    if d is None or lp.x is None:
        return lin
    ints = lin.integrality.astype(bool)
    margin = 1e-6 * max(abs(incumbent), 1e-12)
    out = ints & (lp.x <= 1e-9) & (lin.col_lb == 0) & (lp.objective + d > incumbent + margin)
    if not out.any():
        return lin
    ub = lin.col_ub.copy()
    ub[out] = 0.0
    return replace(lin, col_ub=ub)


def _dive(lin: Program, backend: Backend, x: np.ndarray, deadline: float | None) -> np.ndarray:
    """A MILP point with every integer column that is 1 in the relaxed point x fixed at 1.

    The perspective relaxation leaves only a few devices fractional (as many as rows couple
    them); the MILP over those devices' options is small. Rounding them instead broke the
    deadline (100 devices: 3e-5 s over with the best shares). Returns x when it finds nothing.
    """
    ints = lin.integrality.astype(bool)
    lo = lin.col_lb.copy()
    one = ints & (x >= 1 - 1e-6)
    lo[one] = 1.0
    now = time.perf_counter()
    left = None if deadline is None else 0.1 * max(deadline - now, 0.0)
    res = backend.solve_program(replace(lin, col_lb=lo), time_limit=left, mip_gap=1e-4)
    return x if res.x is None else res.x


def _incumbent_tangents(prog: Program, lin: Program, x: np.ndarray) -> Program:
    """Lin with a tangent to every cone at the share its device has in x (``cone_share``)."""
    if prog.cone_share is None or not len(prog.cones):
        return lin
    share = x[prog.cone_share]
    ok = share > 1e-12
    if not ok.any():
        return lin
    k = prog.scales[ok]
    rows = tangent_rows(prog.cones[ok], capped_ratios(1.0 / share[ok], k), lin.n_cols, k)
    m = rows.shape[0]
    return lin.add_rows(rows, np.zeros(m), np.full(m, np.inf))


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
