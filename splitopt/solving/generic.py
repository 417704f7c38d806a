"""The generic route: compile by the reversible steps, then cut generation (or a conic backend)."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.backends.base import Backend
from splitopt.backends.results import Result
from splitopt.compile.steps import generic_chain
from splitopt.errors import SplitoptError
from splitopt.model.expr import BETA, PHI
from splitopt.solving.oa import solve_outer
from splitopt.solving.verify import FEASIBILITY_RTOL, row_scale

if TYPE_CHECKING:
    from splitopt.compile.program import Program
    from splitopt.model.problem import Problem



def model_point(p: Problem, xm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x with z rounded, shares[res, k], option per device) from model columns."""
    n, o = p.n_devices, p.n_options
    x = xm.copy()
    z = x[: n * o].reshape(n, o)
    option = np.argmax(z, axis=1)
    x[: n * o] = 0.0
    x[np.arange(n) * o + option] = 1.0
    shares = np.ones((2, n))
    # a solver's share may sit a tolerance below 0: priced as it is, a -1e-13 share made a
    # device's time hugely negative and vanish from a max (objective 2.3, plan 12002 s)
    # (+ 0.0: clip keeps -0.0, and 1 / -0.0 = -inf hid a device with no server share from a
    # max and from its deadline row, property suite seed 339)
    shares[BETA] = np.clip(x[p.bandwidth.offset:p.bandwidth.offset + n], 0.0, 1.0) + 0.0
    if p.server_share is not None:
        shares[PHI] = np.clip(x[p.server_share.offset:p.server_share.offset + n], 0.0, 1.0) + 0.0
    return x, shares, option


def exact_value(p: Problem, xm: np.ndarray) -> float | None:
    """The true objective at model columns xm, or None when a constraint is broken."""
    x, shares, _ = model_point(p, xm)
    o = p.n_options
    k = o * p.n_devices  # past the one-hot z: shares and user columns, whose bounds a start
    lo, hi = p.col_lb[k:], p.col_ub[k:]  # or a repair may leave (e.g. a user column fixed at 1)
    rest = xm[k:k + len(lo)]
    tol = FEASIBILITY_RTOL * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, 0.0)))
    if np.any(rest < lo - tol) or np.any(rest > hi + tol):
        return None
    with np.errstate(divide="ignore"):
        for c in p.constraints:  # the guard's own tolerance (solving.verify)
            v = c.body.value(x, shares, o)
            tol = FEASIBILITY_RTOL * row_scale(c)
            if not (c.lb - tol <= v <= c.ub + tol):
                return None
        val = p.objective.value(x, shares, o)  # type: ignore[union-attr]
    return val if np.isfinite(val) else None


def solve_generic(p: Problem, be: Backend, *, deadline: float | None, gap: float, log: bool,
                  warm: Any = None, progress: Any = None, lagrangian: bool = True) -> Result:
    """Steps 1-4, then either the backend's own conic solver or outer approximation.

    First, unless ``lagrangian=False`` (the tests' second route) or the backend takes the cones
    itself: a sum of device terms with per-device rows goes to the share-budget dual
    (:func:`splitopt.solving.lagrange_search.solve_lagrange`).

    The loop starts from ``warm``'s options, else from each device's fastest allowed option
    (the best shares for them are the first candidate incumbent; HiGHS gets them as a hint).
    """
    # a backend that takes mixed-integer cones itself (cvxpy with misocp=True) was asked for
    takes_cones = "misocp" in be.capabilities and getattr(be, "misocp", True)
    structured = functools.cache(lambda: structured_options(p, be, deadline))  # for both routes
    if lagrangian and not takes_cones:
        from splitopt.solving.lagrange_search import solve_lagrange

        # sums of device terms with per-device rows: the share-budget dual (None: not that)
        out = solve_lagrange(p, deadline=deadline, gap=gap, progress=progress,
                             exact=lambda xm: exact_value(p, xm),
                             start=structured)
        if out is not None:
            return out
    chain = generic_chain()
    prog, data = chain.apply(p)
    n, o = p.n_devices, p.n_options
    options = getattr(warm, "options", None)
    if options is None:
        options = fastest_options(p)
    warm_x = _option_point(prog.n_cols, n, o, options)
    if not prog.is_linear and be.supports(prog):

        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        res = be.solve_program(prog, time_limit=left, log=log)
        x, term, bound, its, text = res.x, res.termination, res.bound, 1, res.log
        message = "conic"
    else:
        exact = lambda x: exact_value(p, chain.invert(x, data))  # noqa: E731
        starts = tuple(_option_point(prog.n_cols, n, o, opt)
                       for opt in (structured(),) if opt is not None)
        out = solve_outer(prog, be, deadline=deadline, gap=gap, log=log, warm=warm_x,
                          exact=exact, progress=progress, starts=starts,
                          repair=lambda x: fixed_shares(prog, be, one_hot(x, n, o), exact,
                                                        deadline))
        x, term, bound, its, text = out.x, out.termination, out.bound, out.iterations, out.log
        message = ""
    if x is None:
        xm = fallback_point(p)
        if xm is None or term not in ("time_limit",):
            return Result(term, bound=bound, iterations=its, message=message)
    else:
        xm = chain.invert(x, data)
    xr, shares, option = model_point(p, xm)
    obj = exact_value(p, xm)
    if obj is None:
        obj = p.objective.value(xr, shares, o)  # type: ignore[union-attr]
    phi = shares[PHI] if p.server_share is not None else None
    return Result(term, objective=obj, bound=None if bound is None else min(bound, obj),
                  iterations=its, log=text, message=message, options=option,
                  beta=shares[BETA].copy(), phi=phi, x=xr)


