"""One split + bandwidth MILP handed to every solver route, each in its own process.

The instance: device k picks one (cut c, bandwidth level j) pair, z[k,c,j] binary; the levels
beta_j = j / J share one band (sum <= 1); minimise the round latency T >= T[k,c,j] for the chosen
pairs, with T[k,c,j] = A[k,c] + D[k,c] / beta_j from the reference cost model (costs.round_terms).
Every answer is re-priced from its chosen pairs (the reference model), so a route that reports
"optimal" for a wrong or infeasible point is caught.

Routes: highspy (arrays to passModel), cvxpy (HiGHS), pyomo (appsi HiGHS), SCIP (pyscipopt, from
MPS), CBC and CP-SAT (OR-Tools, from MPS). OR-Tools and some other packages cannot share a process
(docs/benchmarks.md), so each solve runs in a fresh spawned process with a wall-clock watchdog.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class GridMilp:
    """Arrays of the MILP (variables: z[k, c, j] flattened, then T last)."""

    t: np.ndarray          # (N, C, J) latency of each pair
    beta: np.ndarray       # (J,) bandwidth levels
    c: np.ndarray
    a: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    integer: np.ndarray    # bool per column

    @property
    def shape(self) -> tuple[int, int, int]:
        """(devices, cuts, levels)."""
        return self.t.shape  # type: ignore[return-value]


def grid_milp(n_devices: int, n_cuts: int = 10, levels: int = 5, seed: int = 0) -> GridMilp:
    """A split + bandwidth MILP over a random heterogeneous fleet and a random chain model."""
    from splitopt.costs import CutTable, round_terms
    from splitopt.testing import random_dag, random_scenario

    rng = np.random.default_rng(seed)
    graph = random_dag(rng, n_cuts, chain=True)
    sc = random_scenario(rng, graph, n_devices, classes=min(n_devices, 20))
    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, CutTable.chain(graph))
    beta = np.arange(1, levels + 1) / levels / max(1.0, n_devices / levels)
    t = (rt.a_dev + rt.a_srv)[:, :, None] + rt.d[:, :, None] / beta[None, None, :]
    n, cc, jj = t.shape
    nz = n * cc * jj
    ncol = nz + 1
    k_of = np.repeat(np.arange(n), cc * jj)
    # rows 0..n-1: one pair per device; row n: bandwidth; rows n+1..2n: T >= sum t z
    rows = [k_of, np.full(nz, n), n + 1 + k_of, n + 1 + np.arange(n)]
    cols = [np.arange(nz), np.arange(nz), np.arange(nz), np.full(n, nz)]
    vals = [np.ones(nz), np.tile(beta, n * cc), t.ravel(), -np.ones(n)]
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(2 * n + 1, ncol))
    row_lo = np.concatenate([np.ones(n), [-np.inf], np.full(n, -np.inf)])
    row_hi = np.concatenate([np.ones(n), [1.0], np.zeros(n)])
    c = np.zeros(ncol)
    c[-1] = 1.0
    col_hi = np.ones(ncol)
    col_hi[-1] = np.inf
    integer = np.ones(ncol, dtype=bool)
    integer[-1] = False
    return GridMilp(t, beta, c, a, row_lo, row_hi, np.zeros(ncol), col_hi, integer)


def reprice(inst: GridMilp, x: np.ndarray | None) -> tuple[float, bool]:
    """(round latency of the chosen pairs, feasible?) under the reference model."""
    if x is None:
        return float("nan"), False
    n, cc, jj = inst.shape
    z = np.asarray(x[: n * cc * jj]).reshape(n, cc, jj) > 0.5
    one_each = bool(np.all(z.sum(axis=(1, 2)) == 1))
    band_ok = float((z * inst.beta).sum()) <= 1 + 1e-9
    if not one_each:
        return float("nan"), False
    return float(inst.t[z].max()), band_ok


def program(inst: GridMilp):
    """The instance as a splitopt Program (columns named c0.., rows r0..)."""
    from splitopt.compile.program import Program

    return Program(inst.c, inst.a, inst.row_lo, inst.row_hi, inst.col_lo, inst.col_hi,
                   inst.integer.astype(np.int8), [f"c{j}" for j in range(inst.a.shape[1])],
                   [f"r{i}" for i in range(inst.a.shape[0])])


def write_mps(inst: GridMilp, path: str) -> None:
    """Write the instance as MPS (through HiGHS, as every splitopt Program)."""
    from splitopt.backends.export import write_program

    write_program(program(inst), path)


def route_highspy(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """HiGHS through highspy, the whole matrix passed at once; records the incumbent trajectory."""
    from splitopt.backends.highs import load_model

    t0 = time.perf_counter()
    h = load_model(program(inst))  # the whole CSR at once, one thread
    build = time.perf_counter() - t0
    h.setOptionValue("time_limit", float(time_limit))
    trace: list[tuple[float, float, float]] = []

    def improving(event):
        out = event.data_out
        trace.append((time.perf_counter() - t0, out.objective_function_value, out.mip_dual_bound))
    h.cbMipImprovingSolution.subscribe(improving)
    t1 = time.perf_counter()
    h.run()
    solve = time.perf_counter() - t1
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus()).lower()
    x = np.array(h.getSolution().col_value) if info.primal_solution_status else None
    return {"status": "optimal" if status == "optimal" else status, "build_s": build,
            "objective": info.objective_function_value if x is not None else None,
            "bound": info.mip_dual_bound, "x": x, "trace": trace,
            "first_feasible_s": trace[0][0] - build if trace else None, "solve_s": solve}


def route_cvxpy(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """cvxpy with HiGHS (constant data; no Parameters, see cvxpy #1332)."""
    import cvxpy as cp

    t0 = time.perf_counter()
    n_int = int(inst.integer.sum())
    z = cp.Variable(n_int, boolean=True)
    tt = cp.Variable()
    a = inst.a
    xv = cp.hstack([z, cp.reshape(tt, (1,), order="C")])
    cons = []
    eq = np.isfinite(inst.row_lo) & (inst.row_lo == inst.row_hi)
    cons.append(a[eq] @ xv == inst.row_hi[eq])
    cons.append(a[~eq] @ xv <= inst.row_hi[~eq])
    prob = cp.Problem(cp.Minimize(tt), cons)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    prob.solve(solver=cp.HIGHS, time_limit=float(time_limit))
    solve = time.perf_counter() - t1
    x = np.concatenate([z.value, [tt.value]]) if z.value is not None else None
    bound = prob.solver_stats.extra_stats.get("mip_dual_bound") if hasattr(
        prob.solver_stats.extra_stats, "get") else None
    return {"status": prob.status, "objective": prob.value if x is not None else None,
            "bound": bound, "x": x, "build_s": build, "solve_s": solve}


def route_pyomo(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """Pyomo with its appsi HiGHS interface."""
    import pyomo.environ as pyo

    t0 = time.perf_counter()
    m = pyo.ConcreteModel()
    ncol = inst.a.shape[1]
    m.x = pyo.Var(range(ncol), domain=lambda _m, i: pyo.Binary if inst.integer[i] else pyo.Reals)
    a = inst.a
    m.cons = pyo.ConstraintList()
    for r in range(a.shape[0]):
        lo, hi = a.indptr[r], a.indptr[r + 1]
        expr = sum(a.data[p] * m.x[int(a.indices[p])] for p in range(lo, hi))
        lb = None if np.isinf(inst.row_lo[r]) else inst.row_lo[r]
        m.cons.add((lb, expr, inst.row_hi[r]))
    m.obj = pyo.Objective(expr=m.x[ncol - 1], sense=pyo.minimize)
    build = time.perf_counter() - t0
    opt = pyo.SolverFactory("appsi_highs")
    opt.config.time_limit = float(time_limit)
    t1 = time.perf_counter()
    res = opt.solve(m, load_solutions=False)
    solve = time.perf_counter() - t1
    status = str(res.solver.termination_condition).lower()
    x = None
    if res.solver.status != pyo.SolverStatus.error and res.problem.upper_bound is not None:
        try:
            m.solutions.load_from(res)
            x = np.array([pyo.value(m.x[i]) for i in range(ncol)])
        except Exception:  # no incumbent to load
            x = None
    return {"status": status, "objective": pyo.value(m.obj) if x is not None else None,
            "bound": res.problem.lower_bound, "x": x, "build_s": build, "solve_s": solve}


def route_scip(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """SCIP through pyscipopt, reading the MPS file."""
    from pyscipopt import Model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mps")
        write_mps(inst, path)
        m = Model()
        m.hideOutput()
        m.readProblem(path)
        m.setParam("limits/time", float(time_limit))
        t1 = time.perf_counter()
        m.optimize()
        solve = time.perf_counter() - t1
        variables = m.getVars()
        sol = m.getBestSol() if m.getNSols() else None
        x = None
        if sol is not None:
            order = {v.name: v for v in variables}
            x = np.array([m.getSolVal(sol, order[f"c{i}"]) for i in range(inst.a.shape[1])])
        return {"status": m.getStatus(), "objective": m.getObjVal() if x is not None else None,
                "bound": m.getDualbound(), "x": x, "solve_s": solve}


def _ortools_model(inst: GridMilp):
    from ortools.linear_solver.python import model_builder as mb

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mps")
        write_mps(inst, path)
        model = mb.Model()
        model.import_from_mps_file(path)
    return model


def route_cbc(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """CBC through OR-Tools' linear solver wrapper."""
    from ortools.linear_solver import pywraplp

    proto = _ortools_model(inst).export_to_proto()
    solver = pywraplp.Solver.CreateSolver("CBC")
    solver.LoadModelFromProto(proto)
    solver.SetTimeLimit(int(time_limit * 1000))
    t1 = time.perf_counter()
    code = solver.Solve()
    solve = time.perf_counter() - t1
    names = {pywraplp.Solver.OPTIMAL: "optimal", pywraplp.Solver.FEASIBLE: "feasible",
             pywraplp.Solver.INFEASIBLE: "infeasible"}
    variables = solver.variables()
    has = code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
    x = np.array([v.solution_value() for v in variables]) if has else None
    return {"status": names.get(code, f"code{code}"),
            "objective": solver.Objective().Value() if has else None,
            "bound": solver.Objective().BestBound(), "x": x, "solve_s": solve}


def route_cpsat(inst: GridMilp, time_limit: float) -> dict[str, Any]:
    """CP-SAT through OR-Tools' model builder (it scales the real coefficients)."""
    from ortools.linear_solver.python import model_builder as mb

    model = _ortools_model(inst)
    solver = mb.Solver("cp_sat")
    solver.set_time_limit_in_seconds(float(time_limit))
    t1 = time.perf_counter()
    status = solver.solve(model)
    solve = time.perf_counter() - t1
    has = status in (mb.SolveStatus.OPTIMAL, mb.SolveStatus.FEASIBLE)
    x = np.array(solver.values(model.get_variables()).to_numpy()) if has else None
    return {"status": status.name.lower(), "objective": solver.objective_value if has else None,
            "bound": solver.best_objective_bound if has else None, "x": x, "solve_s": solve}


ROUTES = {"highspy": route_highspy, "cvxpy-highs": route_cvxpy, "pyomo-highs": route_pyomo,
          "scip": route_scip, "cbc": route_cbc, "cp-sat": route_cpsat}


def _child(route: str, n: int, seed: int, time_limit: float, queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inst = grid_milp(n, seed=seed)
    try:
        res = ROUTES[route](inst, time_limit)
        res["checked_objective"], res["feasible"] = reprice(inst, res.pop("x"))
    except Exception as err:
        res = {"status": "error", "error": f"{type(err).__name__}: {err}"[:400]}
    queue.put(res)


def solve_in_process(route: str, n: int, seed: int = 0, time_limit: float = 30.0) -> dict[str, Any]:
    """Solve the n-device instance with ``route`` in a fresh process; kill it past the limit."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(route, n, seed, time_limit, queue))
    proc.start()
    deadline = time.perf_counter() + time_limit + 60.0  # imports and model building on top
    res: dict[str, Any] | None = None
    while time.perf_counter() < deadline:
        try:
            res = queue.get(timeout=0.5)
            break
        except Exception:
            if not proc.is_alive():
                break
    if res is None:
        proc.kill()
        res = {"status": "killed", "error": "no answer before the wall-clock watchdog"}
    proc.join(timeout=5)
    obj, chk = res.get("objective"), res.get("checked_objective")
    if res.get("status") == "optimal" and not res.get("feasible"):
        res["status"] = "wrong"
        res["error"] = f"reported optimal {obj}, but the plan is infeasible when re-priced"
    elif obj is not None and chk is not None and abs(obj - chk) > 1e-6 * max(1.0, abs(chk)):
        # e.g. CP-SAT scales real coefficients to integers and reports a rounded objective
        res["objective_error"] = abs(obj - chk) / max(1e-300, abs(chk))
    if obj is not None and res.get("bound") is not None and obj:
        res["gap"] = abs(obj - res["bound"]) / abs(obj)
    return res
