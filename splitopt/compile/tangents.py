"""The outer approximation: tangent rows for the cones ``u >= k z^2 / s`` (step 5 of compile).

``u >= 2 k r z - k r^2 s`` is valid for every r > 0 (k z^2 / s is convex and 1-homogeneous) and
touches the cone where r = z / s. :class:`OuterApproximation` replaces a Program's cones by four
tangents each; :class:`Tangents` does the same on the Model, so that ToMatrix writes them with the
other rows (``compile_problem``); cut generation (:mod:`splitopt.solving.oa`) adds more with
:func:`tangent_rows`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from splitopt.compile.program import Names, Program, Rows
from splitopt.compile.steps import Model, Step

#: largest tangent coefficient k r^2 on a share column (HiGHS's comfortable range); with the cone
#: scale k this is a share of sqrt(k / 1e10), not a fixed 1e-5
MAX_TANGENT_COEF = 1e10


def tangent_rows(cones: np.ndarray, ratios: np.ndarray, n_cols: int,
                 scales: np.ndarray | None = None) -> sp.csr_matrix:
    """Rows u - 2 k r z + k r^2 s >= 0, one per (cone, ratio, scale) given as parallel arrays.

    Valid for every r > 0 (k z^2 / s is convex and 1-homogeneous; r = z / s touches there).
    """
    return tangent_block(cones.reshape(-1, 3), ratios, n_cols, scales).tocsr()


def tangent_block(cones: np.ndarray, ratios: np.ndarray, n_cols: int,
                  scales: np.ndarray | None = None) -> Rows:
    """:func:`tangent_rows` as :class:`Rows`: ``cones`` (..., 3) broadcast against ``ratios``.

    Three entries per row (u, z, s: distinct columns), written in place when stacked.
    """
    k = 1.0 if scales is None else np.asarray(scales, dtype=float)
    lead = np.broadcast_shapes(np.shape(cones)[:-1], np.shape(ratios))
    return Rows(cones, (1.0, -2 * (k * ratios), k * ratios**2), lead, n_cols)


def capped_ratios(ratios: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Tangent ratios with k r^2 <= MAX_TANGENT_COEF (any ratio gives a valid tangent)."""
    return np.minimum(ratios, np.sqrt(MAX_TANGENT_COEF / scales))


class OuterApproximation(Step):
    """Cones -> tangent rows at the given share values (1/ratio); the cones are kept aside."""

    name = "outer-approximation"

    def __init__(self, shares: tuple[float, ...] = (1.0, 0.25, 0.05, 0.01)):
        self.shares = np.asarray(shares, dtype=float)

    def apply(self, prog: Program) -> tuple[Program, int]:
        """Add the initial tangents and drop the cones."""
        if not len(prog.cones):
            return prog, prog.n_cols
        rows = self.tangents(prog.cones, prog.scales, prog.n_cols)
        lin = replace(prog, cones=np.zeros((0, 3), dtype=np.int64), cone_scale=None,
                      cone_share=None)
        m = rows.shape[0]
        return lin.add_rows(rows, 0.0, math.inf, Names.numbered("oa", m)), prog.n_cols

    def tangents(self, cones: np.ndarray, scales: np.ndarray, n_cols: int) -> Rows:
        """Every (cone, share) tangent, cone-major: ``u - 2 k r z + k r^2 s >= 0``."""
        # (cone, share) pairs by broadcasting, each coefficient written once into the stacked
        # matrix: no temporaries of the 200k tangents' size. The ratio is 1 / share except on
        # cones whose cap sqrt(MAX_TANGENT_COEF / k) is below it (few), set after.
        inv = 1.0 / self.shares
        cap = np.sqrt(MAX_TANGENT_COEF / scales)
        few = np.flatnonzero(cap < inv.max())
        k_few = scales[few, None]
        r_few = capped_ratios(inv, k_few)

        def z_coef(out: np.ndarray) -> None:  # -2 k r ((-2 k) r is the same float)
            np.multiply((-2.0 * scales)[:, None], inv, out=out)
            out[few] = -2 * (k_few * r_few)

        def s_coef(out: np.ndarray) -> None:  # k r^2
            np.multiply(scales[:, None], inv**2, out=out)
            out[few] = k_few * r_few**2
        return Rows(cones[:, None, :], (1.0, z_coef, s_coef), (len(cones), len(inv)), n_cols)


class Tangents(Step):
    """:class:`OuterApproximation` on the Model, before :class:`ToMatrix` stacks the rows.

    The same rows at the end of the same matrix, written once with the others: a 1000-device
    program no longer copies its 300k entries again to append 600k tangent entries.
    """

    name = "tangents"

    def __init__(self, shares: tuple[float, ...] = (1.0, 0.25, 0.05, 0.01)):
        self.oa = OuterApproximation(shares)

    def apply(self, m: Model) -> tuple[Model, int]:
        """Append the tangent rows as the last block and drop the cones."""
        n = len(m.col_lb)
        if len(m.cones):
            scales = np.ones(len(m.cones)) if m.cone_scale is None else m.cone_scale
            rows = self.oa.tangents(np.asarray(m.cones), np.asarray(scales, dtype=float), n)
            m.blocks.append((rows, 0.0, math.inf, Names.numbered("oa", rows.shape[0])))
        m.cones, m.cone_scale, m.cone_share = np.zeros((0, 3), dtype=np.int64), None, None
        return m, n
