"""HSFL baseline: block coordinate descent on the relaxed problem, then rounding.

The abstract of arXiv:2511.19851 names a relaxation, block coordinate descent and rounding; the
blocks, their order, the stopping rule and the rounding below are our reading, not the paper's
code. The SL devices share one cut here (the setting as we read it), and the band is priced as the
system uses it (SL devices time-share the band the FL devices leave).

Relaxation: batch sizes are continuous in [smallest, largest allowed]; every cost of the reference
model is affine in b, so a(b) = a0 + a1 * b exactly. Blocks, repeated until no block improves:
bandwidth (exact for the other blocks fixed), each device's batch (golden section with the others
and the bandwidth fixed), each device's mode (flip if it helps), the SL cut. Then each batch is
rounded to the nearest allowed integer and the bandwidth re-optimised.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from splitopt.solving.shares import fixed_minmax

if TYPE_CHECKING:
    from splitopt.formulations.hsfl import HSFL, Config, HSFLData


class _Relaxed:
    """Affine-in-b coefficients and the relaxed objective."""

    def __init__(self, form: HSFL, data: HSFLData):
        self.form, self.data = form, data
        bs = data.batches
        j1 = len(bs) - 1
        span = bs[j1] - bs[0] if j1 > 0 else 1.0

        def affine(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            slope = (x[..., j1] - x[..., 0]) / span
            return x[..., 0] - slope * bs[0], slope

        self.afl, self.dfl = affine(data.a_fl), affine(data.d_fl)
        self.asl, self.dsl = affine(data.a_sl), affine(data.d_sl)
        self.rho = data.rho
        big = bs[None, :]
        self.hi_fl = np.where(data.ok_fl, big, -np.inf).max(axis=1)
        self.lo_fl = np.where(data.ok_fl, big, np.inf).min(axis=1)
        self.hi_sl = np.where(data.ok_sl, big, -np.inf).max(axis=2)  # (C, N)
        self.lo_sl = np.where(data.ok_sl, big, np.inf).min(axis=2)

    def times(self, c: int, fl: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """a_k(b), d_k(b) for every device in its mode."""
        a = np.where(fl, self.afl[0] + self.afl[1] * b, self.asl[0][c] + self.asl[1][c] * b)
        d = np.where(fl, self.dfl[0] + self.dfl[1] * b, self.dsl[0][c] + self.dsl[1][c] * b)
        return a, d

    def penalty(self, fl: np.ndarray, b: np.ndarray) -> float:
        return float(self.form.surrogate.penalty(self.rho, fl, b).sum())

    def value(self, c: int, fl: np.ndarray, b: np.ndarray, beta: np.ndarray) -> float:
        """Relaxed objective h(P) * L with the FL devices' shares fixed.

        The SL devices, in turn, use all the band the FL devices leave (time-sharing), so a
        device flipped to SL is priced with the group's band, not with its old FL share.
        """
        a, d = self.times(c, fl, b)
        t = a + d / beta
        beta_s = max(1.0 - float(beta[fl].sum()), 1e-12)
        lat = max(t[fl].max(initial=0.0), float((a[~fl] + d[~fl] / beta_s).sum()))
        r = self.form.surrogate.rounds(self.penalty(fl, b))
        return r * lat if math.isfinite(r) else math.inf

    def allocate(self, c: int, fl: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact shares for fixed choices (FL devices plus one virtual SL device).

        The virtual SL device has (sum a, sum d); each SL device uses its share in its turn.
        """
        a, d = self.times(c, fl, b)
        sl = ~fl
        beta = np.zeros(len(fl))
        aa = np.append(a[fl], a[sl].sum()) if sl.any() else a[fl]
        dd = np.append(d[fl], d[sl].sum()) if sl.any() else d[fl]
        _, _, share = fixed_minmax(aa, dd)
        beta[fl] = share[:fl.sum()]
        if sl.any():
            beta[sl] = share[-1]
        return np.maximum(beta, 1e-12)

    def bounds(self, c: int, fl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.where(fl, self.lo_fl, self.lo_sl[c]), np.where(fl, self.hi_fl, self.hi_sl[c]))