def _option_point(n_cols: int, n: int, o: int, options: np.ndarray) -> np.ndarray:
    x = np.zeros(n_cols)
    x[np.arange(n) * o + np.asarray(options)] = 1.0
    return x


def structured_options(p: Problem, be: Backend, deadline: float | None) -> np.ndarray | None:
    """Options of the least-latency plan under p's constraints, when a structured path takes it.

    A candidate start (a deadline row that p keeps is met by the plan that minimises the
    latency, whatever p minimises): solved by bisection in milliseconds where the tangent MILPs
    found nothing in a minute at 1000 devices. None when only the generic path would take it.
    """
    import copy

    from splitopt.solving.paths import check_path, choose_path
    from splitopt.solving.structure import analyse

    for rows in (p.constraints, []):  # with p's rows when a structured path takes them
        q = copy.copy(p)
        q.objective, q.sense, q.constraints = p.round_latency(), "min", list(rows)
        try:
            st = analyse(q)
            chosen = choose_path(st)
            if st.explained or chosen == "generic":
                continue
            left = None if deadline is None else 0.1 * max(deadline - time.perf_counter(), 0.0)
            end = None if left is None else time.perf_counter() + left
            out = check_path(st, chosen).run(q, st, be, end, 1e-6, False, None, None)
        except SplitoptError:  # e.g. infeasible without p's objective rows: no start from it
            continue
        if out.options is not None:
            return np.asarray(out.options)
    return None


def one_hot(x: np.ndarray, n: int, o: int) -> np.ndarray:
    """X with each device's largest z set to 1 and the others to 0 (rounds a relaxed point)."""
    y = x.copy()
    pick = np.argmax(x[: n * o].reshape(n, o), axis=1)
    y[: n * o] = 0.0
    y[np.arange(n) * o + pick] = 1.0
    return y


