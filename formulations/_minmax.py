"""Exact resource-allocation kernels shared by the joint formulations (pure numpy).

Every device k picks one candidate c (a cut, a batch, a mode) and gets a bandwidth share beta_k
(and, where the server is shared, a server share phi_k), with sum beta <= 1 and sum phi <= 1:

    T_k = a[k, c] + s[k, c] / phi_k + d[k, c] / beta_k.

``minmax_fixed``  min_beta max_k T_k for fixed candidates: the root of sum_k d_k / (T - a_k) = 1,
                  found by Newton from the left (the function is convex and decreasing, so every
                  iterate is a proven lower bound) -- exact to rounding.
``minmax_choice`` the same with a free candidate per device: bisection on T, each device taking
                  its cheapest candidate min_c d / (T - a); then the fixed-choice root at the
                  last feasible probe. Lower bound = last infeasible probe.
``minmax_shared`` with a server share too: bisection on T whose infeasibility test is the
                  Lagrangian dual of sum phi <= 1 (a proof) and whose feasibility test is the
                  closed-form convex allocation for the dual's choices (a plan); the two give a
                  proven gap, which is zero unless discrete choices leave a duality gap.
``sum_alloc``     min sum_k d_k / beta_k with sum beta <= B: beta proportional to sqrt(d).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY = 1e-12


@dataclass(frozen=True)
class Alloc:
    """Result of an allocation: choices, shares, round time and a proven lower bound on it."""

    choice: np.ndarray
    beta: np.ndarray
    phi: np.ndarray
    value: float
    bound: float
    probes: int = 0


def _positive_shares(x: np.ndarray) -> np.ndarray:
    """Shares > 0 summing to at most 1 (a device that needs none gets a negligible sliver)."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    zero = x <= _TINY
    if zero.any():
        x = np.where(zero, _TINY, x * (1.0 - _TINY * zero.sum()))
    total = x.sum()
    return x / total if total > 1.0 else x


