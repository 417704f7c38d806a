"""Writing a Program to a file: the linear program by HiGHS, the conic one by SCIP.

``compile/`` only makes Programs; writing one belongs to the backend that talks to the format.

* ``.mps`` / ``.lp`` of a program without cones (the outer approximation, or a pure MILP):
  written by HiGHS (:func:`splitopt.backends.highs.load_model`), as before.
* ``.cip`` (SCIP), ``.nl`` (AMPL: SCIP, Couenne, Bonmin, Knitro read it), ``.pip``, and ``.mps`` /
  ``.lp`` of a program WITH cones: the mixed-integer conic program itself, written by SCIP
  (``pip install pyscipopt``, in the ``bench`` extra). Every cone ``u >= k num^2 / den`` of a
  Program (the ``1/beta`` and ``1/phi`` terms) is the rotated second-order cone

      u * den >= k * num^2,     u >= 0, den >= 0

  a quadratic row that SCIP recognises as a second-order cone. Columns keep the Program's order
  and names (made file-safe as in the MPS/LP files), so a point of the Program is a point of the
  file. The Conic Benchmark Format (CBF) is not written: no reader for it is installed here to
  check the file against (SCIP reads it only with the SCIP-SDP plugin).

:func:`result_columns` maps a solved builder Problem's :class:`~splitopt.backends.results.Result`
to the values of the Program's own columns (one-hot options, shares, the user's extra variables),
by file column name, so a plan can be checked against the exported program: fix those columns in
any solver that read the file and solve; it must be feasible at the plan's objective.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from splitopt.compile.program import Program
from splitopt.errors import InputError, SolverError
from splitopt.io import atomic_write

if TYPE_CHECKING:
    from splitopt.backends.results import Result
    from splitopt.model.problem import Problem

#: suffixes HiGHS writes (programs without cones) and SCIP writes (any program)
LINEAR_FORMATS = (".mps", ".lp")
CONIC_FORMATS = (".cip", ".nl", ".pip", ".mps", ".lp")


def write_program(prog: Program, path: str | Path) -> None:
    """Write ``prog`` to ``path``; the suffix picks the format (see the module docstring).

    A linear program goes to HiGHS for .mps/.lp; a program with cones (or a .cip/.nl/.pip file)
    to SCIP, cones written as quadratic rows.
    """
    p = Path(path)
    if p.suffix not in CONIC_FORMATS:
        raise InputError("path", str(path), f"a file name ending in one of {list(CONIC_FORMATS)}",
                         "Use .mps/.lp for the linear program, .cip/.nl for the one with cones.")
    tmp = p.with_name(f".{p.stem}.tmp{p.suffix}")  # the writers pick the format by suffix
    try:
        if prog.is_linear and p.suffix in LINEAR_FORMATS:
            from splitopt.backends.highs import load_model

            load_model(prog, names=True).writeModel(str(tmp))
        else:
            to_scip(prog).writeProblem(str(tmp), verbose=False)
        atomic_write(p, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def file_names(prog: Program) -> list[str]:
    """The column names as written to files (letters, digits, _; unique)."""
    from splitopt.backends.highs import file_safe

    return file_safe(prog.col_names)


def to_scip(prog: Program):  # -> pyscipopt.Model
    """The program as a ``pyscipopt.Model``: linear rows, bounds, integers and cones as rows."""
    try:
        import pyscipopt
    except ImportError as e:
        raise SolverError("writing a program with cones needs pyscipopt: "
                          "pip install 'splitopt[bench]' (or pip install pyscipopt)") from e
    m = pyscipopt.Model()
    m.hideOutput()
    names, rnames = file_names(prog), file_safe_rows(prog)
    x = [m.addVar(nm, vtype="I" if prog.integrality[j] else "C",
                  lb=_bound(prog.col_lb[j]), ub=_bound(prog.col_ub[j]))
         for j, nm in enumerate(names)]
    A = prog.A.tocsr()
    for i in range(prog.n_rows):
        cols, vals = A.indices[A.indptr[i]:A.indptr[i + 1]], A.data[A.indptr[i]:A.indptr[i + 1]]
        expr = pyscipopt.quicksum(float(v) * x[j] for j, v in zip(cols, vals, strict=True))
        lo, hi = _bound(prog.row_lb[i]), _bound(prog.row_ub[i])
        if len(cols) == 0 and (lo is None or lo <= 0) and (hi is None or hi >= 0):
            continue  # an empty row that holds (a constant row SCIP would not take)
        m.addCons(_ranged(expr, lo, hi), name=rnames[i])
    for c, ((u, num, den), k) in enumerate(zip(prog.cones, prog.scales, strict=True)):
        m.addCons(x[u] * x[den] >= float(k) * x[num] * x[num], name=f"cone{c}")
    m.setObjective(pyscipopt.quicksum(float(v) * x[j] for j, v in enumerate(prog.c) if v != 0)
                   + float(prog.offset), "minimize")
    return m


def _bound(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _ranged(expr, lo: float | None, hi: float | None):
    if lo is not None and hi is not None:
        return (lo <= expr) <= hi
    return expr >= lo if lo is not None else expr <= hi


def file_safe_rows(prog: Program) -> list[str]:
    """The row names as written to files."""
    from splitopt.backends.highs import file_safe

    return file_safe(prog.row_names)


def problem_point(problem: Problem, result: Result) -> np.ndarray:
    """The Problem's own columns at a result: one-hot options, shares, the extra variables.

    The builder's Programs start with these columns (every compilation step appends), so this
    is also the head of a point of the Program. Epigraph and cone columns are left to the solver.
    """
    if result.plan is None or result.options is None:
        raise InputError("result", result.termination, "a result that carries a plan",
                         "Solve the problem first; an infeasible result has no columns.")
    n, o = problem.n_devices, problem.n_options
    x = np.zeros(problem.n_cols)
    x[np.arange(n) * o + np.asarray(result.options)] = 1.0
    devs = result.plan.devices
    x[problem.bandwidth.offset:problem.bandwidth.offset + n] = [d.bandwidth_share for d in devs]
    if problem.server_share is not None:
        x[problem.server_share.offset:problem.server_share.offset + n] = [
            d.server_share for d in devs]
    for v in problem.extras:
        x[v.offset:v.offset + v.size] = np.ravel(result.values[v.name])
    return x


def result_columns(problem: Problem, result: Result) -> dict[str, float]:
    """The values of the Program's own columns at a solved Problem's result, by file name.

    Fix these columns in a solver that read the exported file and solve: the plan is feasible
    for the exported program exactly when that solve is, at the plan's objective.
    """
    x = problem_point(problem, result)
    names = file_names(problem.compile(linear=False))[:problem.n_cols]
    return dict(zip(names, x.tolist(), strict=True))
