"""HSFL exact: branch and bound over latency intervals, one MILP (+ exact cone cuts) per probe.

For a latency budget L and SL cut c, a choice z (one (mode, batch) option per device) fits iff

    W + U^2 / (L - V) <= 1,   W = sum_{FL opts} d / (L - a) z,  U = sum_{SL opts} sqrt(d) z,
                              V = sum_{SL opts} a z

(FL devices need d / (L - a) of the band; the SL devices in turn need (sum sqrt d)^2 / (L - sum a)).
U^2 <= (1 - W)(L - V) is one rotated cone, equal to the family of linear rows
2U + theta W + V / theta <= theta + L / theta over theta > 0; the MILP min P = sum pen z adds the
row at the solution's theta until the solution satisfies the cone (exact: the relaxation only ever
grows tighter, and its optimum is feasible at the end). P*(L) is nonincreasing, so over an interval
[L1, L2] every choice with latency in it costs at least L1 * h(P*(L2)); intervals are split at their
geometric midpoint M, and the choice found at M settles [L(z_M), M] outright.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from splitopt.formulations.hsfl import Config, HSFLData, Surrogate


@dataclass(frozen=True)
class Outcome:
    """Best configuration, its objective, the proven lower bound, and the work done."""

    config: Config
    value: float
    bound: float
    milps: int
    nodes: int


def _columns(data: HSFLData, c: int, L: float) -> tuple[np.ndarray, ...] | None:
    """Options usable at latency L: device, FL flag, batch index, penalty, w, sqrt d, a."""
    n, nb = data.a_fl.shape
    dev = np.repeat(np.arange(n), nb)
    j = np.tile(np.arange(nb), n)
    with np.errstate(divide="ignore"):
        w = np.where(data.a_fl < L, data.d_fl / (L - data.a_fl), np.inf).ravel()
    ok_f = data.ok_fl.ravel() & (w <= 1)
    a_s = data.a_sl[c].ravel()
    ok_s = data.ok_sl[c].ravel() & (a_s < L)
    devs = np.concatenate([dev[ok_f], dev[ok_s]])
    if len(np.unique(devs)) < n:
        return None
    fl = np.concatenate([np.ones(ok_f.sum(), bool), np.zeros(ok_s.sum(), bool)])
    jj = np.concatenate([j[ok_f], j[ok_s]])
    pen = np.concatenate([data.p_fl.ravel()[ok_f], data.p_sl.ravel()[ok_s]])
    ww = np.concatenate([w[ok_f], np.zeros(ok_s.sum())])
    rr = np.concatenate([np.zeros(ok_f.sum()), np.sqrt(data.d_sl[c].ravel()[ok_s])])
    aa = np.concatenate([np.zeros(ok_f.sum()), a_s[ok_s]])
    return devs, fl, jj, pen, ww, rr, aa


def min_penalty(data: HSFLData, c: int, L: float, *, warm: np.ndarray | None = None,
                max_cuts: int = 60, mip_gap: float = 1e-6, deadline: float | None = None
                ) -> tuple[float, Config | None, int]:
    """P*(L) at cut c: (proven lower bound, an optimal choice or None if none fits, MILPs run)."""
    from splitopt.formulations.hsfl import Config

    from splitopt.backends import get_backend
    from splitopt.compile.program import Program

    cols = _columns(data, c, L)
    if cols is None:
        return math.inf, None, 0
    devs, fl, jj, pen, ww, rr, aa = cols
    m, n = len(pen), data.a_fl.shape[0]
    onehot = sp.csr_matrix((np.ones(m), (devs, np.arange(m))), shape=(n, m))
    rows = [onehot, sp.csr_matrix(ww[None, :]), sp.csr_matrix(aa[None, :])]
    lb, ub = [np.ones(n), [-np.inf], [-np.inf]], [np.ones(n), [1.0], [L]]
    be = get_backend("highs")
    for it in range(1, max_cuts + 1):
        A = sp.vstack(rows, format="csr")
        prog = Program(pen, A, np.concatenate(lb), np.concatenate(ub), np.zeros(m), np.ones(m),
                       np.ones(m, dtype=bool), [f"z{i}" for i in range(m)],
                       [f"r{i}" for i in range(A.shape[0])])
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        res = be.solve_program(prog, mip_gap=mip_gap, time_limit=left,
                               warm_start=warm if warm is not None and len(warm) == m else None)
        if res.termination == "time_limit":
            return float(res.bound if res.bound is not None else -math.inf), None, it
        if res.x is None:
            return math.inf, None, it  # the relaxation is infeasible, so is the cone
        x = res.x > 0.5
        w, u, v = float(ww @ x), float(rr @ x), float(aa @ x)
        if u * u <= (1 - w) * (L - v) * (1 + 1e-10) + 1e-300:
            batch = np.zeros(n, dtype=int)
            flk = np.zeros(n, dtype=bool)
            batch[devs[x]], flk[devs[x]] = jj[x], fl[x]
            bound = res.bound if res.bound is not None else res.objective
            return float(min(bound, res.objective)), Config(c, flk, batch), it
        theta = math.sqrt(max(L - v, 1e-300) / max(1 - w, 1e-300))
        rows.append(sp.csr_matrix((2 * rr + theta * ww + aa / theta)[None, :]))
        lb.append([-np.inf])
        ub.append([theta + L / theta])
        warm = res.x
    return float(res.bound if res.bound is not None else -math.inf), None, max_cuts


def lagrange_penalty(data: HSFLData, c: int, L: float) -> tuple[float, Config | None]:
    """A cheap lower bound on P*(L) (numpy only) and the choice that attains it.

    One tangent row 2U + theta W + V / theta <= theta + L / theta relaxes the cone; dualising it
    with mu >= 0 leaves each device its cheapest option of p + mu * coef, so
    sum_k min_o (p + mu coef) - mu (theta + L / theta) <= P*(L) for every theta, mu > 0. The best
    (theta, mu) on a grid and by golden section is kept.
    """
    from splitopt.formulations.hsfl import Config

    cols = _columns(data, c, L)
    if cols is None:
        return math.inf, None
    devs, fl, jj, pen, ww, rr, aa = cols
    n = data.a_fl.shape[0]
    order = np.argsort(devs, kind="stable")
    starts = np.searchsorted(devs[order], np.arange(n))

    def dual(theta: float, mu: float) -> tuple[float, np.ndarray]:
        v = (pen + mu * (2 * rr + theta * ww + aa / theta))[order]
        best = np.minimum.reduceat(v, starts)
        return float(best.sum()) - mu * (theta + L / theta), v

    best_b, best_arg = -math.inf, (1.0, 0.0)
    for theta in math.sqrt(L) * np.logspace(-2, 2, 9):
        lo, hi = -12.0, 6.0
        g = (math.sqrt(5) - 1) / 2
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
    pick = np.empty(n, dtype=int)
    for k in range(n):  # the cheapest option of each device at the best multipliers
        seg = v[starts[k]:starts[k + 1] if k + 1 < n else len(v)]
        pick[k] = order[starts[k] + int(np.argmin(seg))]
    batch = np.zeros(n, dtype=int)
    flk = np.zeros(n, dtype=bool)
    batch[devs[pick]], flk[devs[pick]] = jj[pick], fl[pick]
    return best_b, Config(c, flk, batch)


def branch_and_bound(data: HSFLData, sur: Surrogate, start: Config, *, tol: float = 1e-6,
                     time_limit: float | None = None) -> Outcome:
    """Minimise h(P) * L over cuts, modes, batches and bandwidth (see the module docstring)."""
    from splitopt.formulations.hsfl import config_latency, penalty_of

    def value(cfg: Config) -> float:
        r = sur.rounds(penalty_of(data, cfg))
        return r * config_latency(data, cfg)[0] if math.isfinite(r) else math.inf

    t0 = time.perf_counter()
    best, best_v = start, value(start)
    n_cut = data.a_sl.shape[0]
    heap: list[tuple[float, int, float, float, float]] = []
    for c in range(n_cut):
        p_min = _least_penalty(data, c)
        l_lo = _least_latency(data, c)
        r = sur.rounds(p_min)
        if math.isfinite(r) and math.isfinite(l_lo):
            heapq.heappush(heap, (l_lo * r, c, l_lo, best_v / r, p_min))
    milps = nodes = 0
    pruned = math.inf  # the least bound of a node dropped within tol of the incumbent
    while heap:
        lbv, c, l1, l2, p2 = heapq.heappop(heap)
        l2 = min(l2, best_v / sur.rounds(p2))  # beyond it even the least penalty loses
        if lbv >= best_v * (1 - tol) or l2 <= l1 * (1 + tol):
            pruned = min(pruned, lbv)
            continue
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            heapq.heappush(heap, (lbv, c, l1, l2, p2))
            break
        nodes += 1
        mid = math.sqrt(l1 * l2) if l1 > 0 else 0.5 * l2
        deadline = None if time_limit is None else t0 + time_limit
        p_mid, cfg = lagrange_penalty(data, c, mid)  # cheap first: often enough to prune
        if cfg is not None and value(cfg) < best_v:
            best, best_v = cfg, value(cfg)
        r_lag = sur.rounds(max(p_mid, p2))
        cfg = None
        if math.isfinite(r_lag) and l1 * r_lag < best_v * (1 - tol):
            p_mid, cfg, k = min_penalty(data, c, mid, deadline=deadline)
            milps += k
        l_z = mid
        if cfg is not None:
            v = value(cfg)
            if v < best_v:
                best, best_v = cfg, v
            l_z = min(config_latency(data, cfg)[0], mid)
        for lo, hi, p in ((l1, l_z, max(p_mid, p2)), (mid, l2, p2)):
            r = sur.rounds(p)
            hi = min(hi, best_v / r) if math.isfinite(r) else hi
            if hi > lo * (1 + tol) and math.isfinite(r) and lo * r < best_v * (1 - tol):
                heapq.heappush(heap, (lo * r, c, lo, hi, p))
            elif hi > lo and math.isfinite(r):
                pruned = min(pruned, lo * r)
    bound = min([best_v, pruned] + [h[0] for h in heap])
    return Outcome(best, best_v, bound, milps, nodes)


def _least_penalty(data: HSFLData, c: int) -> float:
    """Sum over devices of the smallest penalty of any allowed option (no latency limit)."""
    pf = np.where(data.ok_fl, data.p_fl, np.inf).min(axis=1)
    ps = np.where(data.ok_sl[c], data.p_sl, np.inf).min(axis=1)
    return float(np.minimum(pf, ps).sum())


def _least_latency(data: HSFLData, c: int) -> float:
    """A latency no choice beats: the slowest device's least time with the whole band."""
    af = np.where(data.ok_fl, data.a_fl + data.d_fl, np.inf).min(axis=1)
    as_ = np.where(data.ok_sl[c], data.a_sl[c] + data.d_sl[c], np.inf).min(axis=1)
    return float(np.minimum(af, as_).max())
