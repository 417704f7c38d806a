"""A small sparse column builder for models the declarative Problem cannot express yet.

Keep/recompute arcs per device (SmartSplit), tangent cuts of 1/beta terms (energy-delay), nested
per-tier node sets (multi-tier) and segment-to-accelerator arcs (Synergy) are built here column
by column, then frozen into the builder's :class:`splitopt.compile.program.Program`, so these
models are solved by a backend (:func:`splitopt.parallel.solve_program`: HiGHS), written to
files (:func:`splitopt.backends.export.write_program`), inspected and split across workers
(:mod:`splitopt.parallel.split`) like any other program. Like the rest of ``compile/``, it
solves nothing.

Example:
-------
>>> m = MilpBuilder()
>>> x = m.add_vars(3, ub=1, integer=True, name="x")
>>> m.add_row({int(x[0]): 1.0, int(x[1]): 1.0}, ub=1)
0
>>> m.minimize({int(x[0]): -1.0, int(x[2]): -2.0})
>>> m.program().summary()
'MILP: 3 columns (3 integer), 1 rows, 2 nonzeros, 0 cones'

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from splitopt.compile.program import Program

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

    def program(self) -> Program:
        """The accumulated model as the builder's inspectable Program."""
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
