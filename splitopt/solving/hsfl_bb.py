"""Delay-to-target exact: branch and bound over latency intervals, one MILP per probe.

The exact method behind the ``delay-to-target`` path (:mod:`splitopt.solving.hsfl_path`, HSFL's
objective h(P) * L) and ``HSFL().solve``. The band as the system uses it: FL devices hold their
own shares beta_k for the whole round; the SL devices take turns, and the one transmitting uses
all the band the FL devices leave, beta_s = 1 - W (time-sharing). For a latency budget L, a choice
z (one option per device: FL with a batch, or SL with a cut and a batch) fits iff

    W + beta_s <= 1,   V + D / beta_s <= L,   W = sum_{FL opts} d / (L - a) z,
                                              V = sum_{SL opts} a z,  D = sum_{SL opts} d z

(an FL device needs d / (L - a) of the band; the SL devices in turn take V + D / beta_s). The
second row times beta_s is D + V beta_s <= L beta_s, and V beta_s = sum a q with q_o = beta_s z_o,
which the rows q_o >= beta_s - (1 - z_o), q_o >= 0 give exactly for binary z (McCormick: exact
when one factor is binary and a >= 0 pushes q down). With V <= L (for beta_s = 0) this is a MILP
whose optimum is P*(L), the least surrogate penalty at latency L -- no tangents, no cone.

P*(L) is nonincreasing, so over an interval [L1, L2] every choice with latency in it costs at least
L1 * h(P*(L2)); intervals are split at their geometric midpoint M, and the choice found at M
settles [L(z_M), M] outright. A cheap Lagrangian bound (numpy) prunes most intervals before a MILP
runs. Options are grouped by the SL cuts they may use: one group per cut when all SL devices share
one cut (the setting as we read the abstract), one group holding every cut with per-device cuts.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from splitopt.backends.results import Result


@dataclass(frozen=True)
class DelayData:
    """Per-device, per-batch (and per-cut for SL) coefficients: T = a + d / beta, penalties.

    ``ok_*``: the option is allowed (memory and the user's per-device rows); ``sets``: the SL
    cuts' device-side sets (for plans; may be empty).
    """

    sets: list[frozenset[str]]
    batches: np.ndarray  # (B,)
    a_fl: np.ndarray  # (N, B)
    d_fl: np.ndarray
    ok_fl: np.ndarray
    a_sl: np.ndarray  # (C, N, B)
    d_sl: np.ndarray
    ok_sl: np.ndarray
    p_fl: np.ndarray  # (N, B)
    p_sl: np.ndarray
    rho: np.ndarray  # (N,)

    @cached_property
    def sl_hull(self) -> np.ndarray:
        """(C, N, B): SL cuts that can be a device's best (lower hull of (a, d) over cuts)."""
        return lower_hull(self.a_sl, self.d_sl, self.ok_sl)


@dataclass(frozen=True)
class Config:
    """One decision per device: SL cut index (ignored in FL mode), FL flag, batch index."""

    cut: np.ndarray
    fl: np.ndarray
    batch: np.ndarray

    def __post_init__(self) -> None:
        cut = np.broadcast_to(np.asarray(self.cut, dtype=int), np.shape(self.fl)).copy()
        object.__setattr__(self, "cut", cut)


def penalty_of(data: DelayData, cfg: Config) -> float:
    """Total surrogate penalty P of a configuration."""
    rows = np.arange(len(cfg.fl))
    return float(np.where(cfg.fl, data.p_fl[rows, cfg.batch], data.p_sl[rows, cfg.batch]).sum())


def config_latency(data: DelayData, cfg: Config) -> tuple[float, np.ndarray]:
    """Exact least latency and the bandwidth shares of a configuration.

    The FL devices plus one virtual SL device (sum a, sum d), whose share every SL device uses
    in its turn (time-sharing): the bisection of :func:`splitopt.solving.bisection.bisect_minmax`
    on those rows.
    """
    from splitopt.solving.bisection import bisect_minmax

    rows = np.arange(len(cfg.fl))
    fl, sl = cfg.fl, ~cfg.fl
    a = data.a_fl[rows, cfg.batch][fl]
    d = data.d_fl[rows, cfg.batch][fl]
    if sl.any():
        a = np.append(a, data.a_sl[cfg.cut, rows, cfg.batch][sl].sum())
        d = np.append(d, data.d_sl[cfg.cut, rows, cfg.batch][sl].sum())
    out = bisect_minmax(a[:, None], d[:, None], np.zeros((len(a), 1)),
                        np.ones((len(a), 1), dtype=bool))
    assert out.beta is not None and out.objective is not None
    beta = np.zeros(len(fl))
    beta[fl] = out.beta[:int(fl.sum())]
    if sl.any():
        beta[sl] = out.beta[-1]
    return float(out.objective), beta


def least_penalty_config(data: DelayData) -> Config:
    """Each device's least-penalty option (allowed): finite rounds if any choice has."""
    pf = np.where(data.ok_fl, data.p_fl, np.inf)
    ps = np.where(data.ok_sl.any(axis=0), data.p_sl, np.inf)
    fl = pf.min(axis=1) <= ps.min(axis=1)
    batch = np.where(fl, pf.argmin(axis=1), ps.argmin(axis=1))
    rows = np.arange(len(fl))
    cut = np.argmax(data.ok_sl[:, rows, batch], axis=0)  # a cut that fits that batch
    return Config(cut, fl, batch)


@dataclass(frozen=True)
class Columns:
    """The options usable at latency L (one column each): device, FL flag, batch, cut, costs."""

    dev: np.ndarray
    fl: np.ndarray
    batch: np.ndarray
    cut: np.ndarray
    pen: np.ndarray
    w: np.ndarray  # band an FL option needs at L (0 for SL)
    a: np.ndarray  # SL compute-and-fixed seconds (0 for FL)
    d: np.ndarray  # SL seconds at the whole band (0 for FL)

    def config(self, pick: np.ndarray, n: int) -> Config:
        """The configuration choosing the columns ``pick`` (one per device)."""
        batch, cut = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
        flk = np.zeros(n, dtype=bool)
        batch[self.dev[pick]], flk[self.dev[pick]] = self.batch[pick], self.fl[pick]
        cut[self.dev[pick]] = self.cut[pick]
        return Config(cut, flk, batch)


def lower_hull(a: np.ndarray, d: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(C, N, B) mask of the cuts on the lower-left convex hull of (a, d) per device and batch.

    Only they can be an SL device's best cut: at the group's band beta_s a fitting choice keeps
    fitting when a device swaps its cut for the one minimising d + beta_s a (the row
    D + beta_s V <= L beta_s only gets slacker, the penalty does not change), and that minimiser
    lies on this hull. It also passes the a + d <= L filter, since beta_s <= 1.
    """
    keep = np.zeros(a.shape, dtype=bool)
    for k in range(a.shape[1]):
        for j in range(a.shape[2]):
            idx = np.flatnonzero(ok[:, k, j])
            order = idx[np.lexsort((d[idx, k, j], a[idx, k, j]))]
            hull: list[int] = []
            for c in order:  # monotone chain, keeping only points that lower d
                if hull and d[c, k, j] >= d[hull[-1], k, j]:
                    continue
                while len(hull) >= 2:
                    (x1, y1), (x2, y2) = ((a[h, k, j], d[h, k, j]) for h in hull[-2:])
                    if (x2 - x1) * (d[c, k, j] - y1) - (y2 - y1) * (a[c, k, j] - x1) <= 0:
                        hull.pop()  # the middle point is on or above the chord
                    else:
                        break
                hull.append(int(c))
            keep[hull, k, j] = True
    return keep


def _columns(data: DelayData, cuts: np.ndarray, L: float) -> Columns | None:
    """Options that can fit latency L (None when some device has none)."""
    n, nb = data.a_fl.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(data.a_fl < L, data.d_fl / (L - data.a_fl), np.inf)
    ok_f = data.ok_fl & (w <= 1)
    a_s, d_s = data.a_sl[cuts], data.d_sl[cuts]  # (C', N, B)
    ok_s = data.ok_sl[cuts] & (a_s + d_s <= L)  # alone with the whole band it must fit
    if len(cuts) == data.a_sl.shape[0] and len(cuts) > 1:
        ok_s &= data.sl_hull
    kf, jf = np.nonzero(ok_f)
    cs, ks, js = np.nonzero(ok_s)
    dev = np.concatenate([kf, ks])
    if len(np.unique(dev)) < n:
        return None
    nf, ns = len(kf), len(ks)
    return Columns(dev=dev, fl=np.r_[np.ones(nf, bool), np.zeros(ns, bool)],
                   batch=np.r_[jf, js], cut=np.r_[np.zeros(nf, int), cuts[cs]],
                   pen=np.r_[data.p_fl[kf, jf], data.p_sl[ks, js]],
                   w=np.r_[w[kf, jf], np.zeros(ns)], a=np.r_[np.zeros(nf), a_s[cs, ks, js]],
                   d=np.r_[np.zeros(nf), d_s[cs, ks, js]])


def min_penalty(data: DelayData, cuts: np.ndarray, L: float, *, mip_gap: float = 1e-7,
                deadline: float | None = None) -> tuple[float, Config | None, bool]:
    """P*(L) over the cut group: (proven lower bound, an optimal choice or None, timed out)."""
    from splitopt.backends import get_backend
    from splitopt.compile.program import Program

    cols = _columns(data, cuts, L)
    if cols is None:
        return math.inf, None, False
    n = data.a_fl.shape[0]
    m = len(cols.pen)
    sl = np.flatnonzero(~cols.fl)
    ms = len(sl)
    # columns: z (m, binary), beta_s (1), q (ms): q_i = beta_s * z_{sl[i]}
    bs = m
    q = m + 1 + np.arange(ms)
    ncol = m + 1 + ms
    onehot = sp.csr_matrix((np.ones(m), (cols.dev, np.arange(m))), shape=(n, ncol))
    band = sp.csr_matrix((np.r_[cols.w, 1.0], ([0] * (m + 1), np.r_[np.arange(m), bs])),
                         shape=(1, ncol))
    turn = sp.csr_matrix((np.r_[cols.d[sl], cols.a[sl], -L],
                          ([0] * (2 * ms + 1), np.r_[sl, q, bs])), shape=(1, ncol))
    compute = sp.csr_matrix((cols.a[sl], ([0] * ms, sl)), shape=(1, ncol))
    r = np.arange(ms)
    mccormick = sp.csr_matrix((np.r_[np.ones(ms), np.ones(ms), -np.ones(ms)],
                               (np.r_[r, r, r], np.r_[sl, np.full(ms, bs), q])), shape=(ms, ncol))
    A = sp.vstack([onehot, band, turn, compute, mccormick], format="csr")
    row_lb = np.r_[np.ones(n), -np.inf, -np.inf, -np.inf, np.full(ms, -np.inf)]
    row_ub = np.r_[np.ones(n), 1.0, 0.0, L, np.ones(ms)]
    prog = Program(np.r_[cols.pen, np.zeros(1 + ms)], A, row_lb, row_ub, np.zeros(ncol),
                   np.ones(ncol), np.r_[np.ones(m, bool), np.zeros(1 + ms, bool)],
                   [f"z{i}" for i in range(m)] + ["beta_s"] + [f"q{i}" for i in range(ms)],
                   [f"r{i}" for i in range(A.shape[0])])
    left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
    res = get_backend("highs").solve_program(prog, mip_gap=mip_gap, time_limit=left)
    timed_out = res.termination == "time_limit"
    if res.x is None:
        if timed_out:
            return float(res.bound if res.bound is not None else -math.inf), None, True
        return math.inf, None, False  # no choice fits L
    cfg = cols.config(np.flatnonzero(res.x[:m] > 0.5), n)
    bound = res.bound if res.bound is not None else res.objective
    return float(min(bound, res.objective)), cfg, timed_out


def lagrange_penalty(data: DelayData, cuts: np.ndarray, L: float) -> tuple[float, Config | None]:
    """A cheap lower bound on P*(L) (numpy only) and the choice that attains it.

    Two rows every fitting choice meets (beta_s <= 1 and beta_s >= D / L): V + D <= L and
    W + D / L <= 1; their blend with weight theta, (1 - theta) W + (theta V + D) / L <= 1, dualised
    with mu >= 0 leaves each device its cheapest option of p + mu * coef, so
    sum_k min_o (p + mu coef) - mu <= P*(L) for every theta in [0, 1], mu >= 0.
    """
    cols = _columns(data, cuts, L)
    if cols is None:
        return math.inf, None
    n = data.a_fl.shape[0]
    order = np.argsort(cols.dev, kind="stable")
    starts = np.searchsorted(cols.dev[order], np.arange(n))

    def dual(theta: float, mu: float) -> tuple[float, np.ndarray]:
        coef = (1 - theta) * cols.w + (theta * cols.a + cols.d) / L
        v = (cols.pen + mu * coef)[order]
        return float(np.minimum.reduceat(v, starts).sum()) - mu, v

    best_b, best_arg = -math.inf, (0.0, 0.0)
    g = (math.sqrt(5) - 1) / 2
    for theta in np.linspace(0.0, 1.0, 5):
        lo, hi = -12.0, 6.0
        for _ in range(30):
            x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
            if dual(theta, 10**x1)[0] >= dual(theta, 10**x2)[0]:
                hi = x2
            else:
                lo = x1
        for mu in (0.0, 10**lo):
            b = dual(theta, mu)[0]
            if b > best_b:
                best_b, best_arg = b, (theta, mu)
    _, v = dual(*best_arg)
    ends = np.r_[starts[1:], len(v)]
    pick = np.array([order[starts[k] + int(np.argmin(v[starts[k]:ends[k]]))] for k in range(n)])
    return best_b, cols.config(pick, n)


def branch_and_bound(data: DelayData, rounds: Callable[[float], float], start: Config,
                     groups: list[np.ndarray], *, tol: float = 1e-6,
                     time_limit: float | None = None) -> Result:
    """Minimise h(P) * L over cuts, modes, batches and bandwidth (see the module docstring).

    ``rounds`` is h (nondecreasing; inf where the target is out of reach). The one Result:
    ``termination`` optimal (gap within ``tol``), ``time_limit`` or ``feasible``; ``objective``
    h(P) L of the best configuration, ``bound`` the proven lower bound, ``iterations`` the nodes;
    extras ``config`` (the :class:`Config`), ``milps``, ``nodes``.
    """
    def value(cfg: Config) -> float:
        r = rounds(penalty_of(data, cfg))
        return r * config_latency(data, cfg)[0] if math.isfinite(r) else math.inf

    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    best, best_v = start, value(start)
    heap: list[tuple[float, int, float, float, float]] = []
    for gi, cuts in enumerate(groups):
        p_min, l_lo = _least_penalty(data, cuts), _least_latency(data, cuts)
        r = rounds(p_min)
        if math.isfinite(r) and math.isfinite(l_lo):
            heapq.heappush(heap, (l_lo * r, gi, l_lo, best_v / r, p_min))
    milps = nodes = 0
    timed_out = False
    pruned = math.inf  # the least bound of a node dropped within tol of the incumbent
    while heap:
        lbv, gi, l1, l2, p2 = heapq.heappop(heap)
        l2 = min(l2, best_v / rounds(p2))  # beyond it even the least penalty loses
        if lbv >= best_v * (1 - tol) or l2 <= l1 * (1 + tol):
            pruned = min(pruned, lbv)
            continue
        if deadline is not None and time.perf_counter() > deadline:
            heapq.heappush(heap, (lbv, gi, l1, l2, p2))
            timed_out = True
            break
        nodes += 1
        mid = math.sqrt(l1 * l2) if l1 > 0 else 0.5 * l2
        p_mid, cfg = lagrange_penalty(data, groups[gi], mid)  # cheap first: often enough
        if cfg is not None and value(cfg) < best_v:
            best, best_v = cfg, value(cfg)
        r_lag = rounds(max(p_mid, p2))
        cfg = None
        if math.isfinite(r_lag) and l1 * r_lag < best_v * (1 - tol):
            p_mip, cfg, late = min_penalty(data, groups[gi], mid, deadline=deadline)
            p_mid = max(p_mid, p_mip)
            milps += 1
            if cfg is not None and value(cfg) < best_v:
                best, best_v = cfg, value(cfg)
            if late:  # this node is not settled: keep it whole, with what was proven
                heapq.heappush(heap, (lbv, gi, l1, l2, p2))
                timed_out = True
                break
        l_z = mid
        if cfg is not None:
            l_z = min(config_latency(data, cfg)[0], mid)
        for lo, hi, p in ((l1, l_z, max(p_mid, p2)), (mid, l2, p2)):
            r = rounds(p)
            hi = min(hi, best_v / r) if math.isfinite(r) else hi
            if hi > lo * (1 + tol) and math.isfinite(r) and lo * r < best_v * (1 - tol):
                heapq.heappush(heap, (lo * r, gi, lo, hi, p))
            elif hi > lo and math.isfinite(r):
                pruned = min(pruned, lo * r)
    bound = min([best_v, pruned] + [h[0] for h in heap])
    closed = bound >= best_v * (1 - tol)
    return Result("optimal" if closed else ("time_limit" if timed_out else "feasible"),
                  path="delay-to-target", backend="highs", objective=best_v, bound=bound,
                  iterations=nodes, message=f"{milps} MILPs, {nodes} nodes",
                  extras={"config": best, "milps": milps, "nodes": nodes})


def _least_penalty(data: DelayData, cuts: np.ndarray) -> float:
    """Sum over devices of the smallest penalty of any allowed option (no latency limit)."""
    pf = np.where(data.ok_fl, data.p_fl, np.inf).min(axis=1)
    ps = np.where(data.ok_sl[cuts].any(axis=0), data.p_sl, np.inf).min(axis=1)
    return float(np.minimum(pf, ps).sum())


def _least_latency(data: DelayData, cuts: np.ndarray) -> float:
    """A latency no choice beats: the slowest device's least time with the whole band."""
    af = np.where(data.ok_fl, data.a_fl + data.d_fl, np.inf).min(axis=1)
    as_ = np.where(data.ok_sl[cuts], data.a_sl[cuts] + data.d_sl[cuts], np.inf).min(axis=(0, 2))
    return float(np.minimum(af, as_).max())
