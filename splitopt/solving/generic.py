"""The generic route: compile by the reversible steps, then cut generation (or a conic backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.backends.base import Backend
from splitopt.backends.results import Result
from splitopt.compile.steps import generic_chain
from splitopt.model.expr import BETA, PHI
from splitopt.solving.oa import solve_outer
from splitopt.solving.verify import FEASIBILITY_RTOL, row_scale

if TYPE_CHECKING:
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
    with np.errstate(divide="ignore"):
        for c in p.constraints:  # the guard's own tolerance (solving.verify)
            v = c.body.value(x, shares, o)
            tol = FEASIBILITY_RTOL * row_scale(c)
            if not (c.lb - tol <= v <= c.ub + tol):
                return None
        val = p.objective.value(x, shares, o)  # type: ignore[union-attr]
    return val if np.isfinite(val) else None


def solve_generic(p: Problem, be: Backend, *, deadline: float | None, gap: float, log: bool,
                  warm: Any = None, progress: Any = None) -> Result:
    """Steps 1-4, then either the backend's own conic solver or outer approximation.

    The MILPs start from ``warm``'s options, else from each device's fastest allowed option when
    that plan breaks no constraint (a hint: HiGHS checks it and completes the shares).
    """
    chain = generic_chain()
    prog, data = chain.apply(p)
    n, o = p.n_devices, p.n_options
    options = getattr(warm, "options", None)
    if options is None:
        start = fallback_point(p)
        options = None if start is None else np.argmax(start[: n * o].reshape(n, o), axis=1)
    warm_x = None
    if options is not None:
        warm_x = np.zeros(prog.n_cols)
        warm_x[np.arange(n) * o + np.asarray(options)] = 1.0
    if not prog.is_linear and be.supports(prog):
        import time

        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        res = be.solve_program(prog, time_limit=left, log=log)
        x, term, bound, its, text = res.x, res.termination, res.bound, 1, res.log
        message = "conic"
    else:
        exact = lambda x: exact_value(p, chain.invert(x, data))  # noqa: E731
        out = solve_outer(prog, be, deadline=deadline, gap=gap, log=log, warm=warm_x,
                          exact=exact, progress=progress,
                          repair=lambda x: best_shares(prog, be, x, exact, deadline))
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


def best_shares(prog: Any, be: Backend, x: np.ndarray, exact: Any,
                deadline: float | None) -> np.ndarray | None:
    """The exact best continuous part (shares, user columns) for the integer columns of x.

    An outer-approximation iterate under-prices ``d / share`` (tangents lie below the cone), so
    its shares often break a deadline that the same options meet with other shares. With the
    integer columns fixed, the program is convex: a few LP rounds of cut generation solve it to
    1e-9; the result is a new candidate that the caller prices exactly. Gets at most a quarter
    of the time left.
    """
    import time
    from dataclasses import replace

    ints = prog.integrality.astype(bool)
    lo, hi = prog.col_lb.copy(), prog.col_ub.copy()
    lo[ints] = hi[ints] = np.round(x[ints])
    fixed = replace(prog, col_lb=lo, col_ub=hi, integrality=np.zeros_like(prog.integrality))
    now = time.perf_counter()
    budget = None if deadline is None else now + 0.25 * max(deadline - now, 0.0)
    if budget is not None and budget - now < 1e-2:
        return None
    out = solve_outer(fixed, be, deadline=budget, gap=1e-9, exact=exact, max_iter=60)
    return out.x


def fallback_point(p: Problem) -> np.ndarray | None:
    """Equal shares and each device's fastest allowed option, when that breaks no constraint.

    Used when a time limit stops the solver before it found any plan: the result still carries a
    plan (and the solver's bound).
    """
    n, o = p.n_devices, p.n_options
    x = np.zeros(p.n_cols)
    opts = p.options
    srv = opts.a_srv * (n if p.server_share is not None else 1)
    T = np.where(p.allowed, opts.a_dev + srv + opts.d * n, np.inf)
    x[np.arange(n) * o + np.argmin(T, axis=1)] = 1.0
    x[p.bandwidth.offset:p.bandwidth.offset + n] = 1.0 / n
    if p.server_share is not None:
        x[p.server_share.offset:p.server_share.offset + n] = 1.0 / n
    for v in p.extras:
        x[v.offset:v.offset + v.size] = np.clip(0.0, p.col_lb[v.offset:v.offset + v.size],
                                                p.col_ub[v.offset:v.offset + v.size])
    return x if exact_value(p, x) is not None else None
