"""Exact min-max round latency by bisection on the round time T (no MILP).

For T_k = A[k,o] + D[k,o] / beta_k with one-hot options and sum_k beta_k <= 1, a round time T is
achievable iff

    sum_k  min_{o allowed, A[k,o] < T}  max(D[k,o] / (T - A[k,o]), beta_min[k,o])  <=  1,

because each device independently takes the option that needs the least bandwidth to finish by T
(the shares couple the devices only through their sum). The left side is non-increasing in T, so
bisection brackets the optimum T* between a T proven infeasible and a T with an explicit plan; both
ends are returned (the bound and the plan's value). Probes follow the regula falsi point of
total(T) - 1 (Illinois rule, bisection when it stalls): about 20 probes instead of 50.

Speed (docs/planner.md). Devices of one compute class have the same A row and D rows that differ
only by a factor (their seconds per bit): D[k] = s_k * Dn with Dn shared. For beta_min = 0,
min_o s_k Dn_o / (T - A_o) = s_k * min_o Dn_o / (T - A_o), so the sum over a class is one row's
minimum times sum_k s_k: each probe costs O(classes x options), not O(devices x options). Rows are
grouped on (A, Dn to 40 bits, beta_min, allowed); the grouping only speeds the search up: the bound
is certified and the plan priced on every device's own exact row at the end.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import replace

import numpy as np

from splitopt.backends.base import INFEASIBLE, OPTIMAL, TIME_LIMIT
from splitopt.backends.results import Result
from splitopt.pricing import flat_index, pick
from splitopt.solving.shares import fixed_minmax

RTOL = 1e-12
_DROP = 12  # mantissa bits of Dn ignored by the grouping key: rows equal to ~2^-40 share a group
_PRUNE_FROM = 1024  # group rows x options above which dominated options are dropped first
_NUDGE = 2.0 ** -36  # relative step of the final certificate repairs (far above the grouping error)


def _clean(x: np.ndarray) -> np.ndarray:
    """float64 without negative zeros (equal values must have equal bits); copies only if needed."""
    x = np.asarray(x, dtype=float)
    return x + 0.0 if np.signbit(x).any() else x


def row_scale(D: np.ndarray, beta_min: np.ndarray | None) -> np.ndarray:
    """Per-row factor s_k with D[k] = s_k * Dn[k] (1 where beta_min is used or D is zero).

    ``beta_min`` None: no minimum shares anywhere.
    """
    s = D.max(axis=1) if D.shape[1] else np.ones(len(D))
    ok = (s > 0) & np.isfinite(s)
    if beta_min is not None:
        ok &= ~(beta_min > 0).any(axis=1)
    return np.where(ok, s, 1.0)


def row_keys(A: np.ndarray, Dn: np.ndarray, beta_min: np.ndarray,
             allowed: np.ndarray) -> np.ndarray:
    """(N, 4 O) int64 grouping keys: A and beta_min exactly, Dn to 40 bits, the allowed mask."""
    return np.hstack([_clean(A).view(np.int64), _clean(Dn).view(np.int64) >> _DROP,
                      _clean(beta_min).view(np.int64), allowed.astype(np.int64)])


def row_hashes(A: np.ndarray, D: np.ndarray, scale: np.ndarray, beta_min: np.ndarray,
               allowed: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, 2) two independent 64-bit hashes of each row's :func:`row_keys` (Dn = D / scale).

    Wrapping dot products with fixed odd multipliers, a block of rows at a time so that no
    (N, O) temporary is made (inputs clean float64). A device joining looks its group up by
    this pair.
    """
    m = _multipliers(A.shape[1])
    out = np.empty((len(A), 2), dtype=np.int64)
    with np.errstate(over="ignore"):
        for i in range(0, len(A), chunk):
            r = slice(i, i + chunk)
            dn = _clean(D[r] / scale[r, None])
            h = A[r].view(np.int64) @ m[0] + (dn.view(np.int64) >> _DROP) @ m[1]
            if beta_min[r].any():  # zeros add nothing: skip them
                h += beta_min[r].view(np.int64) @ m[2]
            h += allowed[r].astype(np.int64) @ m[3]
            out[r] = h
    return out


