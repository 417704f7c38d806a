"""Builder benchmark: build + solve time of min-max round latency (cuts + bandwidth shares).

Methods, on N devices x 50 candidate cuts of a random 49-layer chain (splitopt.testing):

- ``builder-fast``: Problem + solve(): the structured exact path (bisection, no MILP).
- ``builder-oa``: Problem + solve(path="generic"): the generic exact route (outer approximation,
  cut generation until the gap is 1e-6, or the time limit).
- ``builder-milp``: Problem + compile to the generic Program (one-hot, epigraph, perspective,
  4 tangents per cone) handed to HiGHS as CSR arrays; one MILP solve (a lower bound: the first
  iterate of the outer approximation, which then needs more rounds of cuts to close the gap).
- ``cvxpy-milp``: the same MILP written directly in cvxpy (constant data, no Parameters),
  compiled with get_problem_data and solved by HiGHS through cvxpy.
- ``pyomo-milp``: the same MILP written directly in pyomo, solved by its appsi HiGHS interface.

Every build time includes pricing the options from the reference cost model (round_terms);
builder-fast's solve time excludes re-pricing the plan with plan.evaluate (``price_s``, reported).
Run: ``python -m splitopt.benchmarks.builder [--quick]`` (prints rows and ratios).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

SHARES = (1.0, 0.25, 0.05, 0.01)  # tangent points, as splitopt's OuterApproximation step


def instance(n: int, cuts: int = 50, seed: int = 0) -> Any:
    """A random scenario: n heterogeneous devices, a chain with ``cuts`` candidate cuts."""
    from splitopt.testing import random_dag, random_scenario

    rng = np.random.default_rng(seed)
    return random_scenario(rng, random_dag(rng, cuts - 1, chain=True), n)


def _terms(sc: Any) -> tuple[np.ndarray, np.ndarray]:
    from splitopt.costs import CutTable, round_terms

    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, CutTable.chain(sc.graph))
    return rt.a_dev + rt.a_srv, rt.d


def builder_fast(sc: Any, time_limit: float) -> dict[str, Any]:
    """The structured exact path."""
    from splitopt import Problem

    t0 = time.perf_counter()
    p = Problem(sc, server_share=False)  # as the cvxpy/pyomo MILPs: the server at full speed
    p.minimize(p.round_latency())
    t1 = time.perf_counter()
    r = p.solve(time_limit=time_limit)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "solve_s": t2 - t1 - r.price_s, "price_s": r.price_s,
            "objective": r.objective, "bound": r.bound, "status": r.termination, "path": r.path}


def builder_milp(sc: Any, time_limit: float) -> dict[str, Any]:
    """The builder's generic Program, one MILP on HiGHS."""
    from splitopt import Problem
    from splitopt.backends import get_backend

    t0 = time.perf_counter()
    p = Problem(sc, server_share=False)  # as the cvxpy/pyomo MILPs: the server at full speed
    p.minimize(p.round_latency())
    prog = p.compile()
    t1 = time.perf_counter()
    r = get_backend("highs").solve_program(prog, time_limit=time_limit, mip_gap=1e-6)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "objective": r.objective, "bound": r.bound,
            "status": r.termination, "rows": prog.n_rows, "cols": prog.n_cols}


def builder_oa(sc: Any, time_limit: float) -> dict[str, Any]:
    """The builder's generic exact route: outer approximation with cut generation to gap 1e-6."""
    from splitopt import Problem

    t0 = time.perf_counter()
    p = Problem(sc, server_share=False)  # as the cvxpy/pyomo MILPs: the server at full speed
    p.minimize(p.round_latency())
    r = p.solve(path="generic", time_limit=time_limit)
    t2 = time.perf_counter()
    return {"build_s": r.build_s, "solve_s": t2 - t0 - r.build_s - r.price_s,
            "objective": r.objective, "bound": r.bound, "status": r.termination,
            "iterations": r.iterations}


