"""A small sparse MILP builder for formulations the declarative Problem cannot express yet.

Keep/recompute arcs per device (SmartSplit), tangent cuts of 1/beta terms (energy-delay), nested
per-tier node sets (multi-tier) and segment-to-accelerator arcs (Synergy) are built here column
by column, then frozen into the builder's :class:`splitopt.compile.program.Program` and solved by
HiGHS (:func:`solve_program`, a lean copy of the builder's HiGHS path that worker processes can
import cheaply), so these models can be written to MPS/LP, inspected and split across workers
(:mod:`splitopt.parallel.split`) like any other program.

Example:
-------
>>> m = MilpBuilder()
>>> x = m.add_vars(3, ub=1, integer=True, name="x")
>>> m.add_row({int(x[0]): 1.0, int(x[1]): 1.0}, ub=1)
>>> m.minimize({int(x[0]): -1.0, int(x[2]): -2.0})
>>> res = solve_program(m.program())

"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from splitopt.errors import InputError

INF = np.inf


class MilpBuilder:
    """Accumulates columns and rows (COO triplets); :meth:`program` freezes them into a Program."""

    def __init__(self) -> None:
        self._lb: list[float] = []
        self._ub: list[float] = []
        self._int: list[bool] = []
        self._names: list[str] = []
        self._rows: list[int] = []
        self._cols: list[int] = []
        self._vals: list[float] = []
        self._rlb: list[float] = []
        self._rub: list[float] = []
        self._rnames: list[str] = []
        self._c: dict[int, float] = {}
        self.offset = 0.0

    @property
    def n_cols(self) -> int:
        """Columns so far."""
        return len(self._lb)

    @property
    def n_rows(self) -> int:
        """Rows so far."""
        return len(self._rlb)

    def add_vars(self, n: int, *, lb: float = 0.0, ub: float = INF, integer: bool = False,
                 name: str = "x") -> np.ndarray:
        """Add ``n`` columns with the same bounds; return their indices."""
        start = self.n_cols
        self._lb += [float(lb)] * n
        self._ub += [float(ub)] * n
        self._int += [bool(integer)] * n
        self._names += [f"{name}[{i}]" for i in range(n)]
        return np.arange(start, start + n)

    def add_row(self, coefs: Mapping[int, float], *, lb: float = -INF, ub: float = INF,
                name: str = "") -> int:
        """Add ``lb <= sum coefs[j] x[j] <= ub``; return the row index."""
        r = self.n_rows
        for j, v in coefs.items():
            if v != 0.0:
                self._rows.append(r)
                self._cols.append(int(j))
                self._vals.append(float(v))
        self._rlb.append(float(lb))
        self._rub.append(float(ub))
        self._rnames.append(name or f"r{r}")
        return r

    def add_terms(self, cols: Sequence[int] | np.ndarray, vals: Sequence[float] | np.ndarray, *,
                  lb: float = -INF, ub: float = INF, name: str = "") -> int:
        """Like :meth:`add_row` from parallel arrays (repeated columns are summed)."""
        r = self.n_rows
        self._rows += [r] * len(cols)
        self._cols += [int(j) for j in cols]
        self._vals += [float(v) for v in vals]
        self._rlb.append(float(lb))
        self._rub.append(float(ub))
        self._rnames.append(name or f"r{r}")
        return r

    def set_bounds(self, cols: Sequence[int] | np.ndarray, lb: float | None = None,
                   ub: float | None = None) -> None:
        """Tighten column bounds (fixing a column: lb = ub)."""
        for j in cols:
            if lb is not None:
                self._lb[int(j)] = float(lb)
            if ub is not None:
                self._ub[int(j)] = float(ub)

    def minimize(self, coefs: Mapping[int, float], offset: float = 0.0) -> None:
        """Set the (linear) objective to minimise, replacing any previous one."""
        self._c = {int(j): float(v) for j, v in coefs.items()}
        self.offset = float(offset)

    def program(self):  # -> splitopt.compile.program.Program
        """The accumulated model as the builder's inspectable Program."""
        from splitopt.compile.program import Program

        n = self.n_cols
        c = np.zeros(n)
        for j, v in self._c.items():
            c[j] += v
        A = sp.csr_matrix((self._vals, (self._rows, self._cols)), shape=(self.n_rows, n))
        A.sum_duplicates()
        return Program(c=c, A=A, row_lb=np.array(self._rlb, dtype=float),
                       row_ub=np.array(self._rub, dtype=float), col_lb=np.array(self._lb),
                       col_ub=np.array(self._ub), integrality=np.array(self._int, dtype=bool),
                       col_names=list(self._names), row_names=list(self._rnames),
                       offset=self.offset)


