"""Exact min-max round latency by bisection on the round time T (no MILP).

For T_k = A[k,o] + D[k,o] / beta_k with one-hot options and sum_k beta_k <= 1, a round time T is
achievable iff

    sum_k  min_{o allowed, A[k,o] < T}  max(D[k,o] / (T - A[k,o]), beta_min[k,o])  <=  1,

because each device independently takes the option that needs the least bandwidth to finish by T
(the shares couple the devices only through their sum). The left side is non-increasing in T, so
bisection brackets the optimum T* between a T proven infeasible and a T with an explicit plan; both
ends are returned (the bound and the plan's value). Devices with identical rows are priced once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

RTOL = 1e-12


@dataclass
class PathOutcome:
    """What an exact path found: per-device option and shares, objective, proven bound."""

    termination: str
    option: np.ndarray | None
    beta: np.ndarray | None
    phi: np.ndarray | None
    objective: float | None
    bound: float | None
    iterations: int
    extras: np.ndarray | None = None
    message: str = ""
    log: str = ""


class MinMaxRows:
    """Per-device rows (A, D, beta_min, allowed), deduplicated: identical devices share work.

    Options dominated within a row (another allowed option with A, D and beta_min all no larger)
    can never be a device's cheapest, so each row keeps only its Pareto options (about ln O of O
    for random chains), which makes every probe proportionally cheaper.
    """

    def __init__(self, A: np.ndarray, D: np.ndarray, beta_min: np.ndarray, allowed: np.ndarray):
        key = np.hstack([A, D, beta_min, allowed.astype(float)])
        _, first, self.inverse, self.counts = np.unique(
            key, axis=0, return_index=True, return_inverse=True, return_counts=True)
        self.inverse = self.inverse.ravel()
        self.A0, self.D0 = A[first], D[first]  # all options, for pricing the final plan
        self.A, self.D, self.bmin, self.allowed, self.index = _pareto(
            A[first], D[first], beta_min[first], allowed[first])

    def need(self, T: float) -> tuple[np.ndarray, np.ndarray]:
        """(least share, best option) per distinct row at round time T (inf when none finishes)."""
        R = T - self.A
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(self.D > 0, self.D / R, 0.0)
        ok = self.allowed & ((R > 0) | ((R >= 0) & (self.D == 0)))
        share = np.where(ok, np.maximum(share, self.bmin), np.inf)
        best = np.argmin(share, axis=1)
        rows = np.arange(len(best))
        return share[rows, best], self.index[rows, best]

    def total(self, T: float) -> float:
        """sum_k need_k(T)."""
        s, _ = self.need(T)
        return float(s @ self.counts)


def _pareto(A: np.ndarray, D: np.ndarray, bmin: np.ndarray, allowed: np.ndarray):
    """Keep each row's non-dominated allowed options, packed left; returns the packed arrays and
    the original option index of every kept entry.
    """
    n, o = A.shape
    Am = np.where(allowed, A, np.inf)
    order = np.lexsort((np.where(allowed, D, np.inf), Am), axis=1)  # by A, then D
    Ds = np.take_along_axis(np.where(allowed, D, np.inf), order, 1)
    Bs = np.take_along_axis(np.where(allowed, bmin, np.inf), order, 1)
    prev = np.minimum.accumulate(np.hstack([np.full((n, 1), np.inf), Ds[:, :-1]]), axis=1)
    keep = (Ds < prev) & np.isfinite(np.take_along_axis(Am, order, 1))
    keep |= (bmin > 0).any(axis=1, keepdims=True) & np.isfinite(Bs)  # 3-D case: keep all allowed
    width = max(int(keep.sum(axis=1).max()), 1)
    pos = np.cumsum(keep, axis=1) - 1
    r, c = np.nonzero(keep)
    idx = np.zeros((n, width), dtype=np.int64)
    idx[r, pos[r, c]] = order[r, c]
    ok = np.zeros((n, width), dtype=bool)
    ok[r, pos[r, c]] = True
    take = lambda a: np.take_along_axis(a, idx, 1)  # noqa: E731
    return take(A), take(D), take(bmin), ok & take(allowed), idx


def bisect_minmax(A: np.ndarray, D: np.ndarray, beta_min: np.ndarray, allowed: np.ndarray, *,
                  deadline: float | None = None, rtol: float = RTOL) -> PathOutcome:
    """Minimise max_k T_k exactly (see the module docstring). Infeasible -> termination
    'infeasible'.
    """
    rows = MinMaxRows(A, D, beta_min, allowed)
    if rows.total(np.inf) > 1 + 1e-12:
        return PathOutcome("infeasible", None, None, None, None, None, 0)
    lo = float(np.max(np.min(np.where(rows.allowed, rows.A, np.inf), axis=1)))
    it = 1
    if rows.total(lo) <= 1:
        return _finish(rows, lo, lo, it)
    step = max(abs(lo), 1e-9)
    hi = lo + step
    while rows.total(hi) > 1:
        step *= 2
        lo, hi = hi, hi + step
        it += 1
        if it > 400:  # the shares needed only approach 1 as T grows without bound
            return PathOutcome("infeasible", None, None, None, None, None, it)
    while hi - lo > rtol * abs(hi):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if rows.total(mid) <= 1:
            hi = mid
        else:
            lo = mid
        it += 1
        if deadline is not None and time.perf_counter() > deadline:
            out = _finish(rows, hi, lo, it)
            out.termination = "time_limit"
            return out
    return _finish(rows, hi, lo, it)


def _finish(rows: MinMaxRows, T: float, lower: float, it: int) -> PathOutcome:
    """The plan at a feasible T: least shares, slack shared in proportion, exact objective."""
    share, best = rows.need(T)
    beta = share[rows.inverse]
    option = best[rows.inverse]
    slack = 1.0 - beta.sum()
    if slack > 0:
        beta = beta + slack * (beta / beta.sum() if beta.sum() > 0 else 1.0 / len(beta))
    beta = np.maximum(beta, 1e-12)
    a = rows.A0[rows.inverse, option]
    d = rows.D0[rows.inverse, option]
    obj = float(np.max(a + d / beta))
    return PathOutcome("optimal", option, beta, None, obj, min(lower, obj), it)


def fixed_option_time(a: np.ndarray, d: np.ndarray, bmin: np.ndarray | None = None) -> float:
    """Least max_k (a_k + d_k / beta_k) over sum beta <= 1 for fixed options (bisection on T)."""
    bmin = np.zeros_like(a) if bmin is None else bmin
    out = bisect_minmax(a[:, None], d[:, None], bmin[:, None], np.ones((len(a), 1), dtype=bool))
    return np.inf if out.objective is None else float(out.objective)
