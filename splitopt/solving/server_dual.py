"""Is a round time reachable with a server share and free options? A Lagrangian branch and bound.

T_k = a[k, c] + s[k, c] / phi_k + d[k, c] / beta_k over options c, sum beta <= 1, sum phi <= 1.
For a probe T, the Lagrangian dual of sum phi <= 1 separates by device: at multiplier lam each
device needs (sqrt d + sqrt(lam s))^2 / (T - a) of "beta + lam phi" at its best option, so
g(lam) = sum_k min_c (...) - lam > 1 for some lam >= 0 proves T unreachable. The dual's choices
(or a greedy repair of them) with a reachable closed form (:func:`splitopt.solving.shares.
server_shares`) prove T reachable. Otherwise branch on a device's option. Devices with identical
rows (a fleet of a few classes) are priced once and counted.

:func:`dual_decide` is one of the probe tests of :func:`splitopt.solving.resource.server_minmax`.
"""

from __future__ import annotations

import numpy as np

from splitopt.solving.shares import server_shares


def _pair_need(d: np.ndarray, s: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    """Min beta + lam * phi subject to d / beta + s / phi <= t: (sqrt d + sqrt(lam s))^2 / t."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (np.sqrt(d) + np.sqrt(lam * s)) ** 2 / t
    return np.where(t > 0, v, np.inf)


def row_groups(a: np.ndarray, s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The group of each device: devices with equal (a, s, d) rows share one (a fleet's classes)."""
    key = np.concatenate([a, s, d], axis=1)
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


def _best_lambda(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float, inv: np.ndarray
                 ) -> tuple[float, float, np.ndarray]:
    """Maximise the concave dual g over lam >= 0 (golden section on log lam).

    ``inv`` groups devices with identical rows (:func:`row_groups`): each group is priced once
    and counted.
    """
    _, reps, inv = np.unique(inv, return_index=True, return_inverse=True)
    inv = inv.ravel()
    counts = np.bincount(inv)
    ua, us, ud = a[reps], s[reps], d[reps]
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


def undominated(a: np.ndarray, s: np.ndarray, d: np.ndarray) -> np.ndarray:
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


def dual_decide(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float, budget: int,
                groups: np.ndarray | None = None) -> tuple[bool | None, np.ndarray | None]:
    """Is round time t feasible? Branch and bound over choices with the Lagrangian dual as bound.

    A node fixes some devices' candidates; its dual > 1 proves the node infeasible; the dual's
    choices with a feasible convex allocation prove feasibility. Otherwise branch on the free
    device whose two best candidates are closest at the dual's multiplier. ``None``: out of budget.
    ``groups``: :func:`row_groups` of the rows (computed here when not given).
    """
    n, m = a.shape
    groups = row_groups(a, s, d) if groups is None else groups
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
        g, lam, c = _best_lambda(aa, s, d, t, groups * (m + 1) + fixed + 1)
        if g > 1.0 + 1e-12:
            continue
        if server_shares(a[rows, c], s[rows, c], d[rows, c], t)[0]:
            return True, c
        fixed_c = _repair(aa, s, d, t, lam, c)
        if fixed_c is not None and server_shares(a[rows, fixed_c], s[rows, fixed_c],
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
