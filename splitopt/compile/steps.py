"""Small reversible compilation steps: Problem -> Model -> ... -> Program.

Every step appends columns and rows and never renumbers earlier columns, so its inverse maps a
solution back by truncation to the columns it received (``Step.invert``). A :class:`Chain` of steps
is itself a step. The steps, in order (equations in docs/builder.md):

1. :class:`Lower`: one-hot rows ``sum_o z[k,o] = 1``, share budgets ``sum_k beta_k <= 1`` (and phi),
   removed options as ``z <= 0``; shares fixed by the user turn ``d z / beta`` into linear terms.
2. :class:`EpigraphMax`: ``w * max_j e_j`` becomes ``w * t`` with rows ``e_j - t <= 0``; a
constraint
   ``max_j e_j <= b`` becomes the rows ``e_j <= b``.
3. :class:`Perspective`: each ``d * z[k,o] / beta_k`` becomes ``d * u[k,o]`` with a disaggregated
share
   ``s[k,o] <= z[k,o]``, ``sum_o s[k,o] <= beta_k`` and the rotated cone ``u[k,o] >= z^2 / s[k,o]``
   (exact: the perspective of 1/beta; for z = 0 it forces s = 0 and allows u = 0).
4. :class:`ToMatrix`: affine rows to CSR arrays (a :class:`Program`).
5. :class:`~splitopt.compile.tangents.OuterApproximation` (``compile/tangents.py``): each cone
   ``u >= z^2/s`` is replaced by tangent rows ``u >= 2 r z - r^2 s`` (valid for every r since z^2/s
   is convex and 1-homogeneous; r = 1/beta0 touches at s = beta0 z). Cut generation
   (splitopt.solving.oa) adds tangents until the gap closes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from splitopt.compile.program import Names, Program, Rows, csr_from_parts, stack_bounds, vstack_csr
from splitopt.compile.terms import TermRows, fold_terms, onehot_block
from splitopt.errors import InputError
from splitopt.model.expr import BETA, PHI, Constraint, DeviceTerms, Expr

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


@dataclass
class Model:
    """An intermediate form: columns with bounds, an objective Expr, constraint Exprs, cones."""

    col_lb: np.ndarray
    col_ub: np.ndarray
    integer: np.ndarray
    names: Sequence[str]  # lazily formatted (Names)
    objective: Expr
    rows: list[Constraint]
    share_off: dict[int, int]
    n_options: int
    cones: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    cone_scale: np.ndarray | None = None
    cone_share: np.ndarray | None = None  # the share column each cone's s is a part of
    #: rows already in matrix form (added by steps that make many rows): (CSR or Rows, lb, ub,
    #: names), bounds as arrays or one value for the block
    blocks: list[tuple[sp.csr_matrix | Rows, float | np.ndarray, float | np.ndarray,
                       Sequence[str]]] = field(default_factory=list)
    term_rows: list[TermRows] = field(default_factory=list)  # fleet-wide maxes, as arrays

    def add_cols(self, n: int, lb: float, ub: float | np.ndarray, names: Sequence[str]) -> int:
        """Append n continuous columns; return the first index."""
        off = len(self.col_lb)
        self.col_lb = _grow(self.col_lb, n, lb)
        self.col_ub = _grow(self.col_ub, n, ub)
        self.integer = _grow(self.integer, n, False)
        self.names = Names.join(self.names, names)
        return off


def _grow(a: np.ndarray, n: int, value: float | np.ndarray) -> np.ndarray:
    """``a`` followed by n entries of ``value`` (one allocation, no temporaries)."""
    out = np.empty(len(a) + n, dtype=a.dtype)
    out[:len(a)], out[len(a):] = a, value
    return out


class Step:
    """A reduction: ``apply`` returns (new form, inverse data); ``invert`` maps a solution back."""

    name = "step"

    def apply(self, obj: Any) -> tuple[Any, Any]:  # pragma: no cover - interface
        """Transform; return the new form and what ``invert`` needs."""
        raise NotImplementedError

    def invert(self, x: np.ndarray, data: Any) -> np.ndarray:
        """Map a solution of the new form back (steps only append columns: truncate)."""
        return x[:data] if isinstance(data, int) else x


class Chain(Step):
    """Steps applied in order; inverted in reverse order."""

    name = "chain"

    def __init__(self, steps: list[Step]):
        self.steps = steps

    def apply(self, obj: Any) -> tuple[Any, Any]:
        """Apply every step."""
        datas = []
        for s in self.steps:
            obj, d = s.apply(obj)
            datas.append(d)
        return obj, datas

    def invert(self, x: np.ndarray, data: Any) -> np.ndarray:
        """Invert every step, last first."""
        for s, d in zip(reversed(self.steps), reversed(data)):
            x = s.invert(x, d)
        return x


def _map_expr(e: Expr, fn: Any) -> Expr:
    """Apply fn to e and (recursively) to the terms of its maxes (DeviceTerms at once)."""
    maxes = tuple((w, fn(ts) if isinstance(ts, DeviceTerms) else
                   tuple(_map_expr(t, fn) for t in ts)) for w, ts in e.maxes)
    return fn(replace(e, maxes=maxes))


class Lower(Step):
    """Problem -> Model (one-hot, budgets, fixed shares folded, removed options)."""

    name = "lower"

    def apply(self, p: Problem) -> tuple[Model, int]:
        """Build the Model of a Problem."""
        if p.objective is None:
            raise InputError("objective", None, "an objective", "Call p.minimize(...) first.")
        n, o = p.n_devices, p.n_options
        ub = p.col_ub.copy()
        ub[: n * o] = p.allowed.ravel().astype(float)
        integer = np.zeros(p.n_cols, dtype=bool)
        integer[: n * o] = True
        for v in p.extras:
            integer[v.offset:v.offset + v.size] = v.integer
        share_off = {BETA: p.bandwidth.offset}
        if p.server_share is not None:
            share_off[PHI] = p.server_share.offset
        m = Model(p.col_lb.copy(), ub, integer, _names(p), p.objective, [], share_off, o)
        fixed = {r: (p.col_lb[s:s + n] == p.col_ub[s:s + n]) for r, s in share_off.items()}
        fold = _folder(p, fixed, ub)
        m.objective = _map_expr(p.objective, fold)
        m.blocks.append(onehot_block(n, o, p.n_cols))
        for r, s in share_off.items():
            m.rows.append(Constraint(Expr(s + np.arange(n), np.ones(n)), -math.inf, 1.0,
                                     f"budget:{'bandwidth' if r == BETA else 'server'}"))
        m.rows += [Constraint(_map_expr(c.body, fold), c.lb, c.ub, c.name) for c in p.constraints]
        return m, p.n_cols


def _names(p: Problem) -> Names:
    devs = [d.name for d in p.scenario.devices]
    o = p.n_options

    def make() -> list[str]:
        names = [f"z[{d},{j}]" for d in devs for j in range(o)]
        names += [f"beta[{d}]" for d in devs]
        if p.server_share is not None:
            names += [f"phi[{d}]" for d in devs]
        for v in p.extras:
            names += [v.name] if v.size == 1 else [f"{v.name}[{i}]" for i in range(v.size)]
        return names
    return Names((p.n_cols, make))


def _folder(p: Problem, fixed: dict[int, np.ndarray], z_ub: np.ndarray) -> Any:
    """D z / share with a fixed share becomes the linear d / share0 * z.

    Terms of removed options go.
    """
    o = p.n_options
    vals = {r: _share_vals(p, r) for r in fixed}
    keep_opts = (z_ub[:p.n_devices * o] > 0).reshape(p.n_devices, o)

    def fold(e: Expr | DeviceTerms) -> Expr | DeviceTerms:
        if isinstance(e, DeviceTerms):
            return fold_terms(e, fixed, vals, keep_opts)
        if not len(e.q_z):
            return e
        dev = e.q_z // o
        keep = z_ub[e.q_z] > 0
        fix = np.zeros(len(e.q_z), dtype=bool)
        val = np.ones(len(e.q_z))
        for r, f in fixed.items():
            sel = e.q_res == r
            fix[sel] = f[dev[sel]]
            val[sel] = vals[r][dev[sel]]
        lin = fix & keep
        q = ~fix & keep
        return replace(e, lin_idx=np.concatenate([e.lin_idx, e.q_z[lin]]),
                       lin_coef=np.concatenate([e.lin_coef, e.q_coef[lin] / val[lin]]),
                       q_z=e.q_z[q], q_res=e.q_res[q], q_coef=e.q_coef[q])
    return fold


def _share_vals(p: Problem, res: int) -> np.ndarray:
    var = p.bandwidth if res == BETA else p.server_share
    assert var is not None
    return p.col_lb[var.offset:var.offset + p.n_devices]


class EpigraphMax(Step):
    """Replace every max by an epigraph column (objective) or by one row per term (constraints)."""

    name = "epigraph"

    def apply(self, m: Model) -> tuple[Model, int]:
        """Remove maxes."""
        n0 = len(m.col_lb)
        new_rows: list[Constraint] = []
        m.objective = self._lift(m, m.objective, new_rows, "obj")
        for c in m.rows:
            b = c.body
            if len(b.maxes) == 1 and b.maxes[0][0] > 0 and not len(b.lin_idx) and not len(b.q_z):
                w, ts = b.maxes[0]
                if isinstance(ts, DeviceTerms):
                    m.term_rows.append(TermRows(ts, w, b.const, -1, 0.0, c.lb, c.ub, c.name))
                    continue
                new_rows += [Constraint(t * w + b.const, c.lb, c.ub, f"{c.name}:{j}")
                             for j, t in enumerate(ts)]
            else:
                new_rows.append(Constraint(self._lift(m, b, new_rows, c.name), c.lb, c.ub, c.name))
        m.rows = new_rows
        return m, n0

    def _lift(self, m: Model, e: Expr, rows: list[Constraint], tag: str) -> Expr:
        out = replace(e, maxes=())
        for i, (w, ts) in enumerate(e.maxes):
            t = m.add_cols(1, -math.inf, math.inf, [f"t[{tag}:{i}]"])
            tv = Expr(np.array([t]), np.ones(1))
            if isinstance(ts, DeviceTerms):  # term_k - t <= 0 for every device, as arrays
                m.term_rows.append(TermRows(ts, 1.0, 0.0, t, -1.0, -math.inf, 0.0,
                                            f"epi[{tag}:{i}]"))
                out = out + tv * w
                continue
            for j, term in enumerate(ts):
                term = self._lift(m, term, rows, f"{tag}:{i}:{j}")
                rows.append(Constraint(term - tv, -math.inf, 0.0, f"epi[{tag}:{i}]:{j}"))
            out = out + tv * w
        return out


class Perspective(Step):
    """Replace each ``d z[k,o] / share_k`` by ``d u[k,o]`` with a disaggregated share and a cone."""

    name = "perspective"

    def apply(self, m: Model) -> tuple[Model, int]:
        """Introduce s[k,o], u[k,o] and the cones u >= z^2 / s (vectorised over all terms)."""
        n0 = len(m.col_lb)
        exprs = [m.objective] + [c.body for c in m.rows]
        parts = [(e.q_z * 2 + e.q_res, e.q_coef) for e in exprs if len(e.q_z)]
        parts += [(code, c) for tr in m.term_rows  # (code 2 z + res, coefficient) arrays
                  for code, (_, _, c) in zip(tr.share_codes, tr.share_terms())]
        codes = _join([c for c, _ in parts], np.int64)
        # codes 2 z + res lie below 2 n0: a dense lookup instead of np.unique + searchsorted
        # (int32 while every column number fits: half the memory, which is most of the time)
        index = np.full(2 * n0, -1, dtype=np.int32 if 4 * n0 < 2**31 - 1 else np.int64)
        index[codes] = 0
        keys = np.flatnonzero(index == 0)
        if not len(keys):
            self._term_blocks(m, index, 0, np.zeros(0))
            return m, n0
        nk = len(keys)
        index[keys] = np.arange(nk, dtype=index.dtype)
        zc, res = np.divmod(keys, 2)
        share_cols = zc // m.n_options
        share_cols += np.array([m.share_off[0], m.share_off.get(1, 0)])[res]
        # u[k,o] carries the largest coefficient of its term (seconds, joules), not 1/share:
        # u >= c z^2 / s keeps tangents well scaled when a tiny coefficient wants a tiny share
        coefs = np.abs(_join([c for _, c in parts], float))
        if len(codes) == nk and np.array_equal(codes, keys):
            scale = coefs  # each term once, in key order (a fleet-wide max alone)
        else:
            scale = np.zeros(nk)
            np.maximum.at(scale, index[codes], coefs)
        scale[scale == 0] = 1.0
        s_ub = np.empty(2 * nk)  # s[k,o] <= min(ub of z, ub of the share); u unbounded
        np.minimum(np.take(m.col_ub, zc, out=s_ub[:nk], mode="clip"), m.col_ub[share_cols],
                   out=s_ub[:nk])  # clip: unbuffered; every index is a column
        s_ub[nk:] = math.inf
        s0 = m.add_cols(2 * nk, 0.0, s_ub, Names.numbered("s", nk) + Names.numbered("u", nk))
        u0 = s0 + nk
        m.cones = np.empty((nk, 3), dtype=np.int64)
        m.cones[:, 0], m.cones[:, 1], m.cones[:, 2] = np.arange(u0, u0 + nk), zc, np.arange(s0, u0)
        m.cone_scale = scale
        m.cone_share = share_cols

        def swap(e: Expr) -> Expr:
            if not len(e.q_z):
                return e
            key = index[e.q_z * 2 + e.q_res]
            return Expr(np.concatenate([e.lin_idx, u0 + key]),
                        np.concatenate([e.lin_coef, e.q_coef / scale[key]]), e.const)
        m.objective = swap(m.objective)
        m.rows = [Constraint(swap(c.body), c.lb, c.ub, c.name) for c in m.rows]
        self._term_blocks(m, index, u0, scale)
        # s <= z, one row per key (two entries a row, written in place); sum_o s[k,o] <= share_k,
        # one row per share column used (grouped by a dense lookup, not np.unique)
        nc = len(m.col_lb)
        s_col = m.cones[:, 2]
        m.blocks.append((Rows(m.cones[:, 2:0:-1], (1.0, -1.0), (nk,), nc), -math.inf, 0.0,
                         Names.numbered("s<=z:", nk)))  # columns (s, z): a view of the cones
        used = np.zeros(n0, dtype=bool)
        used[share_cols] = True
        ucol = np.flatnonzero(used)
        grp = np.cumsum(used)[share_cols] - 1
        # within one resource the keys run by device, so each part's rows are nondecreasing
        parts = [(grp[res == r], s_col[res == r], 1.0) for r in (BETA, PHI) if np.any(res == r)]
        split = csr_from_parts(len(ucol), nc, parts + [(np.arange(len(ucol)), ucol, -1.0)])
        m.blocks.append((split, -math.inf, 0.0, _split_names(m.names, ucol)))
        return m, n0

    @staticmethod
    def _term_blocks(m: Model, index: np.ndarray, u0: int, scale: np.ndarray) -> None:
        """Write the fleet-wide max rows (TermRows) as CSR blocks, 1/share terms as u columns."""
        m.blocks += [tr.block(len(m.col_lb), index, u0, scale) for tr in m.term_rows]
        m.term_rows = []


def _join(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """One array of several (the array itself when there is one: no copy)."""
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype)


def _split_names(cols: Sequence[str], share_cols: np.ndarray) -> Names:
    return Names((len(share_cols), lambda: [f"split:{cols[c]}" for c in share_cols]))


class ToMatrix(Step):
    """Model (affine rows) -> Program (CSR)."""

    name = "matrix"

    def apply(self, m: Model) -> tuple[Program, int]:
        """Assemble the arrays."""
        n = len(m.col_lb)
        obj = m.objective
        if not obj.is_affine:
            raise InputError("objective", "non-affine after lowering", "an affine objective")
        c = np.zeros(n)
        np.add.at(c, obj.lin_idx, obj.lin_coef)
        lens = np.array([len(r.body.lin_idx) for r in m.rows], dtype=np.int64)
        rid = np.repeat(np.arange(len(m.rows)), lens)
        cols = np.concatenate([r.body.lin_idx for r in m.rows]) if m.rows else np.zeros(0, int)
        vals = np.concatenate([r.body.lin_coef for r in m.rows]) if m.rows else np.zeros(0)
        A = sp.csr_matrix((vals, (rid, cols)), shape=(len(m.rows), n))
        A.sum_duplicates()
        const = np.array([r.body.const for r in m.rows])
        lb = np.array([r.lb for r in m.rows]) - const
        ub = np.array([r.ub for r in m.rows]) - const
        names = [r.name for r in m.rows]
        if m.blocks:  # every block written once into the stacked arrays
            A = vstack_csr([A] + [b for b, _, _, _ in m.blocks], n)
            lb = stack_bounds([(len(lb), lb)] + [(b.shape[0], lo) for b, lo, _, _ in m.blocks])
            ub = stack_bounds([(len(ub), ub)] + [(b.shape[0], up) for b, _, up, _ in m.blocks])
            names = Names.join(names, *(b[3] for b in m.blocks))
        cones = np.asarray(m.cones, dtype=np.int64).reshape(-1, 3)
        prog = Program(c, A, lb, ub, m.col_lb, m.col_ub, m.integer, m.names, names, obj.const,
                       cones, m.cone_scale, m.cone_share)
        return prog, n


def generic_chain(linear: bool = False) -> Chain:
    """Problem -> Program with cones (steps 1-4); ``linear``: their initial tangents instead."""
    steps: list[Step] = [Lower(), EpigraphMax(), Perspective(), ToMatrix()]
    if linear:
        from splitopt.compile.tangents import Tangents  # a Step of this module's kind

        steps.insert(3, Tangents())
    return Chain(steps)
