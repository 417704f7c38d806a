"""Exact bandwidth and server shares for fixed options (closed forms and 1-D roots, pure numpy).

Each device k has fixed terms and gets a bandwidth share beta_k (and, with a shared server, a
server share phi_k), sum beta <= 1, sum phi <= 1:

    T_k = a_k + s_k / phi_k + d_k / beta_k.

:func:`fixed_minmax`   min over beta of max_k T_k (no server share, optional minimum shares): the
                       root of sum_k max(d_k / (T - a_k), bmin_k) = 1, found by Newton from the
                       left. The left side is convex and non-increasing in T, so every iterate is
                       a proven lower bound and the root is reached quadratically (exact to
                       rounding, about 5 steps).
:func:`server_shares`  is round time T reachable with both shares (closed form, below), and the
                       shares that reach it.
:func:`server_fixed_minmax`  the least such T (bisection on the closed form) and its shares.
:func:`sum_shares`     min sum_k d_k / beta_k with sum beta <= B: beta ~ sqrt(d) (Cauchy-Schwarz).

Closed form with a server share (KKT; docs/formulations.md): with R_k = T - a_k and
a = sum d / R, g = sum sqrt(s d) / R, c = sum s / R, the least total server share when
sum beta <= 1 is F = c + g^2 / (1 - a) (a < 1), at beta_k = (d_k + sqrt(s_k d_k) t) / R_k and
phi_k = s_k / R_k + sqrt(s_k d_k) / (R_k t), t = (1 - a) / g. T is reachable iff F <= 1.

These are the kernels under the builder's exact paths (splitopt.solving.bisection,
splitopt.solving.resource) and the formulations' own solves and baselines.
"""

from __future__ import annotations

import numpy as np

TINY = 1e-12


