"""Plans and proofs from the share-budget dual (:mod:`splitopt.solving.lagrange`).

1. The dual is maximised over (lam, mu); its value is the root bound.
2. Each device's argmin at the last dual points gives options; their shares are solved exactly
   (:func:`plan_shares`): the incumbent, priced by the Problem's own rows (``exact``).
3. Lagrangian reduced-cost fixing: with device k forced to option o the dual at the same prices
   is L + theta[k,o] - min_o theta[k,o], a proven bound for every plan using (k, o); an option
   whose bound is above the incumbent (less the tolerance) is closed.
4. Branch and bound on the devices left ambiguous (options that differ between the last dual
   points), best bound first, each node's bound its own dual maximum. With two coupling budgets
   the convexified problem has at most two devices between options (Shapley-Folkman), so the
   duality gap is about one device's worth at any fleet size.

A node is closed when its bound is within ``gap`` of the incumbent; the proven bound reported is
the least bound of every node and option closed or still open.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.backends.base import OPTIMAL, TIME_LIMIT
from splitopt.backends.results import Result
from splitopt.solving.lagrange import Point, Table, _over, evaluate, extract
from splitopt.solving.lagrange_max import maximise

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


#: nodes without any plan after which the dual route leaves the problem to the generic route
NO_PLAN_NODES = 64
#: the part of each budget the share fits use; the rest (1e-9) is spread over every device
TOTAL = 1.0 - 1e-9


def fit(coef: np.ndarray, lo: np.ndarray) -> np.ndarray | None:
    """Argmin sum coef/s over lo <= s <= 1, sum s <= 1, the slack then spread evenly.

    KKT: s = clip(sqrt(coef / p), lo, 1) with the price p where the sum is ``TOTAL`` (bisection
    in log space, keeping the feasible end); the last 1e-9 of the budget is spread over every
    device, so that a share nothing asks for is still > 0 (the guard's (0, 1]). None when the
    least shares alone sum above ``TOTAL``.
    """
    total = TOTAL
    room = total - float(lo.sum())
    if room < 0 or np.any(lo > 1):
        return None
    s = np.where(coef > 0, 1.0, lo)
    if s.sum() > total:
        root = np.sqrt(coef)
        hi = 2.0 * (np.log(root.sum()) - np.log(max(room, 1e-300))) + 1.0  # sum s < room
        lo_p = hi - 80.0
        for _ in range(100):
            mid = 0.5 * (lo_p + hi)
            if np.clip(root * np.exp(-0.5 * mid), lo, 1.0).sum() <= total:
                hi = mid
            else:
                lo_p = mid
        s = np.clip(root * np.exp(-0.5 * hi), lo, 1.0)
        if s.sum() > total:
            return None
    return np.minimum(s + max(1.0 - s.sum(), 0.0) / len(s), 1.0)


def _least(q: np.ndarray, r: np.ndarray, R: np.ndarray, floor: np.ndarray,
           other: np.ndarray) -> np.ndarray:
    """The least share meeting q/share + r/other <= R (and >= floor); inf where none does."""
    with np.errstate(divide="ignore", invalid="ignore"):
        left = R - _over(r, other)
        need = np.where(q > 0, np.where(left > 0, q / left, np.inf), 0.0)
    return np.maximum(floor, need)


def _phi_for_least_beta(q: np.ndarray, r: np.ndarray, R: np.ndarray, pl: np.ndarray,
                        ) -> np.ndarray:
    """Server shares (sum <= 1) that minimise the sum of the least bandwidth shares.

    Per device q/(R - r/phi) + rho phi is least at phi = (r + sqrt(q r / rho)) / R (closed form,
    at least r/R, pl); rho by bisection in log space to the feasible end of sum phi <= 1.
    """
    base = np.maximum(pl, np.where(r > 0, r / R, 0.0))
    root = np.sqrt(q * r) / R

    def at(log_rho: float) -> np.ndarray:
        return np.clip(np.maximum(base, r / R + root * np.exp(-0.5 * log_rho)), 0.0, 1.0)

    lo, hi = -200.0, 200.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if at(mid).sum() <= TOTAL else (mid, hi)
    return at(hi)


def polish(t: Table, pt: Point, steps: int = 30) -> Point:
    """The fixed-option dual's maximiser to |gradient| ~ 1e-13 by Newton steps.

    A forward-difference Jacobian of the smooth gradient; a step is kept when it shrinks the
    gradient.

    With one option per device L is smooth; at its maximiser the argmin shares meet both
    budgets with equality (or their price is 0), which a cutting-plane method reaches only to
    about the square root of its value tolerance (gradients of 1e-7).
    """
    dims = 2 if t.has_phi else 1

    def size(q: Point) -> float:
        g = q.grad[:dims].copy()
        at0 = np.array([q.lam, q.mu])[:dims] <= 0
        g[at0] = np.maximum(g[at0], 0.0)  # a zero price with a slack budget is optimal
        return float(np.abs(g).max())

    for _ in range(steps):
        if size(pt) <= 1e-13:
            break
        x = np.array([pt.lam, pt.mu])[:dims]
        jac = np.zeros((dims, dims))
        for i in range(dims):
            h = 1e-7 * max(x[i], 1e-12)
            y = x.copy()
            y[i] += h
            q = evaluate(t, float(y[0]), float(y[1]) if dims > 1 else 0.0)
            jac[:, i] = (q.grad[:dims] - pt.grad[:dims]) / h
        try:
            step = np.linalg.solve(jac, -pt.grad[:dims])
        except np.linalg.LinAlgError:
            break
        for _ in range(30):
            y = np.maximum(x + step, 0.0)
            q = evaluate(t, float(y[0]), float(y[1]) if dims > 1 else 0.0)
            if size(q) < size(pt):
                pt = q
                break
            step = step / 2
        else:
            break
    return pt


def plan_shares(t: Table, pick: np.ndarray, start: Point | None,
                deadline: float | None) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(objective, beta, phi) of the best shares for one option per device (``pick``).

    The fixed-option dual (smooth: one option each) is maximised from ``start`` and polished
    (:func:`polish`); its phi (scaled into the budget) fixes each device's least beta through its
    row; where those sum above 1 (the dual is ~1e-13 off), phi moves the least way towards the
    phi that needs the least band. Beta is fitted to the budget exactly, then phi to beta: every
    step keeps every row and both budgets. None when the options need more than the band.
    """
    n = len(pick)
    rows = np.arange(n)
    one = np.zeros_like(t.ok)
    one[rows, pick] = True
    if not t.ok[rows, pick].all():
        return None
    a, b, c, q, r, R, bl, pl = (getattr(t, f)[rows, pick] for f in "a b c q r R bl pl".split())
    R = np.where(np.isfinite(R), R, 1.0)
    other = _phi_for_least_beta(q, r, R, pl) if t.has_phi else np.ones(n)
    if _least(q, r, R, bl, other).sum() > TOTAL:
        return None  # these options need more than the band whatever the server shares
    tab = t.only(one).compact()  # one column: each evaluation ~1/width of the full table's
    pt = polish(tab, maximise(tab, start=start, deadline=deadline).best)
    phi = pt.phi[:, 0] if t.has_phi else np.ones(n)
    if t.has_phi:
        phi = phi * min(1.0, TOTAL / max(float(phi.sum()), 1e-300))
        least = _least(q, r, R, bl, phi)
        if least.sum() > TOTAL:  # the dual's phi leaves too little band (it is ~1e-13 off)
            lo_w, hi_w = 0.0, 1.0  # least weight on `other` that fits the band (convex)
            for _ in range(60):
                mid = 0.5 * (lo_w + hi_w)
                fits = _least(q, r, R, bl, (1 - mid) * phi + mid * other).sum() <= TOTAL
                lo_w, hi_w = (lo_w, mid) if fits else (mid, hi_w)
            phi = (1 - hi_w) * phi + hi_w * other
    best = None
    for _ in range(3):  # beta to phi, then phi to beta: each keeps every row and budget
        beta = fit(b, _least(q, r, R, bl, phi))
        if beta is None:
            break
        if t.has_phi:
            got = fit(c, _least(r, q, R, pl, beta))
            phi = phi if got is None else got
        value = float(np.sum(a + _over(b, beta) + _over(c, phi))) + t.const
        if best is None or value < best[0]:
            best = (value, beta, phi)
    return best


def solve_lagrange(p: Problem, *, deadline: float | None, gap: float,
                   exact: Callable[[np.ndarray], float | None],
                   progress: Any = None,
                   start: Callable[[], np.ndarray | None] | None = None) -> Result | None:
    """The plan and bound by the share-budget dual, or None.

    None when p lacks the structure, or no plan came from it within ``NO_PLAN_NODES`` nodes:
    the caller's route decides then.

    ``exact(x)`` prices Problem columns by the Problem's own rows (None when one is broken): a
    plan becomes the incumbent only through it. ``start()``: options (a column of the option
    table per device, or None) tried at the root, e.g. a structured path's least-latency plan,
    which meets the deadline rows where the dual's argmins (at a kink) may need too much band.
    """
    t = extract(p)
    if t is None or not t.ok.any(axis=1).all():
        return None
    if np.sum(np.where(t.ok, t.bl, np.inf).min(axis=1)) > 1 or \
            np.sum(np.where(t.ok, t.pl, np.inf).min(axis=1)) > 1:
        return None  # the least shares alone break a budget: the generic route explains it
    t = t.prune().compact()
    n, width = t.ok.shape
    rows = np.arange(n)
    # nodes work on their open options only (compacted): their cols are positions in t
    pos = replace(t, cols=np.tile(np.arange(width), (n, 1)))
    inc: dict[str, Any] = {"value": np.inf}

    def columns(options: np.ndarray, beta: np.ndarray, phi: np.ndarray) -> np.ndarray:
        o = p.n_options
        x = np.zeros(p.n_cols)
        x[rows * o + options] = 1.0
        x[p.bandwidth.offset:p.bandwidth.offset + n] = beta
        if p.server_share is not None:
            x[p.server_share.offset:p.server_share.offset + n] = phi
        return x

    def offer(tab: Table, picks: list[np.ndarray], start: Point) -> None:
        seen = set()
        for pick in picks:
            key = pick.tobytes()
            late = deadline is not None and time.perf_counter() > deadline
            if key in seen or (late and np.isfinite(inc["value"])):
                continue
            seen.add(key)
            got = plan_shares(tab, pick, start, deadline)
            if got is None or got[0] >= inc["value"]:
                continue
            if not all(np.all(v > 0) and v.sum() <= 1 + 1e-12 for v in got[1:2 + t.has_phi]):
                continue  # the guard's budget check (exact() prices the Problem's rows only)
            options = t.cols[rows, tab.cols[rows, pick]]
            x = columns(options, got[1], got[2])
            val = exact(x)
            if val is not None and val < inc["value"]:
                inc.update(value=val, x=x, options=options, beta=got[1], phi=got[2])

    floor = np.inf  # the least bound of everything closed
    ids = itertools.count(1)  # ties in the heap never compare the masks
    heap: list[tuple[float, int, np.ndarray, Point | None]] = [(-np.inf, 0, t.ok, None)]
    nodes, bound = 0, -np.inf
    while heap:
        nb, _, ok, start = heapq.heappop(heap)
        tol = gap * max(abs(inc["value"]), 1e-300) if np.isfinite(inc["value"]) else 0.0
        if nb >= inc["value"] - tol:
            floor = min(floor, nb)
            continue
        if deadline is not None and time.perf_counter() > deadline:
            heapq.heappush(heap, (nb, next(ids), ok, start))
            break
        nodes += 1
        tab = pos.only(ok).compact()
        now = time.perf_counter()  # a fifth of the time left is kept for the node's plans
        d = maximise(tab, start=start,
                     deadline=None if deadline is None else now + 0.8 * (deadline - now))
        lb = d.best.value
        offer(tab, [d.best.pick, *d.picks[::-1]], d.best)
        tol = gap * max(abs(inc["value"]), 1e-300) if np.isfinite(inc["value"]) else 0.0
        theta = d.best.theta
        least = theta[rows, d.best.pick]
        with np.errstate(invalid="ignore"):
            forced = lb + (theta - least[:, None])  # the bound with (k, o) forced
        close = tab.ok & (forced >= inc["value"] - tol)
        if close.any():
            floor = min(floor, float(forced[close].min()))
            ok = ok.copy()
            ks, js = np.nonzero(close)
            ok[ks, tab.cols[ks, js]] = False
        open_here = tab.ok & ~close
        if nodes == 1:
            bound = lb
            first = None if start is None else start()
            if first is not None:
                at = (t.cols[rows[:, None], tab.cols] == np.asarray(first)[:, None]) & tab.ok
                if np.all(at.any(axis=1)):  # (not when the start's option was pruned)
                    offer(tab, [np.argmax(at, axis=1)], d.best)
        if not np.isfinite(inc["value"]) and nodes >= NO_PLAN_NODES:
            return None  # no plan from the dual's options: the generic route decides
        if lb >= inc["value"] - tol or not ok.any(axis=1).all():
            floor = min(floor, lb if ok.any(axis=1).all() else np.inf)
        else:
            k = _branch_device(open_here, theta, d.picks)
            if k is None:  # one option left per device: its shares were the node's plan
                floor = min(floor, lb)
            else:
                for j in np.flatnonzero(open_here[k]):
                    child = ok.copy()
                    child[k] = False
                    child[k, tab.cols[k, j]] = True
                    heapq.heappush(heap, (lb, next(ids), child, d.best))
        open_lb = min((h[0] for h in heap), default=np.inf)
        bound = max(bound, min(floor, open_lb, inc["value"]))
        if progress is not None:
            progress(nodes, inc["value"] if np.isfinite(inc["value"]) else None, bound)
    if not np.isfinite(inc["value"]):
        return None
    open_lb = min((h[0] for h in heap), default=np.inf)
    bound = max(bound, min(floor, open_lb, inc["value"]))
    bound = min(bound, inc["value"])
    done = inc["value"] - bound <= gap * max(abs(inc["value"]), 1e-300)
    return Result(OPTIMAL if done else TIME_LIMIT, objective=inc["value"], bound=bound,
                  iterations=nodes, message="lagrangian", options=inc["options"],
                  beta=inc["beta"].copy(), phi=inc["phi"].copy() if t.has_phi else None,
                  x=inc["x"])


def _branch_device(ok: np.ndarray, theta: np.ndarray, picks: list[np.ndarray]) -> int | None:
    """The device to branch on.

    One whose argmin changed between the last dual points (it sits where the dual kinks), else
    the one with the least margin to its second open option.
    """
    many = ok.sum(axis=1) > 1
    if not many.any():
        return None
    moved = np.zeros(len(ok), dtype=bool)
    for pk in picks[:-1]:
        moved |= pk != picks[-1]
    moved &= many
    th = np.where(ok, theta, np.inf)
    two = np.sort(th, axis=1)[:, :2]
    margin = np.where(many, two[:, 1] - two[:, 0], np.inf)
    if moved.any():
        margin = np.where(moved, margin, np.inf)
    return int(np.argmin(margin))