@dataclass(frozen=True)
class MilpResult:
    """Why the solver stopped (``status``), what it found (``x``, ``objective``) and its ``bound``.

    Minimisation throughout: ``bound <= optimum <= objective``.
    """

    status: str
    x: np.ndarray | None
    objective: float | None
    bound: float | None
    solve_s: float
    build_s: float = 0.0

    @property
    def gap(self) -> float | None:
        """Relative gap |objective - bound| / max(|objective|, 1e-9); None without both."""
        if self.objective is None or self.bound is None:
            return None
        return abs(self.objective - self.bound) / max(abs(self.objective), 1e-9)


def solve_program(prog, *, time_limit: float | None = None, mip_gap: float = 1e-9,
                  build_s: float = 0.0, threads: int = 1,
                  start: np.ndarray | None = None) -> MilpResult:
    """Solve a Program's linear part with HiGHS (``threads`` HiGHS threads; one in workers).

    The whole CSR matrix goes to ``Highs.passModel`` at once. A time-limited solve returns its best
    point and its proven bound (status ``time_limit``); ``start`` is a MIP start (a full point,
    ignored by HiGHS when infeasible). This is a lean copy of the builder's HiGHS
    path so that worker processes import nothing but highspy, numpy and this module.
    """
    if time_limit is not None and not time_limit > 0:
        raise InputError("time_limit", time_limit, "a number of seconds > 0, or None")
    import highspy

    t0 = time.perf_counter()
    h = highspy.Highs()
    for key, val in (("output_flag", False), ("threads", int(threads)), ("mip_rel_gap", mip_gap),
                     ("mip_abs_gap", 0.0),
                     ("mip_feasibility_tolerance", 1e-9),
                     ("primal_feasibility_tolerance", 1e-9)):
        h.setOptionValue(key, val)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    inf = h.getInfinity()
    A = prog.A.tocsc()
    integ = np.asarray(prog.integrality, dtype=np.int32)  # 0 = continuous
    h.passModel(prog.n_cols, prog.n_rows, int(A.nnz), 1, 1, float(prog.offset),
                np.ascontiguousarray(prog.c, dtype=float),
                *(np.clip(np.asarray(a, float), -inf, inf)
                  for a in (prog.col_lb, prog.col_ub, prog.row_lb, prog.row_ub)),
                A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data.astype(float),
                integ)  # type: ignore[call-overload]
    if start is not None:
        idx = np.arange(prog.n_cols, dtype=np.int32)
        h.setSolution(len(idx), idx, np.asarray(start, dtype=float))
    cancelled = _run_watched(h, time_limit)
    res = _read(h, prog, time.perf_counter() - t0, build_s)
    if cancelled and res.status == "error":
        res = MilpResult("time_limit", res.x, res.objective, res.bound, res.solve_s, build_s)
    return res


def _run_watched(h, time_limit: float | None, grace_s: float = 0.05) -> bool:
    """Run HiGHS; past ``time_limit`` (+ grace) of wall clock, cancel it. True if cancelled.

    HiGHS checks its own ``time_limit`` only now and then (in presolve, between nodes); the wall
    clock is the limit the user asked for (as in the builder's HiGHS backend).
    """
    if time_limit is None:
        h.run()
        return False
    h.HandleUserInterrupt = True
    thread = h.startSolve()
    thread.join(float(time_limit) + grace_s)
    if thread.is_alive():
        h.cancelSolve()
        thread.join()
        return True
    h.joinSolve(thread)
    return False


def _read(h, prog, seconds: float, build_s: float) -> MilpResult:
    import highspy

    M = highspy.HighsModelStatus
    ms, info = h.getModelStatus(), h.getInfo()
    has_x = info.primal_solution_status == 2
    x = np.array(h.getSolution().col_value) if has_x else None
    obj = float(info.objective_function_value) if has_x else None
    bound = float(info.mip_dual_bound) if prog.is_mip else obj
    if ms == M.kOptimal:
        status = "optimal"
        # HiGHS's dual bound may sit a hair above the optimum; keep bound <= objective
        if obj is not None:
            bound = obj if bound is None or not np.isfinite(bound) else min(bound, obj)
    elif ms in (M.kTimeLimit, M.kInterrupt):
        status = "time_limit"
    elif ms == M.kInfeasible:
        status, bound = "infeasible", None
    elif ms in (M.kUnbounded, M.kUnboundedOrInfeasible):
        status = "unbounded"
    else:
        status = "error"
    if bound is not None and not np.isfinite(bound):
        bound = None
    return MilpResult(status, x, obj, bound, seconds, build_s)