@functools.lru_cache(maxsize=64)
def _multipliers(n_options: int) -> np.ndarray:
    """The fixed odd multipliers of :func:`row_hashes` for rows of ``n_options`` (read-only)."""
    m = np.random.default_rng(12345).integers(1, 2**62, (4, n_options, 2), dtype=np.int64) | 1
    m.flags.writeable = False
    return m


def group_rows(A: np.ndarray, D: np.ndarray, scale: np.ndarray, beta_min: np.ndarray,
               allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group of each row, first row of each group, the groups' hashes) for equal key rows.

    Groups rows by the first hash and checks the second against the group's first row; on a
    collision it falls back to an exact sort of the keys.
    """
    h = row_hashes(A, D, scale, beta_min, allowed)
    if not len(h):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), h
    _, first, inv = np.unique(h[:, 0], return_index=True, return_inverse=True)
    inv = inv.ravel()
    if not np.array_equal(h[:, 1], h[first, 1][inv]):
        keys = row_keys(A, D / scale[:, None], beta_min, allowed)
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
    return inv.astype(np.int64), first.astype(np.int64), h[first]


class MinMaxRows:
    """Per-device rows (A, D, beta_min, allowed), grouped by class (see the module docstring).

    Within a group, options dominated on the group's row (another allowed option with A, D and
    beta_min all no larger) are dropped (about ln O of O remain for random chains), which makes
    every probe cheaper still. ``replace``, ``append`` and ``delete`` change one device's row
    and touch only its group (the incremental :class:`splitopt.Planner` uses them).
    """

    def __init__(self, A: np.ndarray, D: np.ndarray, beta_min: np.ndarray, allowed: np.ndarray):
        # every device's exact rows (certificates, plan); the caller's arrays, not copies, until
        # a row changes (beta_min may be a broadcast view of zeros)
        self.A0, self.D0 = _clean(A), _clean(D)
        # no minimum share anywhere (the usual case): the passes that read them are skipped
        self._any_bmin = bool(np.any(beta_min))
        self.bmin0 = _clean(beta_min) if self._any_bmin else np.asarray(beta_min, dtype=float)
        self.allowed0 = np.asarray(allowed, dtype=bool)
        self._owned = False
        self.scale = row_scale(self.D0, self.bmin0 if self._any_bmin else None)
        self.group, first, self._hashes = group_rows(self.A0, self.D0, self.scale, self.bmin0,
                                                     self.allowed0)
        self._lookup: dict[tuple, int] | None = None  # hashes -> group, built on the first change
        self._reps = [self.A0[first], self.D0[first] / self.scale[first, None],
                      np.array(self.bmin0[first]), self.allowed0[first]]
        self._pack()

    # ------------------------------------------------------------------ groups
    def _pack(self) -> None:
        """Stack the groups' representative rows (Pareto-pruned) and their weights.

        A few groups' rows are kept whole (up to ``_PRUNE_FROM`` entries: a probe's cost is then
        the numpy calls, not the entries, and the finish searches every device's row as it is).
        """
        if self._reps[0].size <= _PRUNE_FROM:
            A, D, bmin, allowed = self._reps
            self.A, self.D, self.bmin, self.allowed = A, D, bmin, allowed.copy()
            self.index = np.broadcast_to(np.arange(A.shape[1]), A.shape)
            self.whole = True  # every option in order on every group
        else:
            self.A, self.D, self.bmin, self.allowed, self.index = _pareto(*self._reps)
            w = self.index.shape[1]
            self.whole = w == self.A0.shape[1] and bool((self.index == np.arange(w)).all())
        self._weigh()

    def _weigh(self) -> None:
        g = len(self.A)
        self.weight = np.bincount(self.group, weights=self.scale, minlength=g)
        self.counts = np.bincount(self.group, minlength=g)
        # what a probe reads: the groups that have devices; an option not allowed priced 0 + inf
        live = self.counts > 0
        A, D, bm, al = self.A[live], self.D[live], self.bmin[live], self.allowed[live]
        # an option not allowed starts at T = inf (never reached); D = 0 needs a test at T = A
        D = np.where(al, D, 0.0)
        zero = (D == 0) & al
        self._probe = (np.where(al, A, np.inf), D, zero if zero.any() else None,
                       bm if bm.any() else None, np.where(al, 0.0, np.inf), self.weight[live])

    def _group_of(self, a: np.ndarray, dn: np.ndarray, bmin: np.ndarray,
                  allowed: np.ndarray) -> tuple[int, bool]:
        """The group of a row (a new one when no group has its key) and whether it is new."""
        if self._lookup is None:
            self._lookup = {tuple(h): g for g, h in enumerate(self._hashes.tolist())}
        key = tuple(row_hashes(a[None], dn[None], np.ones(1), bmin[None],
                               allowed[None])[0].tolist())
        g = self._lookup.get(key)
        if g is not None:
            return g, False
        g = self._lookup[key] = len(self._reps[0])
        self._reps = [np.vstack([r, x[None]]) for r, x in zip(self._reps, (a, dn, bmin, allowed))]
        return g, True

    def _row(self, a, d, bmin, allowed) -> tuple[float, int, bool]:
        a, d = _clean(a).ravel(), _clean(d).ravel()
        bmin, allowed = _clean(bmin).ravel(), np.asarray(allowed, bool).ravel()
        s = float(row_scale(d[None], bmin[None])[0])
        self._any_bmin |= bool(bmin.any())
        return (s, *self._group_of(a, d / s, bmin, allowed))

    def _regroup(self, new: bool) -> None:
        if new:
            self._pack()
        else:
            self._weigh()

    def _own(self) -> None:
        """Copy the caller's arrays before the first change of a row (copy on write)."""
        if not self._owned:
            self.A0, self.D0 = np.array(self.A0), np.array(self.D0)
            self.bmin0, self.allowed0 = np.array(self.bmin0), np.array(self.allowed0)
            self._owned = True

    def replace(self, k: int, a, d, bmin, allowed) -> None:
        """Device k's rows change (one device re-priced)."""
        self._own()
        s, g, new = self._row(a, d, bmin, allowed)
        self.A0[k], self.D0[k], self.bmin0[k], self.allowed0[k] = a, d, bmin, allowed
        self.scale[k], self.group[k] = s, g
        self._regroup(new)

    def append(self, a, d, bmin, allowed) -> None:
        """A device joins (its rows are the last)."""
        s, g, new = self._row(a, d, bmin, allowed)
        self.A0 = np.vstack([self.A0, _clean(a)[None]])
        self.D0 = np.vstack([self.D0, _clean(d)[None]])
        self.bmin0 = np.vstack([self.bmin0, _clean(bmin)[None]])
        self.allowed0 = np.vstack([self.allowed0, np.asarray(allowed, bool)[None]])
        self.scale, self.group = np.append(self.scale, s), np.append(self.group, g)
        self._owned = True  # vstack made new arrays
        self._regroup(new)

    def delete(self, k: int) -> None:
        """Device k leaves (later devices move up by one)."""
        self.A0, self.D0 = np.delete(self.A0, k, 0), np.delete(self.D0, k, 0)
        self.bmin0, self.allowed0 = np.delete(self.bmin0, k, 0), np.delete(self.allowed0, k, 0)
        self.scale, self.group = np.delete(self.scale, k), np.delete(self.group, k)
        self._owned = True  # np.delete made new arrays
        self._weigh()

    # ------------------------------------------------------------------ probes
    def total(self, T: float) -> float:
        """sum_k need_k(T), from the groups (used to steer the search).

        The least share of a group's row at T: min over its allowed options of D / (T - A)
        (0 when D = 0 and T >= A; out of reach when T < A, or T = A with D > 0), at least
        beta_min (:meth:`exact` on every device's own row gives the same figures).
        """
        if T == math.inf:  # inf - inf (not allowed) is NaN: no share there, quietly
            with np.errstate(invalid="ignore"):
                return self._total(T)
        return self._total(T)

    def _total(self, T: float) -> float:
        A, D, zero, bmin, _, weight = self._probe
        R = T - A
        # (a few numpy calls per probe, no error-state context: divide only where R > 0)
        share = np.empty(R.shape)
        share.fill(np.inf)
        np.divide(D, R, out=share, where=R > 0)
        if zero is not None:
            share[zero & (R == 0)] = 0.0
        if bmin is not None:
            np.maximum(share, bmin, out=share)
        return float(np.minimum.reduce(share, axis=1) @ weight)  # (the ufunc: no wrapper)

    def reachable(self) -> float | None:
        """A round time every device reaches within the band, from the groups.

        None with minimum shares. Each group on its option of least D: T = max A + sum_g w_g D_g
        makes every share at most w_g D_g / sum w D, so the shares sum to at most 1 (the search
        checks it, not trusts it).
        """
        A, D, _, bmin, off, weight = self._probe
        if bmin is not None or not len(A):
            return None
        j = np.argmin(D + off, axis=1)
        rows = np.arange(len(j))
        if not np.isfinite(off[rows, j]).all() or not np.isfinite(D[rows, j]).all():
            return None
        return float(A[rows, j].max() + D[rows, j] @ weight)

    def exact(self, T: float, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(least share, best option) of every device at T on its own exact row.

        ``index`` (N, W) restricts the options searched (default: all).
        """
        if index is None:
            A, D, bm, al = self.A0, self.D0, self.bmin0, self.allowed0
        else:
            take = lambda x: np.take_along_axis(x, index, 1)  # noqa: E731
            A, D, bm, al = take(self.A0), take(self.D0), take(self.bmin0), take(self.allowed0)
        share, ok = _shares(T, A, D, bm if self._any_bmin else None, al)
        share = np.where(ok, share, np.inf)
        best = np.argmin(share, axis=1)
        rows = np.arange(len(best))
        opt = best if index is None else index[rows, best]
        return share[rows, best], opt


def _shares(T: float, A, D, bmin, allowed) -> tuple[np.ndarray, np.ndarray]:
    """(least share of every option at T, whether T is reached with it); bmin None: zeros."""
    R = T - A
    ok = R > 0
    share = np.divide(D, R, out=np.zeros(R.shape), where=ok & (D > 0))
    ok |= (R == 0) & (D == 0)  # nothing to send: reached at T = A
    ok &= allowed
    return (share if bmin is None else np.maximum(share, bmin)), ok


def _pareto(A: np.ndarray, D: np.ndarray, bmin: np.ndarray, allowed: np.ndarray):
    """Keep each row's non-dominated allowed options, packed left.

    Returns the packed arrays and the original option index of every kept entry.
    """
    n, o = A.shape
    Am = np.where(allowed, A, np.inf)
    order = np.lexsort((np.where(allowed, D, np.inf), Am), axis=1)  # by A, then D
    Ds = np.take_along_axis(np.where(allowed, D, np.inf), order, 1)
    Bs = np.take_along_axis(np.where(allowed, bmin, np.inf), order, 1)
    prev = np.minimum.accumulate(np.hstack([np.full((n, 1), np.inf), Ds[:, :-1]]), axis=1)
    keep = (Ds < prev) & np.isfinite(np.take_along_axis(Am, order, 1))
    keep |= (bmin > 0).any(axis=1, keepdims=True) & np.isfinite(Bs)  # 3-D case: keep all allowed
    width = max(int(keep.sum(axis=1).max()), 1) if n else 1
    pos = np.cumsum(keep, axis=1) - 1
    r, c = np.nonzero(keep)
    idx = np.zeros((n, width), dtype=np.int64)
    idx[r, pos[r, c]] = order[r, c]
    ok = np.zeros((n, width), dtype=bool)
    ok[r, pos[r, c]] = True
    take = lambda a: np.take_along_axis(a, idx, 1)  # noqa: E731
    return take(A), take(D), take(bmin), ok & take(allowed), idx


def bisect_minmax(A: np.ndarray, D: np.ndarray, beta_min: np.ndarray, allowed: np.ndarray, *,
                  deadline: float | None = None, rtol: float = RTOL,
                  bracket: tuple[float, float] | None = None) -> Result:
    """Minimise max_k T_k exactly (see the module docstring).

    Infeasible -> termination 'infeasible'. ``bracket`` (lo, hi) is where to start looking (e.g.
    the last optimum's bracket); it is checked, not trusted.
    """
    return bisect_rows(MinMaxRows(A, D, beta_min, allowed), deadline=deadline, rtol=rtol,
                       bracket=bracket)


def bisect_rows(rows: MinMaxRows, *, deadline: float | None = None, rtol: float = RTOL,
                bracket: tuple[float, float] | None = None) -> Result:
    """:func:`bisect_minmax` on prepared (possibly updated) rows."""
    if not len(rows.A0):
        return Result(INFEASIBLE)
    if rows.total(np.inf) > 1 + 1e-12:
        return Result(INFEASIBLE)
    floor = float(np.max(np.min(np.where(rows.allowed0, rows.A0, np.inf), axis=1)))
    it = 1
    f_lo = _value(rows, floor)
    if f_lo <= 0:
        return _finish(rows, floor, floor, it)
    lo, hi, f_hi = floor, None, np.inf
    if bracket is not None and np.all(np.isfinite(bracket)) and bracket[0] < bracket[1]:
        lo, hi, it, f_lo, f_hi = _warm(rows, max(float(bracket[0]), floor), float(bracket[1]),
                                       floor, f_lo)
    if hi is None:
        up = rows.reachable()  # one probe instead of doubling from the floor (most of the time)
        if up is not None and up > lo:
            f_up = _value(rows, up)
            it += 1
            if f_up <= 0:
                hi, f_hi = up, f_up
            else:
                lo, f_lo = up, f_up
    if hi is None:
        step = max(abs(lo), 1e-9)
        hi = lo + step
        f_hi = _value(rows, hi)
        while f_hi > 0:
            step *= 2
            lo, f_lo, hi = hi, f_hi, hi + step
            f_hi = _value(rows, hi)
            it += 1
            if it > 400:  # the shares needed only approach 1 as T grows without bound
                return Result(INFEASIBLE, iterations=it)
    last, widths = 0, [hi - lo]
    while hi - lo > rtol * abs(hi):
        mid = _next_probe(lo, hi, f_lo, f_hi, rtol, widths)
        if mid <= lo or mid >= hi:
            break
        f = _value(rows, mid)
        if f <= 0:
            hi, f_hi = mid, f
            f_lo, last = (f_lo / 2 if last == -1 else f_lo), -1  # Illinois: the stale end halves
        else:
            lo, f_lo = mid, f
            f_hi, last = (f_hi / 2 if last == 1 else f_hi), 1
        widths.append(hi - lo)
        it += 1
        if deadline is not None and time.perf_counter() > deadline:
            return replace(_finish(rows, hi, lo, it), termination=TIME_LIMIT)
    return _finish(rows, hi, lo, it)


def _value(rows: MinMaxRows, T: float) -> float:
    """1 - 1 / total(T): at most 0 exactly where T is reachable (total(T) <= 1).

    The search runs on this rather than on total(T) - 1: near the optimum the total behaves like
    c / (T - a), whose reciprocal is linear in T, so regula falsi steps land almost on the root.
    """
    t = rows.total(T)
    return 1.0 - 1.0 / t if t > 0 else -np.inf


def _next_probe(lo: float, hi: float, f_lo: float, f_hi: float, rtol: float,
                widths: list[float]) -> float:
    """Where to probe next in (lo, hi): the regula falsi point of the value (Illinois rule).

    Moved half a tolerance inside the bracket when it falls next to an end (so the bracket closes
    from both sides); the midpoint when the bracket has not halved in three probes or an end's
    value is infinite. Where some device cannot finish by lo at all (total(lo) infinite, value 1),
    the value still falls about linearly from 1 (total ~ c / (T - lo)): regula falsi from there,
    geometric steps only when hi's value is not finite (13% fewer probes over random fleets than
    geometric steps from such an lo). Only the number of probes depends on this choice, never the
    answer.
    """
    mid = 0.5 * (lo + hi)
    unreached = f_lo >= 1.0 and lo > 0
    if unreached and not math.isfinite(f_hi):  # (no slope to follow: halve the ratio first)
        return min(max(math.sqrt(lo * hi), lo + 0.5 * rtol * abs(hi)), mid)
    stalled = not unreached and len(widths) > 3 and widths[-1] > 0.5 * widths[-4]
    if stalled or not (math.isfinite(f_lo) and math.isfinite(f_hi)) or f_lo <= f_hi:
        return mid
    x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
    step = 0.5 * rtol * abs(hi)
    return min(max(x, lo + step), hi - step) if hi - lo > 2 * step else mid


def _warm(rows: MinMaxRows, lo: float, hi: float, floor: float, f_floor: float
          ) -> tuple[float, float | None, int, float, float]:
    """Widen an old bracket geometrically until total(lo) > 1 >= total(hi).

    Returns (lo, hi or None, probes, value at lo, value at hi). The first step is the relative
    change of the total (the shares needed scale about like 1 / T), so one device's change is
    usually bracketed again in one or two probes.
    """
    f_lo, f_hi = _value(rows, lo), _value(rows, hi)
    it = 2
    width = max(hi - lo, RTOL * abs(hi), min(abs(f_lo), abs(f_hi), 1.0) * abs(hi))
    while f_lo <= 0 and lo > floor:  # the optimum moved down
        hi, f_hi, width = lo, f_lo, 2 * width
        lo = max(floor, lo - width)
        f_lo, it = (f_floor if lo == floor else _value(rows, lo)), it + 1
    if f_lo <= 0:  # lo == floor is feasible: handled by the caller's first test
        return floor, None, it, f_floor, np.inf
    while f_hi > 0:  # the optimum moved up
        lo, f_lo, width = hi, f_hi, 2 * width
        hi = hi + width
        f_hi, it = _value(rows, hi), it + 1
        if it > 400:
            return lo, None, it, f_lo, np.inf
    return lo, hi, it, f_lo, f_hi


def _finish(rows: MinMaxRows, T: float, lower: float, it: int) -> Result:
    """The plan at a feasible T, certified on the exact rows.

    Least shares, slack shared in proportion, exact objective; the bound is re-checked on every
    device's full row.
    """
    # (all options in order on every group: search the rows as they are)
    index = None if rows.whole else rows.index[rows.group]
    share, option = rows.exact(T, index)
    step = _NUDGE * abs(T)
    while share.sum() > 1:  # the grouped search may sit a hair below the exact optimum
        T, step = T + step, 2 * step
        share, option = rows.exact(T, index)
    if lower < T and rows.exact(lower)[0].sum() <= 1:  # not certified: step down until it is
        step = _NUDGE * abs(lower)
        while lower > 0 and rows.exact(lower)[0].sum() <= 1:
            lower, step = lower - step, 2 * step
    beta = share.copy()
    slack = 1.0 - beta.sum()
    if slack > 0:
        beta = beta + slack * (beta / beta.sum() if beta.sum() > 0 else 1.0 / len(beta))
    beta = np.maximum(beta, 1e-12)
    n = np.arange(len(option))
    flat = flat_index(n, option, rows.A0.shape[1])
    a, d, bmin = pick(rows.A0, flat), pick(rows.D0, flat), pick(rows.bmin0, flat)
    obj = float(np.max(a + d / beta))
    # the chosen options' own optimum (Newton's root): exact to rounding, not just to rtol
    root, _, root_beta = fixed_minmax(a, d, bmin,
                                      start=lower if lower < T else None)
    if root < obj and np.all(root_beta >= bmin):
        obj, beta = root, root_beta
    return Result(OPTIMAL, objective=obj, bound=min(lower, obj), iterations=it, options=option,
                  beta=beta)


def fixed_option_time(a: np.ndarray, d: np.ndarray, bmin: np.ndarray | None = None) -> float:
    """Least max_k (a_k + d_k / beta_k) over sum beta <= 1, beta >= bmin, for fixed options.

    Newton's root of :func:`splitopt.solving.shares.fixed_minmax` (inf when infeasible).
    """
    return fixed_minmax(a, d, bmin)[0]