def cvxpy_milp(sc: Any, time_limit: float) -> dict[str, Any]:
    """The same MILP written directly in cvxpy."""
    import cvxpy as cp

    t0 = time.perf_counter()
    A, D = _terms(sc)
    n, c = A.shape
    z = cp.Variable((n, c), boolean=True)
    s, u = cp.Variable((n, c), nonneg=True), cp.Variable((n, c), nonneg=True)
    beta, t = cp.Variable(n, nonneg=True), cp.Variable()
    cons = [cp.sum(z, axis=1) == 1, s <= z, cp.sum(s, axis=1) <= beta, cp.sum(beta) <= 1,
            t >= cp.sum(cp.multiply(A, z), axis=1) + cp.sum(cp.multiply(D, u), axis=1)]
    cons += [u >= 2 * r * z - r * r * s for r in (1.0 / np.array(SHARES))]
    prob = cp.Problem(cp.Minimize(t), cons)
    prob.get_problem_data(cp.HIGHS)
    t1 = time.perf_counter()
    with warnings.catch_warnings():  # "may be inaccurate" at a time limit: the status says it
        warnings.simplefilter("ignore")
        prob.solve(solver=cp.HIGHS, time_limit=time_limit, mip_rel_gap=1e-6)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "objective": prob.value,
            "status": prob.status}


def pyomo_milp(sc: Any, time_limit: float) -> dict[str, Any]:
    """The same MILP written directly in pyomo (appsi HiGHS)."""
    import pyomo.environ as pyo
    from pyomo.contrib.appsi.solvers import Highs

    from splitopt.backends.highs import silence_banner

    t0 = time.perf_counter()
    A, D = _terms(sc)
    n, c = A.shape
    m = pyo.ConcreteModel()
    m.K, m.C = pyo.RangeSet(0, n - 1), pyo.RangeSet(0, c - 1)
    m.z = pyo.Var(m.K, m.C, domain=pyo.Binary)
    m.s = pyo.Var(m.K, m.C, domain=pyo.NonNegativeReals)
    m.u = pyo.Var(m.K, m.C, domain=pyo.NonNegativeReals)
    m.beta = pyo.Var(m.K, domain=pyo.NonNegativeReals)
    m.t = pyo.Var()
    m.one = pyo.Constraint(m.K, rule=lambda m, k: sum(m.z[k, j] for j in m.C) == 1)
    m.sz = pyo.Constraint(m.K, m.C, rule=lambda m, k, j: m.s[k, j] <= m.z[k, j])
    m.split = pyo.Constraint(m.K, rule=lambda m, k: sum(m.s[k, j] for j in m.C) <= m.beta[k])
    m.budget = pyo.Constraint(expr=sum(m.beta[k] for k in m.K) <= 1)
    m.epi = pyo.Constraint(m.K, rule=lambda m, k: m.t >= sum(
        float(A[k, j]) * m.z[k, j] + float(D[k, j]) * m.u[k, j] for j in m.C))
    m.R = pyo.RangeSet(0, len(SHARES) - 1)
    ratios = 1.0 / np.array(SHARES)
    m.tan = pyo.Constraint(m.K, m.C, m.R, rule=lambda m, k, j, i: m.u[k, j] >= 2 * float(
        ratios[i]) * m.z[k, j] - float(ratios[i]) ** 2 * m.s[k, j])
    m.obj = pyo.Objective(expr=m.t)
    t1 = time.perf_counter()
    silence_banner()
    solver = Highs()
    solver.config.time_limit = time_limit
    solver.config.mip_gap = 1e-6
    solver.config.load_solution = False
    res = solver.solve(m)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "objective": res.best_feasible_objective,
            "bound": res.best_objective_bound, "status": str(res.termination_condition)}


METHODS = {"builder-fast": builder_fast, "builder-oa": builder_oa, "builder-milp": builder_milp,
           "cvxpy-milp": cvxpy_milp, "pyomo-milp": pyomo_milp}


def run(sizes: Sequence[int] = (10, 100, 1000), quick: bool = False, *,
        time_limit: float | None = None, fast_only_above: int = 1000) -> list[dict[str, Any]]:
    """Rows (one per size x method) of build and solve seconds; MILP routes up to
    ``fast_only_above`` devices (the structured path runs at every size)."""
    limit = time_limit if time_limit is not None else (10.0 if quick else 60.0)
    warm = instance(3, cuts=5)  # imports and first-call costs are paid here, not in a row
    for fn in METHODS.values():
        fn(warm, limit)
    rows = []
    for n in sizes:
        sc = instance(n)
        for name, fn in METHODS.items():
            if name != "builder-fast" and n > fast_only_above:
                continue
            row = {"family": "builder", "instance": f"N{n}xC50", "n": n, "method": name,
                   **fn(sc, limit)}
            row["total_s"] = row["build_s"] + row["solve_s"]
            rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Lines comparing each size's methods with builder-milp (build) and builder-fast (total)."""
    out = []
    for n in sorted({r["n"] for r in rows}):
        by = {r["method"]: r for r in rows if r["n"] == n}
        fast, milp = by.get("builder-fast"), by.get("builder-milp")
        for other in ("cvxpy-milp", "pyomo-milp"):
            if milp and other in by:
                out.append(f"N={n}: {other} build / builder-milp build = "
                           f"{by[other]['build_s'] / milp['build_s']:.1f}x")
        for other in ("builder-oa", "builder-milp", "cvxpy-milp", "pyomo-milp"):
            if fast and other in by:
                out.append(f"N={n}: {other} total / builder-fast total = "
                           f"{by[other]['total_s'] / fast['total_s']:.0f}x "
                           f"({by[other]['status']})")
    return out