def fixed_shares(prog: Program, be: Backend, x: np.ndarray, exact: Any,
                 deadline: float | None) -> np.ndarray | None:
    """The best continuous columns (shares, user columns) for the integer columns of x.

    With every option fixed, a chosen option's 1/share term is the rotated cone
    ``u * s >= k z^2`` with z = 1, and an unchosen one's cone, u and s are 0 (``s <= z`` forces
    s = 0; u only ever costs). What is left is a small convex program: one cone per chosen
    option and resource (2000 at 1000 devices, not 100k), solved by Clarabel to 1e-10
    (:mod:`splitopt.backends.clarabel`); without clarabel, or when it fails, by LP rounds of
    tangents (:func:`best_shares`). The caller prices the result exactly.
    """
    from splitopt.backends import clarabel

    if not clarabel.available() or not len(prog.cones):
        return best_shares(prog, be, x, exact, deadline)
    ints = prog.integrality.astype(bool)
    lo, hi = prog.col_lb.copy(), prog.col_ub.copy()
    # rounded into the column's bounds: a start carries only options (a user integer column
    # fixed at 1 came in as 0)
    lo[ints] = hi[ints] = np.clip(np.round(x[ints]), prog.col_lb[ints], prog.col_ub[ints])
    u, num, den = prog.cones.T
    if not ints[num].all():  # a cone over a continuous column: not this structure
        return best_shares(prog, be, x, exact, deadline)
    off = lo[num] == 0
    for col in (u[off], den[off]):
        lo[col] = hi[col] = 0.0
    fixed = lo == hi
    free = np.flatnonzero(~fixed)
    A = prog.A.tocsc()
    shift = A[:, fixed] @ lo[fixed]
    Af = A[:, free].tocsr()
    rlb, rub = prog.row_lb - shift, prog.row_ub - shift
    empty = np.diff(Af.indptr) == 0
    tol = 1e-9 * np.maximum(1.0, np.abs(shift))
    if np.any(rlb[empty] > tol[empty]) or np.any(rub[empty] < -tol[empty]):
        return None  # these options break a row whatever the shares
    at = np.full(prog.n_cols, -1)
    at[free] = np.arange(len(free))
    on = ~off
    if np.any(at[u[on]] < 0) or np.any(at[den[on]] < 0):
        return None  # a chosen option's share is fixed at 0
    now = time.perf_counter()
    left = None if deadline is None else max(deadline - now, 0.0) / 4
    if left is not None and left < 1e-2:
        return None
    res = clarabel.solve_rotated(prog.c[free], Af[~empty], rlb[~empty], rub[~empty], lo[free],
                                 hi[free], at[u[on]], at[den[on]],
                                 prog.scales[on] * lo[num[on]] ** 2, time_limit=left)
    if res.x is None:
        return best_shares(prog, be, x, exact, deadline) if res.termination != "infeasible" \
            else None

    def full(y: np.ndarray) -> np.ndarray:
        out = lo.copy()
        out[free] = y
        return out
    if exact(full(res.x)) is not None:
        return full(res.x)
    for _ in range(3):  # again, each cone scaled by the shares just found
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.0) / 4
        again = clarabel.solve_rotated(prog.c[free], Af[~empty], rlb[~empty], rub[~empty],
                                       lo[free], hi[free], at[u[on]], at[den[on]],
                                       prog.scales[on] * lo[num[on]] ** 2, time_limit=left,
                                       den_guess=res.x[at[den[on]]])
        if again.x is None:
            break
        res = again
        if exact(full(res.x)) is not None:
            return full(res.x)
    return None


def best_shares(prog: Any, be: Backend, x: np.ndarray, exact: Any,
                deadline: float | None) -> np.ndarray | None:
    """The exact best continuous part (shares, user columns) for the integer columns of x.

    An outer-approximation iterate under-prices ``d / share`` (tangents lie below the cone), so
    its shares often break a deadline that the same options meet with other shares. With the
    integer columns fixed, the program is convex: a few LP rounds of cut generation solve it to
    1e-9; the result is a new candidate that the caller prices exactly. Gets at most a quarter
    of the time left.
    """
    ints = prog.integrality.astype(bool)
    lo, hi = prog.col_lb.copy(), prog.col_ub.copy()
    # rounded into the column's bounds: a start carries only options (a user integer column
    # fixed at 1 came in as 0)
    lo[ints] = hi[ints] = np.clip(np.round(x[ints]), prog.col_lb[ints], prog.col_ub[ints])
    fixed = replace(prog, col_lb=lo, col_ub=hi, integrality=np.zeros_like(prog.integrality))
    now = time.perf_counter()
    budget = None if deadline is None else now + 0.25 * max(deadline - now, 0.0)
    if budget is not None and budget - now < 1e-2:
        return None
    out = solve_outer(fixed, be, deadline=budget, gap=1e-9, exact=exact, max_iter=60)
    return out.x


def fastest_options(p: Problem) -> np.ndarray:
    """Each device's allowed option with the least round time at equal shares."""
    n = p.n_devices
    opts = p.options
    srv = opts.a_srv * (n if p.server_share is not None else 1)
    return np.argmin(np.where(p.allowed, opts.a_dev + srv + opts.d * n, np.inf), axis=1)


def fallback_point(p: Problem) -> np.ndarray | None:
    """Equal shares and each device's fastest allowed option, when that breaks no constraint.

    Used when a time limit stops the solver before it found any plan: the result still carries a
    plan (and the solver's bound).
    """
    n, o = p.n_devices, p.n_options
    x = np.zeros(p.n_cols)
    x[np.arange(n) * o + fastest_options(p)] = 1.0
    x[p.bandwidth.offset:p.bandwidth.offset + n] = 1.0 / n
    if p.server_share is not None:
        x[p.server_share.offset:p.server_share.offset + n] = 1.0 / n
    for v in p.extras:
        x[v.offset:v.offset + v.size] = np.clip(0.0, p.col_lb[v.offset:v.offset + v.size],
                                                p.col_ub[v.offset:v.offset + v.size])
    return x if exact_value(p, x) is not None else None
