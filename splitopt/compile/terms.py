"""Fleet-wide maxes compiled as arrays: one row block per ``DeviceTerms``, not one Expr per device.

``p.round_latency()`` holds its N device terms as (N, O) arrays (:class:`DeviceTerms`). The
compile steps keep them so: Lower folds fixed shares into the arrays, EpigraphMax turns the max
into a :class:`TermRows` (``w * term_k + const + coef * x[col]`` within ``[lb, ub]`` for every
device k), Perspective reads its 1/share coefficients by array masks and writes the block as CSR
arrays. At 1000 devices x 50 options this replaced 1000 expressions walked by each step (about
60 ms of a 160 ms build) by a few array passes; the rows are the same as the per-term path's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from splitopt.compile.program import Names, Rows, csr_from_parts
from splitopt.model.expr import BETA, PHI, DeviceTerms


@dataclass(frozen=True)
class TermRows:
    """Rows ``weight * term_k + const + coef * x[col]`` in ``[lb, ub]``, k over the terms.

    ``col = -1``: no extra column (a constraint ``max_k term_k <= b``); otherwise the epigraph
    column t of ``max_k term_k <= t`` (coef -1).
    """

    terms: DeviceTerms
    weight: float
    const: float
    col: int
    coef: float
    lb: float
    ub: float
    name: str

    def share_terms(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(resource, z columns, weighted coefficients) of the nonzero 1/share terms."""
        return self._share_terms

    @cached_property
    def share_codes(self) -> list[np.ndarray]:
        """Perspective's key ``2 z + res`` of every term of :meth:`share_terms`, in its order."""
        out = []
        for res, z, _ in self.share_terms():
            code = z * 2
            code += res
            out.append(code)
        return out

    @cached_property
    def _share_terms(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        out = []
        for res, coef in ((BETA, self.terms.beta), (PHI, self.terms.phi)):
            if coef is not None:
                flat = np.asarray(coef, dtype=float).ravel()
                nz = np.flatnonzero(flat)  # z of device k, option j is column k * O + j
                vals = flat if len(nz) == len(flat) else flat[nz]
                out.append((res, nz, vals if self.weight == 1.0 else self.weight * vals))
        return out

    def block(self, n_cols: int, index: np.ndarray, u0: int,
              scale: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, Names]:
        """The rows as CSR over ``n_cols`` columns, 1/share terms as Perspective's ``u`` columns.

        ``index[2 z + res]`` is the number of term (z, res) among Perspective's keys: its column
        is ``u0 + index``, scaled by ``1 / scale`` as Perspective's ``swap`` does.
        """
        n, o = self.terms.lin.shape
        # row k: its z block, its 1/share terms as u columns, the epigraph column (all distinct)
        lin = np.asarray(self.terms.lin, dtype=float).ravel()
        parts: list = [(o, np.arange(n * o), lin if self.weight == 1.0 else self.weight * lin)]
        for (_, z, c), code in zip(self.share_terms(), self.share_codes):
            key = index[code]
            # z ascending: rows nondecreasing; every option of every device: o entries a row
            parts.append((o if len(z) == n * o else z // o, u0 + key, c / scale[key]))
        if self.col >= 0:
            parts.append((1, np.full(n, self.col), self.coef))
        A = csr_from_parts(n, n_cols, parts)
        name = self.name
        names = Names((n, lambda: [f"{name}:{j}" for j in range(n)]))
        return (A, np.full(n, self.lb - self.const), np.full(n, self.ub - self.const), names)


def fold_terms(terms: DeviceTerms, fixed: dict[int, np.ndarray], values: dict[int, np.ndarray],
               keep: np.ndarray) -> DeviceTerms:
    """Lower's fold on arrays: ``d z / share`` with a fixed share becomes ``d / share0`` z.

    ``fixed[res]``: devices whose share is fixed at ``values[res]``; 1/share terms of removed
    options (``keep`` False) go.
    """
    n = len(terms)
    keep = keep[:n]
    every = bool(keep.all())
    lin = np.asarray(terms.lin, dtype=float)  # new arrays only where something changes
    out: dict[int, np.ndarray | None] = {BETA: None, PHI: None}
    for res, coef in ((BETA, terms.beta), (PHI, terms.phi)):
        if coef is None:
            continue
        coef = np.asarray(coef, dtype=float)
        fix = fixed[res][:n, None] if res in fixed else np.zeros((n, 1), dtype=bool)
        if not fix.any():
            out[res] = coef if every else np.where(keep, coef, 0.0)
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = lin + np.where(fix & keep, coef / values[res][:n, None], 0.0)
        out[res] = np.where(~fix & keep, coef, 0.0)
    return DeviceTerms(terms.n_options, lin, out[BETA], out[PHI])


def onehot_block(n: int, o: int, n_cols: int) -> tuple[Rows, float, float, Names]:
    """The rows ``sum_o z[k,o] = 1`` as one block (written in place when stacked)."""
    return Rows(np.arange(n * o).reshape(n, o), 1.0, (n,), n_cols), 1.0, 1.0, \
        Names.numbered("onehot:", n)
