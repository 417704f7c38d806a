"""Maximising the share-budget dual L(lam, mu) (:mod:`splitopt.solving.lagrange`) over the prices.

L is concave; every point evaluated is a proven bound, so the method only decides how good the
best one is. Centre-of-gravity cuts in the (lam, mu) plane: each subgradient at a point keeps
the half-plane towards the maximum, the next point is the remaining polygon's centroid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from splitopt.solving.lagrange import Point, Table, evaluate


def price_scale(t: Table) -> tuple[float, float]:
    """Rough (lam, mu) where the budgets bind.

    (sum_k sqrt(coef))^2 over each device's least coefficient: the price at which unconstrained
    shares sum to 1.
    """
    big = np.where(t.ok, t.b + t.q, np.inf)
    lam = float(np.sum(np.sqrt(np.min(big, axis=1)))) ** 2
    mu = float(np.sum(np.sqrt(np.min(np.where(t.ok, t.c + t.r, np.inf), axis=1)))) ** 2
    return max(lam, 1e-12), max(mu, 1e-12)


@dataclass
class Dual:
    """The best point found by :func:`maximise` and the argmins of the last points.

    (Near the optimum: the options a plan is tried with.)
    """

    best: Point
    picks: list[np.ndarray]


def _clip(poly: np.ndarray, g: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """The part of the convex polygon poly where g . (y - y0) >= 0 (Sutherland-Hodgman)."""
    s = (poly - y0) @ g
    out = []
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if s[i] >= 0:
            out.append(poly[i])
        if (s[i] >= 0) != (s[j] >= 0):
            w = s[i] / (s[i] - s[j])
            out.append(poly[i] + w * (poly[j] - poly[i]))
    return np.array(out).reshape(-1, 2)


def _centroid(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    if abs(area) <= 1e-300 or len(poly) < 3:
        return poly.mean(axis=0)
    return np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6 * area)


def maximise(t: Table, *, start: Point | None = None, deadline: float | None = None,
             tol: float = 1e-11, max_evals: int = 300) -> Dual:
    """Maximise the concave L over (lam, mu) >= 0 by centre-of-gravity cuts.

    In coordinates scaled by :func:`price_scale`, the maximiser lies in a box; each subgradient g
    at y0 keeps the half-plane g . (y - y0) >= 0 (concavity), and the next point is the
    remaining polygon's centroid (at least 4/9 of the area goes each time). The box grows when
    the best point nears its far edge (the cuts stay valid). Without server shares mu stays 0
    (the polygon is a segment). Every point evaluated is a proven bound; the best is kept.
    """
    sl, sm = price_scale(t) if start is None else (max(start.lam, 1e-12), max(start.mu, 1e-12))
    scale = np.array([sl, sm if t.has_phi else 0.0])
    flat = 0.0 if t.has_phi else 1.0  # one dimension: the polygon's second side has width 0
    hi = 4.0 if start is None else 2.0
    cuts: list[tuple[np.ndarray, np.ndarray]] = []

    def box(h: float) -> np.ndarray:
        w = 0.0 if flat else h
        poly = np.array([[0.0, 0.0], [h, 0.0], [h, w], [0.0, w]])
        for g, y0 in cuts:
            poly = _clip(poly, g, y0)
        return poly

    poly = box(hi)
    best, picks, evals, still = None, [], 0, 0
    y = np.array([1.0, 0.0 if flat else 1.0]) if start is not None else _centroid(poly)
    while evals < max_evals:
        pt = evaluate(t, float(y[0] * scale[0]), float(y[1] * scale[1]) if t.has_phi else 0.0)
        evals += 1
        picks = (picks + [pt.pick])[-8:]
        if best is None or pt.value > best.value + 1e-13 * abs(pt.value):
            still = 0
        still += 1
        if best is None or pt.value > best.value:
            best = pt
        g = pt.grad * np.where(scale > 0, scale, 1.0)
        if flat:
            g[1] = 0.0
        if (not np.any(g) or still > 20
                or (deadline is not None and time.perf_counter() > deadline)):
            break
        cuts.append((g, y.copy()))
        poly = _clip(poly, g, y)
        yb = np.array([best.lam / scale[0], best.mu / scale[1] if t.has_phi else 0.0])
        if np.any(yb > 0.8 * hi):
            hi *= 8.0
            poly = box(hi)
        if len(poly) == 0:  # the cuts (from inexact subgradients) left nothing: restart round
            poly = box(hi)
            cuts.clear()
        span = np.ptp(poly, axis=0).max() if len(poly) else 0.0
        if span <= tol * max(1.0, float(np.abs(yb).max())):
            break
        y = _centroid(poly)
    assert best is not None
    late = deadline is not None and time.perf_counter() > deadline
    for lam, mu in ((0.0, best.mu), (best.lam, 0.0), (0.0, 0.0)):  # a price of 0 is reached
        if (lam, mu) != (best.lam, best.mu) and (t.has_phi or mu == 0.0) and not late:
            pt = evaluate(t, lam, mu)
            evals += 1
            if pt.value > best.value:
                best = pt
    return Dual(best, picks)