def time_limits(sizes: Sequence[int] = (10, 100, 1000),
                limits: Sequence[float] = (1.0, 3.0)) -> list[dict[str, Any]]:
    """Wall clock of the generic path against its ``time_limit`` (with and without server
    shares), after one warm-up solve per problem (imports, caches)."""
    from splitopt import Problem

    rows = []
    for n in sizes:
        sc = instance(n)
        for shared in (False, True):
            p = Problem(sc, server_share=shared)
            p.minimize(p.round_latency())
            p.solve(path="generic", time_limit=0.5)
            for lim in limits:
                t0 = time.perf_counter()
                r = p.solve(path="generic", time_limit=lim)
                wall = time.perf_counter() - t0
                rows.append({"devices": n, "server_share": shared, "limit_s": lim,
                             "wall_s": wall, "ratio": wall / lim, "status": r.termination})
    return rows


def raw_pass_model(prog: Any) -> Any:
    """The anchor: a bare ``highspy`` ``passModel`` of a finished matrix (CSC, int32, clipped)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = h.getInfinity()
    A, clip = prog.A.tocsc(), (lambda a: np.clip(a, -inf, inf))  # noqa: E731
    h.passModel(prog.n_cols, prog.n_rows, int(A.nnz), 1, 1, float(prog.offset), prog.c,
                clip(prog.col_lb), clip(prog.col_ub), clip(prog.row_lb), clip(prog.row_ub),
                A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data,
                prog.integrality.astype(np.int32))
    return h


def build_vs_pass_model(sizes: Sequence[int] = (1000,), repeats: int = 7) -> list[dict[str, Any]]:
    """Issue 15, generic MILP build: Problem + compile + HiGHS load (``load_model``) against a raw
    ``passModel`` of the same matrix built beforehand; CPU time, interleaved repeats.

    Both sides include freeing what they made (the HiGHS object; ours also the Problem and the
    Program). ``problem_s``, ``compile_s``, ``load_s``: medians of ours' phases in the same calls.
    """
    import gc
    import statistics

    from splitopt import Problem
    from splitopt.backends.highs import load_model, silence_banner

    silence_banner()
    rows = []
    for n in sizes:
        sc = instance(n)
        phases: list[tuple[float, float, float]] = []

        def ours(sc: Any = sc, phases: list = phases) -> Any:
            t0 = time.process_time()
            p = Problem(sc, server_share=False)
            p.minimize(p.round_latency())
            t1 = time.process_time()
            prog = p.compile()
            t2 = time.process_time()
            h = load_model(prog)
            phases.append((t1 - t0, t2 - t1, time.process_time() - t2))
            return h

        p = Problem(sc, server_share=False)
        p.minimize(p.round_latency())
        prog = p.compile()
        ours(), raw_pass_model(prog)  # first calls outside the timing
        phases.clear()
        t_ours, t_raw = [], []
        for _ in range(repeats):
            for fn, out in ((partial(raw_pass_model, prog), t_raw), (ours, t_ours)):
                gc.collect()
                t0 = time.process_time()
                fn()
                out.append(time.process_time() - t0)
        r = [a / b for a, b in zip(t_ours, t_raw)]
        split = {f"{k}_s": statistics.median(v) for k, v in
                 zip(("problem", "compile", "load"), zip(*phases))}
        rows.append({"devices": n, "rows": prog.n_rows, "cols": prog.n_cols,
                     "nnz": int(prog.A.nnz), "ours_s": statistics.median(t_ours),
                     "pass_model_s": statistics.median(t_raw), "ratio_median": statistics.median(r),
                     "ratio_min": min(r), "ratio_max": max(r), **split})
    return rows


def generic_energy(sizes: Sequence[int] = (10, 100), time_limit: float = 60.0,
                   progress: bool = True, baseline: bool = False) -> list[dict[str, Any]]:
    """Issue 15, generic exact path: min total energy s.t. round latency <= 1.5 x its least value,
    FL mode allowed (no structured path takes it), N devices x 50 cuts; wall clock.

    The generic path takes it by the share-budget dual (``path`` reads ``lagrangian``); with
    ``baseline`` the same Problem also goes through the outer-approximation route (the dual
    switched off, ``solve_generic(..., lagrangian=False)``, the route before it) in the same run.
    """
    rows = []
    for n in sizes:
        p = energy_problem(n)
        t0 = time.perf_counter()
        r = p.solve(time_limit=time_limit, progress=progress)
        rows.append({"devices": n, "status": r.termination, "path": r.path,
                     "objective": r.objective, "bound": r.bound, "gap": r.gap,
                     "rounds": r.iterations, "wall_s": time.perf_counter() - t0})
        if baseline:
            rows.append(outer_approximation_row(p, n, time_limit, progress))
    return rows


def energy_problem(n: int) -> Any:
    """Min total energy s.t. round latency <= 1.5 x its least value, FL mode allowed, n devices."""
    from splitopt import Problem

    sc = instance(n)
    q = Problem(sc, modes=True)
    q.minimize(q.round_latency())
    least = q.solve().objective
    p = Problem(sc, modes=True)
    p.add(p.round_latency() <= 1.5 * least, name="deadline")
    p.minimize(p.total_energy())
    return p


def outer_approximation_row(p: Any, n: int, time_limit: float, progress: bool) -> dict[str, Any]:
    """The generic path's outer-approximation route on p (the share-budget dual off)."""
    from splitopt.backends import get_backend
    from splitopt.solving.generic import solve_generic
    from splitopt.solving.progress import Progress

    t0 = time.perf_counter()
    r = solve_generic(p, get_backend("highs"), deadline=t0 + time_limit, gap=1e-6, log=False,
                      progress=Progress(progress), lagrangian=False)
    return {"devices": n, "status": r.termination, "path": "outer-approximation (baseline)",
            "objective": r.objective, "bound": r.bound, "gap": r.gap, "rounds": r.iterations,
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    """Command line: print the rows and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--time-limits", type=float, nargs="*", default=None,
                    help="only measure the generic path's wall clock against these limits")
    ap.add_argument("--build-vs-passmodel", action="store_true",
                    help="only time the generic MILP build against a raw highspy passModel")
    ap.add_argument("--generic-energy", action="store_true",
                    help="only the generic exact path on min energy s.t. a round deadline")
    ap.add_argument("--baseline", action="store_true",
                    help="with --generic-energy: the outer-approximation route beside it")
    args = ap.parse_args()
    if args.generic_energy:
        for r in generic_energy(args.sizes or (10, 100), args.time_limit or 60.0,
                                baseline=args.baseline):
            print(" ".join(f"{k}={v:.8g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r.items()))
        return
    if args.build_vs_passmodel:
        for r in build_vs_pass_model(args.sizes or (1000,)):
            print(f"{r['devices']:>6} devices  {r['rows']} rows x {r['cols']} cols, nnz "
                  f"{r['nnz']}: build+load {r['ours_s']:.4f} s, raw passModel "
                  f"{r['pass_model_s']:.4f} s, ratio {r['ratio_median']:.2f} "
                  f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]  (Problem "
                  f"{1e3 * r['problem_s']:.1f} ms, compile {1e3 * r['compile_s']:.1f} ms, load "
                  f"{1e3 * r['load_s']:.1f} ms)")
        return
    if args.time_limits is not None:
        for r in time_limits(args.sizes or (10, 100, 1000), args.time_limits or (1.0, 3.0)):
            print(f"{r['devices']:>6} devices  server shares {r['server_share']!s:>5}  limit "
                  f"{r['limit_s']:4.1f} s  wall {r['wall_s']:6.2f} s  ({r['ratio']:.3f}x)  "
                  f"{r['status']}")
        return
    sizes = args.sizes or ([10, 100] if args.quick else [10, 100, 1000, 10000])
    rows = run(sizes, args.quick, time_limit=args.time_limit)
    for r in rows:
        obj = r.get("objective")
        price = f"  (+ price {r['price_s']:.3f} s)" if "price_s" in r else ""
        print(f"{r['instance']:>10} {r['method']:>13}  build {r['build_s']:8.3f} s  solve "
              f"{r['solve_s']:8.3f} s  status {r['status']!s:>12}  objective "
              f"{obj if obj is None else f'{obj:.6g}'}{price}")
    print("\n".join(ratios(rows)))


if __name__ == "__main__":
    main()
