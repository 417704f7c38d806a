"""A small sparse MILP builder for formulations the declarative Problem cannot express yet.

Keep/recompute arcs per device (SmartSplit), tangent cuts of 1/beta terms (energy-delay), nested
per-tier node sets (multi-tier) and segment-to-accelerator arcs (Synergy) are built here column
by column, then frozen into the builder's :class:`splitopt.compile.program.Program` and solved by
HiGHS (:func:`solve_program`, through the builder's one HiGHS driver), so these models can be
written to MPS/LP, inspected and split across workers
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

    The one HiGHS driver of the project (:class:`splitopt.backends.highs.HighsBackend`: the whole
    CSR matrix at once, a wall-clock limit, the checks and re-solves that keep HiGHS's presolve
    from returning a wrong "optimal"). A time-limited solve returns its best point and its proven
    bound (status ``time_limit``); ``start`` is a MIP start (a full point, ignored by HiGHS
    when infeasible).
    """
    if time_limit is not None and not time_limit > 0:
        raise InputError("time_limit", time_limit, "a number of seconds > 0, or None")
    from splitopt.backends.highs import HighsBackend

    res = HighsBackend(threads=threads, full_start=True).solve_program(
        prog, time_limit=time_limit, warm_start=start, mip_gap=mip_gap)
    bound = res.bound
    if res.termination == "optimal" and res.objective is not None:
        # HiGHS's dual bound may sit a hair above the optimum; keep bound <= objective
        bound = res.objective if bound is None else min(bound, res.objective)
    return MilpResult(res.termination, res.x, res.objective, bound, res.solve_s, build_s)
