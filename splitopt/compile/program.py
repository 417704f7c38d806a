"""The compiled program: inspectable arrays a solver takes.

    minimise    c @ x + offset
    subject to  row_lb <= A @ x <= row_ub,   col_lb <= x <= col_ub,   x[j] integer where
    integrality[j]
                u >= k * num**2 / den       for every cone (u, num, den) with its scale k
                                            (rotated second-order cones; k = cone_scale, 1 if
                                            not given)

A program without cones is a MILP/LP that every backend takes; cones are removed by the
outer-approximation step (tangent rows) for backends without conic support. Writing a program to
a file belongs to the backend that writes it: :func:`splitopt.backends.export.write_program`
(MPS/LP of the linear program through HiGHS; the mixed-integer conic program itself, cones
included, through SCIP: .cip, .nl, .lp, .mps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

INF = np.inf


class Names(Sequence[str]):
    """Column or row names, formatted on first read.

    A 1000-device program has 400k names (``z[dev4,7]``, ``s17``, ``oa123``) that only LP/MPS
    export and messages read: formatting them eagerly was 50 ms of a 160 ms build. A part is a
    list, or ``(count, make)`` with ``make() -> list`` of ``count`` names; ``+`` joins parts.
    """

    def __init__(self, *parts: Sequence[str] | tuple[int, Callable[[], list[str]]]):
        self._parts = tuple(p if isinstance(p, tuple) else (len(p), (lambda p=p: list(p)))
                            for p in parts)
        self._len = sum(n for n, _ in self._parts)
        self._list: list[str] | None = None

    @classmethod
    def numbered(cls, prefix: str, count: int, start: int = 0) -> Names:
        """``prefix{start}``, ``prefix{start + 1}``, ... (count names)."""
        return cls((count, lambda: [f"{prefix}{i}" for i in range(start, start + count)]))

    @classmethod
    def join(cls, *seqs: Sequence[str]) -> Names:
        """The names of several sequences in order, still unformatted where they were."""
        parts: list = []
        for s in seqs:
            parts += s._parts if isinstance(s, Names) else [(len(s), lambda s=s: list(s))]
        return cls(*parts)

    def _all(self) -> list[str]:
        if self._list is None:
            out: list[str] = []
            for n, make in self._parts:
                made = make()
                assert len(made) == n, (len(made), n)
                out += made
            self._list = out
        return self._list

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i):  # type: ignore[override]
        return self._all()[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __add__(self, other: Sequence[str]) -> Names:
        return Names.join(self, other)

    def __radd__(self, other: Sequence[str]) -> Names:
        return Names.join(other, self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Names({self._len} names)"


class Rows:
    """A block of rows of equal width, written straight into the stacked matrix.

    Row ``i`` (over the leading shape ``lead``, flattened in C order) holds the entries ``j`` of
    ``cols[..., j]`` with values ``vals[..., j]``; ``cols`` and ``vals`` broadcast to
    ``lead + (width,)`` (``vals`` may also give per entry slot ``j`` one value, an array or a
    function filling the slot's view of the stacked array). The 200k
    tangent rows of a 1000-device program are never materialised apart from the final matrix.
    """

    format = "rows"

    def __init__(self, cols: np.ndarray, vals: np.ndarray | Sequence[float | np.ndarray],
                 lead: tuple[int, ...], n_cols: int):
        self.cols, self.vals, self.lead = cols, vals, tuple(lead)
        self.width = np.shape(cols)[-1]
        self.shape = (math.prod(self.lead), n_cols)
        self.nnz = self.shape[0] * self.width

    def write(self, indices: np.ndarray, data: np.ndarray) -> None:
        """Fill ``indices`` and ``data`` (this block's slices of the stacked arrays)."""
        full = self.lead + (self.width,)
        indices.reshape(full)[...] = self.cols
        out = data.reshape(full)
        if isinstance(self.vals, (list, tuple)):
            for j, v in enumerate(self.vals):
                if callable(v):  # fills the slot itself: no temporary of the block's size
                    v(out[..., j])
                else:
                    out[..., j] = v
        else:
            out[...] = self.vals

    def tocsr(self) -> sp.csr_matrix:
        """The block as its own CSR matrix."""
        return vstack_csr([self], self.shape[1])


def csr_from_parts(n_rows: int, n_cols: int,
                   parts: Sequence[tuple[np.ndarray | int, np.ndarray, np.ndarray | float]]
                   ) -> sp.csr_matrix:
    """CSR from parts ``(row, col, val)`` whose ``row`` is nondecreasing, without a sort.

    ``row`` may be a number w: w entries in every row, in row order. Row i holds part 0's entries
    of row i, then part 1's, ... (the order a COO build would keep before sorting); duplicates are
    not summed. Counting instead of scipy's COO conversion, which sorts and checks every entry;
    parts with the same count in every row are written as slices.
    """
    counts = [np.full(n_rows, r, dtype=np.int64) if isinstance(r, int)
              else np.bincount(r, minlength=n_rows) for r, _, _ in parts]
    regular = all(len(c) == 0 or (c == c[0]).all() for c in counts)
    per_row = np.sum(counts, axis=0) if counts else np.zeros(n_rows, np.int64)
    nnz = int(per_row.sum())
    idx = _index_dtype(nnz, n_cols)
    indices, data = np.empty(nnz, dtype=idx), np.empty(nnz)
    indptr = np.zeros(n_rows + 1, dtype=idx)
    np.cumsum(per_row, out=indptr[1:])
    if regular and n_rows:  # row i's part p fills the slice [off_p, off_p + w_p) of its row
        width, off = nnz // n_rows, 0
        for (_, cols, vals), cnt in zip(parts, counts):
            w = int(cnt[0])
            indices.reshape(n_rows, width)[:, off:off + w] = np.reshape(cols, (n_rows, w))
            data.reshape(n_rows, width)[:, off:off + w] = (
                vals if np.ndim(vals) == 0 else np.reshape(vals, (n_rows, w)))
            off += w
    else:
        base = indptr[:-1].astype(np.int64)
        for (rows, cols, vals), cnt in zip(parts, counts):
            if isinstance(rows, int):
                rows = np.repeat(np.arange(n_rows), rows)
            first = np.cumsum(cnt) - cnt  # where row i starts within this part
            pos = base[rows] + (np.arange(len(rows)) - first[rows])
            indices[pos], data[pos] = cols, vals
            base += cnt
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def _index_dtype(nnz: int, n_cols: int) -> type:
    return np.int32 if max(nnz, n_cols) < 2**31 - 1 else np.int64


def vstack_csr(blocks: Sequence[sp.spmatrix | Rows], n_cols: int) -> sp.csr_matrix:
    """Stack CSR blocks and :class:`Rows` (any column count up to ``n_cols``) into one CSR.

    The stacked arrays are allocated once and each block is written into its slice (``sp.vstack``
    checks and up-casts each block's index arrays: 17 ms of a 55 ms 1000-device build; a copy per
    step cost as much again in fresh memory); int32 indices (HiGHS takes int32).
    """
    mats = [b if b.format in ("csr", "rows") else b.tocsr() for b in blocks]
    nnz = sum(int(b.nnz) for b in mats)
    n_rows = sum(b.shape[0] for b in mats)
    idx = _index_dtype(nnz, n_cols)
    indptr, indices, data = np.empty(n_rows + 1, idx), np.empty(nnz, idx), np.empty(nnz)
    indptr[0] = r = s = 0
    for b in mats:
        m, e = b.shape[0], s + int(b.nnz)
        if isinstance(b, Rows):
            b.write(indices[s:e], data[s:e])
            ends = indptr[r + 1:r + m + 1]
            np.multiply(np.arange(1, m + 1, dtype=idx), b.width, out=ends)
            ends += s
        else:
            indices[s:e], data[s:e] = b.indices[:b.nnz], b.data[:b.nnz]
            np.add(b.indptr[1:], s, out=indptr[r + 1:r + m + 1], casting="unsafe")
        r, s = r + m, e
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def stack_bounds(parts: Sequence[tuple[int, float | np.ndarray]]) -> np.ndarray:
    """One array of ``(count, value or array)`` parts (row bounds of stacked blocks)."""
    out = np.empty(sum(n for n, _ in parts))
    s = 0
    for n, v in parts:
        out[s:s + n] = v
        s += n
    return out


@dataclass(frozen=True)
class Program:
    """A MILP/LP, optionally with rotated cones ``u >= k num^2 / den`` (see module docstring).

    ``cone_scale`` (k > 0 per cone) lets ``u`` carry the term's own units (seconds, joules) rather
    than 1/share: the tangents' coefficients then stay in a solver's range at tiny shares.
    """

    c: np.ndarray
    A: sp.csr_matrix
    row_lb: np.ndarray
    row_ub: np.ndarray
    col_lb: np.ndarray
    col_ub: np.ndarray
    integrality: np.ndarray
    col_names: Sequence[str]  # a list or lazily formatted Names
    row_names: Sequence[str]
    offset: float = 0.0
    cones: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    cone_scale: np.ndarray | None = None
    #: the share column each cone's ``den`` is a part of (Perspective's ``s[k,o] <= share_k``
    #: split), or None: tangents at a plan's shares are placed by it
    cone_share: np.ndarray | None = None

    @property
    def scales(self) -> np.ndarray:
        """The scale k of every cone (ones when none was given)."""
        if self.cone_scale is None:
            return np.ones(len(self.cones))
        return np.asarray(self.cone_scale, dtype=float)

    @property
    def n_cols(self) -> int:
        """Number of columns (variables)."""
        return len(self.c)

    @property
    def n_rows(self) -> int:
        """Number of linear rows."""
        return self.A.shape[0]

    @property
    def is_mip(self) -> bool:
        """True when some column is integer."""
        return bool(self.integrality.any())

    @property
    def is_linear(self) -> bool:
        """True when there is no cone."""
        return len(self.cones) == 0

    def objective(self, x: np.ndarray) -> float:
        """C @ x + offset."""
        return float(self.c @ x + self.offset)

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of a row, column bound or cone at x (absolute)."""
        ax = self.A @ x
        v = [np.max(self.row_lb - ax, initial=0.0), np.max(ax - self.row_ub, initial=0.0),
             np.max(self.col_lb - x, initial=0.0), np.max(x - self.col_ub, initial=0.0)]
        if len(self.cones):
            u, num, den = (x[self.cones[:, i]] for i in range(3))
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.where(num == 0, 0.0, self.scales * num**2 / np.maximum(den, 0.0))
            v.append(float(np.max(need - u, initial=0.0)))
        return float(max(v))

    def add_rows(self, rows: sp.csr_matrix | Rows, lb: float | np.ndarray,
                 ub: float | np.ndarray, names: Sequence[str] | None = None) -> Program:
        """A copy with rows appended (bounds: arrays, or one value for every new row)."""
        m = rows.shape[0]
        if names is None:
            names = Names.numbered("r", m, self.n_rows)
        return replace(self, A=vstack_csr([self.A, rows], self.n_cols),
                       row_lb=stack_bounds([(self.n_rows, self.row_lb), (m, lb)]),
                       row_ub=stack_bounds([(self.n_rows, self.row_ub), (m, ub)]),
                       row_names=Names.join(self.row_names, names))

    def summary(self) -> str:
        """One line: size and kind."""
        kind = ("MI" if self.is_mip else "") + ("SOCP" if len(self.cones) else "LP")
        return (f"{kind}: {self.n_cols} columns ({int(self.integrality.sum())} integer), "
                f"{self.n_rows} rows, {self.A.nnz} nonzeros, {len(self.cones)} cones")
