"""solve(problem): pick the exact path the structure allows, run it, decode a frozen Plan.

Paths (docs/builder.md), one table in :mod:`splitopt.solving.paths` tried in order:
``bisection`` (min-max latency, per-device constraints), ``server-share`` (the same with server
shares), ``separable`` (sums such as sequential SL latency or total energy), ``coupled`` (min-max
with rows that couple devices: bisection + MILP feasibility), and the generic
``outer-approximation`` (MILP with tangent cuts, cut generation until the gap closes) or ``conic``
(a backend that takes the cones itself, e.g. cvxpy with Clarabel/SCIP). Adding a path: one module
with ``accepts(structure)`` and ``run(...)``, one entry in ``paths.PATHS`` (before ``generic``).
"""

from __future__ import annotations

import numbers
import time
from dataclasses import replace

import numpy as np

from splitopt import limits
from splitopt.backends import Backend, get_backend
from splitopt.backends.base import INFEASIBLE, OPTIMAL
from splitopt.backends.results import Result
from splitopt.errors import InfeasibleError, InputError
from splitopt.model.problem import Problem
from splitopt.plan import Plan
from splitopt.solving.paths import PATHS, Path, check_path, choose_path
from splitopt.solving.structure import Structure, analyse
from splitopt.solving.verify import guard_result
from splitopt.solving.verify_builder import verify_problem

#: seconds per device that decoding, pricing and verifying a plan take after a path returns
#: (about 0.25 ms per device here, measured at 1000 devices)
POST_S_PER_DEVICE = 3e-4


def solve(problem: Problem, *, backend: str | Backend | None = None, path: str = "auto",
          time_limit: float | None = None, gap: float = 1e-6, log: bool = False,
          warm_start: Result | None = None, progress: bool | None = None) -> Result:
    """Solve a Problem exactly (within ``gap``) and return a :class:`Result` with a frozen Plan.

    ``progress``: show incumbent, bound and gap on stderr during long generic solves (default:
    as ``log``; ``splitopt solve`` turns it on unless ``--json``).

    Raises :class:`InfeasibleError` naming the device and constraint when no plan exists.
    """
    if not isinstance(problem, Problem):
        raise InputError("problem", type(problem).__name__, "a splitopt Problem",
                         "Build one with splitopt.Problem(scenario) and set its objective.")
    if not isinstance(path, str) or (path != "auto" and path not in PATHS):
        raise InputError("path", path, f"one of {['auto', *PATHS]}")
    if time_limit is not None:
        time_limit = limits.check("time_limit", time_limit, limits.TIME_LIMIT)
    if isinstance(gap, bool) or not isinstance(gap, numbers.Real) or not 0 <= gap < 1:
        raise InputError("gap", gap, "a relative gap in [0, 1)")
    if not isinstance(log, bool):
        raise InputError("log", log, "True or False")
    if progress is not None and not isinstance(progress, bool):
        raise InputError("progress", progress, "True, False or None (as log)")
    if problem.objective is None:
        raise InputError("objective", None, "an objective", "Call p.minimize(...) first.")
    t0 = time.perf_counter()
    # decoding, pricing (evaluate) and the guard run after the path: keep them inside the limit
    reserve = 0.0 if time_limit is None else min(0.25 * time_limit,
                                                 POST_S_PER_DEVICE * problem.n_devices)
    deadline = None if time_limit is None else t0 + time_limit - reserve
    st = analyse(problem)
    if st.explained:
        raise InfeasibleError("; ".join(st.explained))
    chosen = choose_path(st) if path == "auto" else path
    way = PATHS[chosen] if path == "auto" else check_path(st, chosen)  # (auto: it accepted)
    # a path that runs no solver does not look the default backend up (1-2 ms of imports)
    be = None if backend is None and not way.solver else get_backend(backend)
    used = be.name if way.solver and be is not None else "none"
    build_s = time.perf_counter() - t0
    from splitopt.solving.progress import Progress

    shown = Progress(log if progress is None else progress)
    out = way.run(problem, st, be, deadline, gap, log, warm_start, shown)
    if out.termination == INFEASIBLE:
        from splitopt.solving.explain_global import explain_infeasible

        raise InfeasibleError(explain_infeasible(problem, st))
    if out.bound is None and out.options is not None:
        out = replace(out, bound=structural_bound(st, way))
    return _result(problem, out, chosen, way, used, build_s,
                   time.perf_counter() - t0 - build_s, gap)