def positive_shares(x: np.ndarray) -> np.ndarray:
    """Shares > 0 summing to at most 1 (a device that needs none gets a negligible sliver)."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    zero = x <= TINY
    if zero.any():
        x = np.where(zero, TINY, x * (1.0 - TINY * zero.sum()))
    total = x.sum()
    return x / total if total > 1.0 else x


def fixed_minmax(a: np.ndarray, d: np.ndarray, bmin: np.ndarray | None = None,
                 start: float | None = None) -> tuple[float, float, np.ndarray]:
    """Min over beta of max_k a_k + d_k / beta_k with sum beta <= 1 and beta >= bmin.

    Returns ``(value, lower_bound, beta)``: ``value`` is achieved by ``beta``; no allocation
    beats ``lower_bound`` (sum_k max(d_k / (T - a_k), bmin_k) >= 1 there). Infeasible (the
    minimum shares sum above 1): ``(inf, inf, empty)``. ``start``: a round time known to be at
    or below the optimum (e.g. a certified lower bound); Newton's iteration starts there when it
    lies above its default start max_k (a_k + d_k) and below the root (a step or two instead of
    about log2(N) + 5).
    """
    a, d = np.asarray(a, dtype=float), np.asarray(d, dtype=float)
    bmin = np.zeros_like(a) if bmin is None else np.asarray(bmin, dtype=float)
    if not len(a):
        return 0.0, 0.0, np.zeros(0)
    if bmin.sum() > 1.0 + 1e-12:
        return np.inf, np.inf, np.zeros(0)
    if not (d > 0).any():
        beta = bmin + (1.0 - bmin.sum()) / len(a)
        return float(a.max()), float(a.max()), positive_shares(beta)
    t = float(np.max(a + d))  # each term alone needs its whole band here: total >= 1, left of root
    live = d > 0
    al, dl, bl = a[live], d[live], bmin[live]
    floor = float(bmin[~live].sum()) - 1.0
    if start is not None and start > t and float(
            np.maximum(dl / (start - al), bl).sum()) + floor >= 0.0:
        t = float(start)  # nearer the root, left of it too: Newton's steps stay left of it
    flat = bool(bl.any())  # terms at their minimum share are flat in T
    for _ in range(100):
        gap = t - al
        need = dl / gap
        if flat:
            above = need > bl
            f = float(np.maximum(need, bl).sum()) + floor
            df = -float(np.sum(need[above] / gap[above]))
        else:
            f, df = float(need.sum()) + floor, -float(need @ (1.0 / gap))
        if f <= 0 or df == 0:
            break
        step = -f / df
        if step <= 1e-15 * max(abs(t), 1.0):
            break
        t += step
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(live, d / np.maximum(t - a, 0.0), 0.0)
    share = np.maximum(share, bmin)
    beta = positive_shares(share / max(1.0, float(share.sum())))
    value = float(np.max(a + d / beta))
    return value, min(t, value), beta


def least_server_share(a: float, g: float, c: float) -> float:
    """F = c + g^2 / (1 - a): the least sum phi with sum beta <= 1 (inf when a >= 1 and g > 0)."""
    if g <= 0:
        return float(c) if a <= 1 + 1e-15 else np.inf
    return float(c + g**2 / (1 - a)) if a < 1 else np.inf


def server_shares(a: np.ndarray, s: np.ndarray, d: np.ndarray, t: float
                  ) -> tuple[bool, np.ndarray, np.ndarray]:
    """Can every device finish by ``t`` with sum beta, sum phi <= 1? (the closed form above).

    Returns ``(reachable, beta, phi)``; the shares are the closed form's (meaningful when
    reachable).
    """
    r = t - a
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(r > 0, 1.0 / r, 0.0)
        sd = np.sqrt(s * d)
        fa, fg, fc = d * inv, sd * inv, s * inv
        # a device with transfer or server work cannot finish by t <= a: t is unreachable
        late = (r < 0) | ((r <= 0) & ((d > 0) | (s > 0)))
        A, G, C = fa.sum(), fg.sum(), fc.sum()
        F = np.inf if late.any() else least_server_share(A, G, C)
        if G > 0 and A < 1:
            scale = (1 - A) / G
            beta = (d + sd * scale) * inv
            phi = s * inv + sd * inv / scale
        else:
            beta, phi = fa, fc
    return bool(F <= 1 + 1e-12), beta, phi


def server_fixed_minmax(a: np.ndarray, s: np.ndarray, d: np.ndarray, *, lo: float | None = None,
                        hi: float | None = None) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Least round time with both shares for fixed options: ``(value, bound, beta, phi)``.

    Bisection on :func:`server_shares` between ``lo`` (default max a: unreachable below) and
    ``hi`` (default: equal shares 1/n reach it) to 1e-14 relative.
    """
    a, s, d = (np.asarray(x, dtype=float) for x in (a, s, d))
    n = len(a)
    t_lo = float(a.max()) if lo is None else lo
    t_hi = float(np.max(a + n * (s + d))) if hi is None else hi
    for _ in range(200):
        if t_hi - t_lo <= 1e-14 * abs(t_hi):
            break
        mid = 0.5 * (t_lo + t_hi)
        if server_shares(a, s, d, mid)[0]:
            t_hi = mid
        else:
            t_lo = mid
    _, beta, phi = server_shares(a, s, d, t_hi)
    beta, phi = positive_shares(beta), positive_shares(phi)
    value = float(np.max(a + s / phi + d / beta))
    return value, min(t_lo, value), beta, phi


def sum_shares(d: np.ndarray, budget: float = 1.0) -> tuple[float, np.ndarray]:
    """Min sum_k d_k / beta_k with sum beta <= budget: beta ~ sqrt(d), value (sum sqrt d)^2 / B."""
    r = np.sqrt(np.maximum(np.asarray(d, dtype=float), 0.0))
    total = r.sum()
    if total == 0:
        return 0.0, np.full(len(r), budget / max(len(r), 1))
    return float(total**2 / budget), budget * r / total