def _golden(f, lo: float, hi: float, iters: int = 40) -> float:  # type: ignore[no-untyped-def]
    """Minimiser of f on [lo, hi] (golden section; ends checked)."""
    g = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(iters):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = f(x2)
    cands = [(f1, x1), (f2, x2), (f(lo), lo), (f(hi), hi)]
    return min(cands)[1]


def _start(rel: _Relaxed) -> tuple[int, np.ndarray, np.ndarray]:
    """All devices in SL mode (FL where SL fits nowhere) at their largest batch, best cut."""
    n = rel.rho.shape[0]
    best = (math.inf, 0, np.zeros(n, dtype=bool), np.ones(n))
    for c in range(rel.asl[0].shape[0]):
        fl = ~np.isfinite(rel.hi_sl[c])
        lo, hi = rel.bounds(c, fl)
        if not np.all(np.isfinite(hi)):
            continue
        v = rel.value(c, fl, hi, rel.allocate(c, fl, hi))
        if v < best[0] or not math.isfinite(best[0]):
            best = (v, c, fl, hi)
    return best[1], best[2], best[3]


def _sweep(rel: _Relaxed, c: int, fl: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray,
                                                                          np.ndarray, float]:
    """One pass over the blocks: bandwidth, batches, modes, cut."""
    beta = rel.allocate(c, fl, b)
    for k in range(len(b)):  # batch block
        lo, hi = rel.bounds(c, fl)

        def f(x: float, k: int = k) -> float:
            bb = b.copy()
            bb[k] = x
            return rel.value(c, fl, bb, beta)

        b[k] = _golden(f, lo[k], hi[k]) if hi[k] > lo[k] else hi[k]
    cur = rel.value(c, fl, b, beta)
    for k in range(len(b)):  # mode block
        fl2 = fl.copy()
        fl2[k] = ~fl2[k]
        lo, hi = rel.bounds(c, fl2)
        if not np.isfinite(hi[k]):
            continue
        b2 = b.copy()
        b2[k] = min(max(b2[k], lo[k]), hi[k])
        v = rel.value(c, fl2, b2, beta)
        if v < cur:
            fl, b, cur = fl2, b2, v
    for c2 in range(rel.asl[0].shape[0]):  # cut block
        lo, hi = rel.bounds(c2, fl)
        if not np.all(np.isfinite(hi)):
            continue
        b2 = np.clip(b, lo, hi)
        v = rel.value(c2, fl, b2, beta)
        if v < cur:
            c, b, cur = c2, b2, v
    return c, fl, b, cur


def bcd_round(form: HSFL, data: HSFLData, *, max_iter: int = 30) -> Config:
    """Run the BCD, round the batches (nearest or up, the better), re-optimise the bandwidth."""
    from splitopt.formulations.hsfl import Config

    rel = _Relaxed(form, data)
    c, fl, b = _start(rel)
    prev = math.inf
    for _ in range(max_iter):
        c, fl, b, cur = _sweep(rel, c, fl, b.copy())
        if not cur < prev * (1 - 1e-9):
            break
        prev = cur
    ok = np.where(fl[:, None], data.ok_fl, data.ok_sl[c])
    bs = data.batches[None, :]
    nearest = np.argmin(np.where(ok, np.abs(bs - b[:, None]), np.inf), axis=1)
    # rounding down can push the surrogate past its pole (infinite rounds): also try rounding up
    up = np.argmin(np.where(ok & (bs >= b[:, None] - 1e-9), bs, np.inf), axis=1)
    up = np.where(np.isfinite(np.where(ok & (bs >= b[:, None] - 1e-9), bs, np.inf)).any(axis=1),
                  up, nearest)
    cuts = np.full(len(fl), int(c))
    cands = [Config(cuts, fl.copy(), nearest), Config(cuts, fl.copy(), up)]
    best = min(cands, key=lambda cfg: form.objective(data, cfg))
    if not math.isfinite(form.objective(data, best)):  # the BCD ended past the pole
        from splitopt.formulations.hsfl import least_penalty_config

        return least_penalty_config(data)
    return best