def minmax_fixed(a: np.ndarray, d: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Min over beta of max_k a_k + d_k / beta_k with sum beta <= 1.

    Returns ``(value, lower_bound, beta)``: ``value`` is achieved by ``beta``; ``lower_bound`` has
    sum d / (T - a) >= 1, so no allocation beats it.
    """
    a, d = np.asarray(a, dtype=float), np.asarray(d, dtype=float)
    if not (d > 0).any():
        beta = _positive_shares(np.full(len(a), 1.0 / len(a)))
        return float(a.max()), float(a.max()), beta
    t = float(np.max(a + d))  # each term alone is 1 here: f(t) >= 1, left of the root
    t = max(t, float(a.max()))
    for _ in range(100):
        gap = t - a
        f = float(np.sum(d / gap)) - 1.0
        df = -float(np.sum(d / gap**2))
        step = -f / df
        if step <= 1e-15 * max(abs(t), 1.0):
            break
        t += step
    beta = _positive_shares(d / (t - a) / max(1.0, float(np.sum(d / (t - a)))))
    value = float(np.max(a + d / beta))
    return value, min(t, value), beta


def _need(a: np.ndarray, d: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Each device's cheapest bandwidth at round time t, and the candidate giving it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(a < t, d / (t - a), np.inf)
    need = np.where((a <= t) & (d == 0), 0.0, need)
    c = np.argmin(need, axis=1)
    return need[np.arange(len(c)), c], c


def minmax_choice(a: np.ndarray, d: np.ndarray, *, rel_tol: float = 1e-13) -> Alloc:
    """Min over candidates and beta of max_k a[k,c_k] + d[k,c_k] / beta_k (exact).

    ``a`` and ``d`` are (N, C) with ``inf`` in ``a`` for candidates that are not allowed.
    """
    n = a.shape[0]
    lo = float(np.max(np.min(a, axis=1)))
    hi = float(np.max(np.min(a + n * d, axis=1)))  # equal shares 1/n are feasible here
    if not np.isfinite(hi):
        raise ValueError("a device has no allowed candidate")
    probes = 0
    need, _ = _need(a, d, lo)
    if need.sum() <= 1.0:
        hi = lo
    while hi - lo > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        probes += 1
        need, _ = _need(a, d, mid)
        if need.sum() <= 1.0:
            hi = mid
        else:
            lo = mid
    _, choice = _need(a, d, hi)
    rows = np.arange(n)
    value, _, beta = minmax_fixed(a[rows, choice], d[rows, choice])
    return Alloc(choice, beta, np.ones(n), value, min(lo, value), probes)


def sum_alloc(d: np.ndarray, budget: float = 1.0) -> tuple[float, np.ndarray]:
    """Min sum_k d_k / beta_k with sum beta <= budget: beta ~ sqrt(d), value (sum sqrt d)^2 / B."""
    r = np.sqrt(np.maximum(np.asarray(d, dtype=float), 0.0))
    total = r.sum()
    if total == 0:
        return 0.0, np.full(len(r), budget / max(len(r), 1))
    return float(total**2 / budget), budget * r / total


# ---------------------------------------------------------------- server share (two resources)
def _pair_need(d: np.ndarray, s: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    """Min beta + lam * phi subject to d / beta + s / phi <= t: (sqrt d + sqrt(lam s))^2 / t."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (np.sqrt(d) + np.sqrt(lam * s)) ** 2 / t
    return np.where(t > 0, v, np.inf)


def _fixed_pair(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float
                ) -> tuple[bool, np.ndarray, np.ndarray]:
    """Fixed candidates: can every device finish by t with sum beta, sum phi <= 1? (closed form)."""
    slack = t - a
    if np.any(slack <= 0):
        return False, np.zeros(0), np.zeros(0)
    srv = float(np.sum(s / slack))
    if srv >= 1.0:
        return False, np.zeros(0), np.zeros(0)
    root = float(np.sum(np.sqrt(d * s) / slack)) / (1.0 - srv)  # sqrt of the optimal multiplier
    lam = root**2
    total = float(np.sum((np.sqrt(d) + root * np.sqrt(s)) ** 2 / slack)) - lam
    if total > 1.0 + 1e-12:
        return False, np.zeros(0), np.zeros(0)
    k = (np.sqrt(d) + root * np.sqrt(s)) / slack
    beta = np.sqrt(d) * k
    phi = np.sqrt(s) * k / root if root > 0 else np.where(s > 0, s / slack / max(srv, _TINY), 0.0)
    return True, beta, phi


def _best_lambda(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float
                 ) -> tuple[float, float, np.ndarray]:
    """Maximise the concave dual g over lam >= 0 (golden section on log lam).

    Devices with identical rows (a fleet of a few classes) are priced once and counted.
    """
    key = np.ascontiguousarray(np.concatenate([a, s, d], axis=1))
    first: dict[bytes, int] = {}
    inv = np.array([first.setdefault(row.tobytes(), len(first)) for row in key])
    reps = np.zeros(len(first), dtype=int)
    reps[inv[::-1]] = np.arange(len(inv))[::-1]  # each group's first device
    uniq, counts = key[reps], np.bincount(inv)
    m = a.shape[1]
    ua, us, ud = uniq[:, :m], uniq[:, m:2 * m], uniq[:, 2 * m:]
    slack = np.where(t - ua > 0, t - ua, np.nan)
    sd, ss = np.sqrt(ud), np.sqrt(us)
    w = counts.astype(float)

    def dual(lam: float) -> tuple[float, np.ndarray]:
        with np.errstate(invalid="ignore"):
            v = (sd + np.sqrt(lam) * ss) ** 2 / slack
        v = np.where(np.isnan(v), np.inf, v)
        c = np.argmin(v, axis=1)
        return float(w @ v[np.arange(len(c)), c]) - lam, c

    g0, c0 = dual(0.0)
    best = (g0, 0.0, c0)
    lo, hi = -12.0, 12.0
    phi_r = (np.sqrt(5) - 1) / 2
    x1, x2 = hi - phi_r * (hi - lo), lo + phi_r * (hi - lo)
    f1, f2 = dual(10**x1), dual(10**x2)
    for _ in range(60):
        if f1[0] > f2[0]:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - phi_r * (hi - lo)
            f1 = dual(10**x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + phi_r * (hi - lo)
            f2 = dual(10**x2)
    for g, x in ((f1, x1), (f2, x2)):
        if g[0] > best[0]:
            best = (g[0], 10**x, g[1])
    return best[0], best[1], best[2][inv]


def _undominated(a: np.ndarray, s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``a`` with ``inf`` for options another option of the same device beats in a, s and d.

    Exact to drop: every row is monotone in a, s and d, so the better option fits wherever the
    dominated one does.
    """
    a = a.copy()
    for k in range(a.shape[0]):
        le = ((a[k][:, None] <= a[k][None, :]) & (s[k][:, None] <= s[k][None, :])
              & (d[k][:, None] <= d[k][None, :]))
        lt = ((a[k][:, None] < a[k][None, :]) | (s[k][:, None] < s[k][None, :])
              | (d[k][:, None] < d[k][None, :]))
        dominated = (le & lt).any(axis=0)
        a[k, dominated & np.isfinite(a[k])] = np.inf
    return a


def _shares_needed(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per option: D/R, sqrt(S D)/R, S/R with R = t - a (inf where the option cannot finish)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(t - a > 0, t - a, np.nan)
        out = (d / r, np.sqrt(s * d) / r, s / r)
    return tuple(np.where(np.isnan(x), np.inf, x) for x in out)  # type: ignore[return-value]


def _repair(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float, lam: float,
            c: np.ndarray) -> np.ndarray | None:
    """Greedy primal repair of the dual's choices.

    Switch one device at a time to its second-best option at ``lam`` while the least total
    server share, c + s^2 / (1 - a) (the closed form in docs/formulations.md), drops; the choices
    once it is <= 1, else None. Only ever adds a feasibility certificate, so the search stays
    exact.
    """
    n = len(c)
    rows = np.arange(n)
    da, ds, dc = _shares_needed(a, s, d, t)
    need = _pair_need(d, s, t - a, lam)
    need[rows, c] = np.inf
    alt = np.argmin(need, axis=1)
    ok = np.isfinite(need[rows, alt])
    c = c.copy()
    for _ in range(n):
        sa, ss, sc = da[rows, c].sum(), ds[rows, c].sum(), dc[rows, c].sum()
        cur = sc + ss**2 / (1 - sa) if sa < 1 else np.inf
        if cur <= 1.0 - 1e-12:
            return c
        na = sa + da[rows, alt] - da[rows, c]
        ns = ss + ds[rows, alt] - ds[rows, c]
        nc = sc + dc[rows, alt] - dc[rows, c]
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(ok & (na < 1), nc + ns**2 / (1 - na), np.inf)
        k = int(np.argmin(new))
        if not new[k] < cur:
            return None
        c[k], alt[k] = alt[k], c[k]
    return None


def _decide(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float, budget: int
            ) -> tuple[bool | None, np.ndarray | None]:
    """Is round time t feasible? Branch and bound over choices with the Lagrangian dual as bound.

    A node fixes some devices' candidates; its dual > 1 proves the node infeasible; the dual's
    choices with a feasible convex allocation prove feasibility. Otherwise branch on the free
    device whose two best candidates are closest at the dual's multiplier. ``None``: out of budget.
    """
    n, m = a.shape
    stack: list[np.ndarray] = [np.full(n, -1)]
    nodes = 0
    rows = np.arange(n)
    while stack:
        nodes += 1
        if nodes > budget:
            return None, None
        fixed = stack.pop()
        aa = a.copy()
        pinned = fixed >= 0
        aa[pinned] = np.inf
        aa[rows[pinned], fixed[pinned]] = a[rows[pinned], fixed[pinned]]
        g, lam, c = _best_lambda(aa, s, d, t)
        if g > 1.0 + 1e-12:
            continue
        if _fixed_pair(a[rows, c], s[rows, c], d[rows, c], t)[0]:
            return True, c
        fixed_c = _repair(aa, s, d, t, lam, c)
        if fixed_c is not None and _fixed_pair(a[rows, fixed_c], s[rows, fixed_c],
                                               d[rows, fixed_c], t)[0]:
            return True, fixed_c
        free = np.flatnonzero(~pinned)
        if not len(free):
            continue
        v = np.sort(_pair_need(d[free], s[free], t - aa[free], lam), axis=1)
        k = free[int(np.argmin(v[:, 1] - v[:, 0]))] if m > 1 else free[0]
        for j in np.flatnonzero(np.isfinite(aa[k])):
            child = fixed.copy()
            child[k] = j
            stack.append(child)
    return False, None


def minmax_shared(a: np.ndarray, s: np.ndarray, d: np.ndarray, *, rel_tol: float = 1e-10,
                  budget: int = 200, deadline: float | None = None) -> Alloc:
    """Min max_k a + s / phi_k + d / beta_k over candidates, beta and phi (sums <= 1).

    Each probe T is decided by :func:`_decide`: proven infeasible (T is a lower bound), feasible
    (a plan), or undecided when the node budget runs out (moves the search up, proves nothing), so
    the returned bound is always a proof and the gap says how far it is. ``deadline``
    (``time.perf_counter()`` seconds) stops the bisection there with what is proven so far.
    """
    import time

    n = a.shape[0]
    rows = np.arange(n)
    a = _undominated(a, s, d)
    lo = proven = float(np.max(np.min(a, axis=1)))
    c_eq = np.argmin(a + n * (s + d), axis=1)  # equal shares finish by hi
    hi = float(np.max((a + n * (s + d))[rows, c_eq]))
    best, probes = c_eq, 0
    while hi - lo > rel_tol * hi and probes < 200:
        if deadline is not None and time.perf_counter() > deadline:
            break
        mid = 0.5 * (lo + hi)
        probes += 1
        ok, c = _decide(a, s, d, mid, budget)
        if ok:
            hi, best = mid, c
        elif ok is None:
            lo = mid
        else:
            lo = proven = mid
    return _finish_shared(a, s, d, best, proven, probes)


def _finish_shared(a: np.ndarray, s: np.ndarray, d: np.ndarray, choice: np.ndarray, lo: float,
                   probes: int) -> Alloc:
    """Exact min T for fixed choices (bisection on the closed-form feasibility), then shares."""
    rows = np.arange(len(choice))
    ac, sc, dc = a[rows, choice], s[rows, choice], d[rows, choice]
    t_lo, t_hi = float(ac.max()), float(np.max(ac + len(ac) * (sc + dc)))
    for _ in range(200):
        if t_hi - t_lo <= 1e-14 * t_hi:
            break
        mid = 0.5 * (t_lo + t_hi)
        if _fixed_pair(ac, sc, dc, mid)[0]:
            t_hi = mid
        else:
            t_lo = mid
    _, beta, phi = _fixed_pair(ac, sc, dc, t_hi)
    beta, phi = _positive_shares(beta), _positive_shares(phi)
    value = float(np.max(ac + sc / phi + dc / beta))
    return Alloc(choice, beta, phi, value, min(lo, value), probes)