def structural_bound(st: Structure, path: Path) -> float | None:
    """A bound that needs no solver: every device takes at least its fastest compute time.

    In the units of the path's objective (before weight/constant for the structural paths, the
    full objective otherwise).
    """
    if st.kind == "generic" or not st.A.size:
        return None
    least = np.where(st.allowed, st.A, np.inf).min(axis=1)
    raw = float(least.max() if st.kind == "minmax" else least.sum())
    return raw if path.structural else st.weight * raw + st.const


def _result(p: Problem, out: Result, chosen: str, path: Path, used: str, build_s: float,
            solve_s: float, gap: float = 1e-6) -> Result:
    sign = -1.0 if p.sense == "max" else 1.0
    obj, bnd = out.objective, out.bound
    if path.structural and obj is not None:
        st_w = _weight_const(p)
        obj = st_w[0] * obj + st_w[1]
        bnd = None if bnd is None else st_w[0] * bnd + st_w[1]
    plan, t0 = None, time.perf_counter()
    if out.options is not None:
        plan = decode(p, out.options, out.beta, out.phi, chosen, out.termination,
                      None if obj is None else sign * obj, None if bnd is None else sign * bnd)
    price_s = time.perf_counter() - t0
    values = {}
    if out.x is not None:
        values = {v.name: out.x[v.offset:v.offset + v.size].copy() for v in p.extras}
    if plan is not None:  # the plan records what extensions decided (recomputation, relays)
        plan = p.annotate_plan(plan, values, out.options)
    name = "outer-approximation" if chosen == "generic" and used != "conic" else chosen
    res = Result(out.termination, out.message or name, used,
                 None if obj is None else sign * obj, None if bnd is None else sign * bnd, plan,
                 build_s, solve_s, out.iterations, log=out.log, values=values,
                 options=out.options, price_s=price_s)
    if plan is None:
        return res
    check = verify_problem(p, plan, objective=res.objective, bound=res.bound, values=values,
                           options=out.options,
                           gap=gap if out.termination == OPTIMAL else None)
    return guard_result(res, check)


def _weight_const(p: Problem) -> tuple[float, float]:
    obj = p.objective
    assert obj is not None
    if len(obj.maxes) == 1:
        return obj.maxes[0][0], obj.const
    return 1.0, obj.const


def decode(p: Problem, option: np.ndarray, beta: np.ndarray | None, phi: np.ndarray | None,
           method: str, status: str, objective: float | None, bound: float | None) -> Plan:
    """A Plan from per-device options and shares, priced from the option table in arrays.

    (``pricing.price_options``; the guard re-prices it independently, see ``verify_builder``.)
    """
    from splitopt.pricing import DevicePlans, price_options

    n = p.n_devices
    option = np.asarray(option, dtype=np.int64)
    b = np.full(n, 1.0 / n) if beta is None else np.asarray(beta, dtype=float)
    f = np.asarray(phi, dtype=float) if (phi is not None and p.server_share is not None) else None
    # into [1e-12, 1], NaN to 1e-12 (fmax/fmin pass over NaN: two ufunc calls, no nan_to_num)
    b = np.fmin(np.fmax(b, 1e-12), 1.0)
    f = None if f is None else np.fmin(np.fmax(f, 1e-12), 1.0)
    names = p.scenario.device_names()
    pricing = p.pricing_scenario()
    # the server model the plan is priced under (the Problem's own flag; see pricing_scenario)
    meta = {"serving": getattr(pricing.server, "serving", "dedicated")}
    rows = DevicePlans(p.table, p.options).build(names, option, b, f)
    costs = price_options(pricing, p.options, names, option, rows.beta,  # (read-only columns)
                          rows.phi if f is not None else None,
                          float(p.scenario.training.rounds), fixed_table=True)
    return Plan(rows, rounds=p.scenario.training.rounds, status=status, objective=objective,
                bound=bound, method=method, meta=meta, predicted=costs)
