"""Energy-delay trade-off of hybrid federated split learning: the exact Pareto front.

Paper: B. Yin, Z. Chen, M. Tao, "Predictive GAN-powered Multi-Objective Optimization for Hybrid
Federated Split Learning", arXiv:2209.02428 (https://arxiv.org/abs/2209.02428).

Each device k picks an option o = (cut c, DVFS level l): a split (or, with labels on the device,
the whole model: FL mode) and a compute frequency ``l * f_k`` (dynamic power ~ l^3, so compute
energy ~ l^2); and a bandwidth share ``beta_k`` (sum <= 1). Under the reference cost model
(docs/cost_model.md, ``round_terms``) one round takes and costs

    T_k(o, beta) = A[k,o] + D[k,o] / beta_k        A = a_dev / l + a_srv,  D = bits-over-rate
    E_k(o, beta) = ec[k,o] + et[k,o] / beta_k      ec = P_comp l^2 a_dev,  et = P_tx bits / (B s)
    delay T = max_k T_k (parallel rounds),   energy E = sum_k E_k.

The exact Pareto front by the epsilon-constraint method: for each epsilon, ``min E s.t. T <= eps``
(:func:`min_energy`). That is a mixed-integer convex program; it is solved to a relative gap of
``tol`` (default 1e-7) by outer approximation: a MILP over the options z[k,o] with disaggregated
shares b[k,o] (lo z <= b <= z, lo = D / (eps - A)) and epigraph variables t[k,o] >= et / b bounded
below by perspective tangents ``t >= et (2 z / b0 - b / b0^2)``; each MILP gives a lower bound,
the exact water-filling allocation of its options (beta_k = max(lo_k, sqrt(et_k / lambda)))
an upper bound, and tangents are added at both until they meet. The least delay is exact by
bisection on T (feasible iff sum_k min_o D / (T - A) <= 1). Weighted-sum scalarisation
(:func:`weighted_sum`, ``min w T / T0 + (1-w) E / E0``, solved by the same outer approximation
with a delay epigraph) only reaches the supported points (the lower convex hull); the discrete
options make the front non-convex, so it misses the rest (:func:`unsupported`).

The registered formulation (``splitopt solve --problem energy-delay``, formulations/registry.py)
is the public builder with these options, ``Problem(scenario, dvfs=levels)``
(:mod:`splitopt.model.dvfs`), and its front is ``splitopt.solving.pareto.pareto_front``; this
module's own loop is kept as the independent oracle the tests compare it with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.costs import CutTable, round_terms
from splitopt.errors import InfeasibleError, InputError, no_plan
from splitopt.scenario import Scenario
from splitopt.solving.verify import Row, checked_status, verify


@dataclass(frozen=True)
class Instance:
    """Option arrays (N devices x O options) and each option's (cut, level)."""

    A: np.ndarray
    D: np.ndarray
    ec: np.ndarray
    et: np.ndarray
    options: tuple[tuple[int, float], ...]

    @property
    def n(self) -> int:
        """Number of devices."""
        return self.A.shape[0]


def instance(scenario: Scenario, *, levels: Sequence[float] = (1.0,),
             table: CutTable | None = None) -> Instance:
    """Options of every device: candidate cuts x DVFS levels in (0, 1].

    The cuts default to the chain prefixes, plus FL mode (the whole model) when the labels are on
    the device.
    """
    lv = [float(x) for x in levels]
    if not lv or any(not 0 < x <= 1 for x in lv):
        raise InputError("levels", list(levels), "frequency factors in (0, 1]")
    tr = scenario.training
    table = table or CutTable.chain(scenario.graph, labels_on_device=tr.labels == "device")
    t = round_terms(scenario.devices, scenario.server, scenario.channel, tr, table)
    opts = [(c, x) for c in range(len(table)) for x in lv]
    cols = [c for c, _ in opts]
    scale = np.array([x for _, x in opts])
    A = t.a_dev[:, cols] / scale + t.a_srv[:, cols]
    return Instance(A, t.d[:, cols].copy(), t.e_comp[:, cols] * scale**2, t.e_tx[:, cols].copy(),
                   tuple(opts))


def point(choice: Sequence[int], beta: Sequence[float], delay_s: float, energy_j: float,
          bound: float, iterations: int = 0, epsilon: float | None = None,
          objective: float | None = None, status: str = "optimal") -> Result:
    """One solution as the one Result: options per device, shares, delay, energy, how good.

    ``objective`` is the minimised value (energy for an epsilon point, the weighted sum
    otherwise), ``bound`` its proven lower bound, ``termination`` ``optimal`` when they meet within
    the tolerance, else ``iteration_limit``. The shares are the Result's ``beta``; extras:
    ``choice``, ``delay_s``, ``energy_j``, ``epsilon``.
    """
    return Result(status, path="outer-approximation", backend="highs",
                  objective=energy_j if objective is None else objective, bound=bound,
                  iterations=iterations, beta=np.asarray(beta, dtype=float),
                  extras={"choice": tuple(choice), "delay_s": delay_s,
                          "energy_j": energy_j, "epsilon": epsilon})


def evaluate(p: Instance, choice: Sequence[int],
             beta: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(delay, energy) of options ``choice`` with shares ``beta``."""
    k = np.arange(p.n)
    c, b = np.asarray(choice), np.asarray(beta, dtype=float)
    if b.sum() > 1 + 1e-9 or np.any(b < 0):
        raise InputError("beta", b.tolist(), "shares >= 0 summing to at most 1")
    with np.errstate(divide="ignore"):
        T = np.where(p.D[k, c] > 0, p.A[k, c] + p.D[k, c] / b, p.A[k, c])
        E = np.where(p.et[k, c] > 0, p.ec[k, c] + p.et[k, c] / b, p.ec[k, c])
    return float(T.max()), float(E.sum())


def water_fill(et: np.ndarray, lo: np.ndarray) -> np.ndarray | None:
    """Argmin sum et / beta s.t. beta >= lo, sum beta <= 1 (None if sum lo > 1).

    KKT: beta_k = max(lo_k, sqrt(et_k) / mu) with sum beta = 1; mu is found exactly by sorting the
    thresholds sqrt(et_k) / lo_k at which device k becomes clamped to its floor.
    """
    lo = np.asarray(lo, dtype=float)
    if lo.sum() > 1 + 1e-12:
        return None
    r = np.sqrt(np.asarray(et, dtype=float))
    if not np.any(r > 0) or lo.sum() >= 1:
        return lo.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(lo > 0, r / lo, np.inf)
    theta = np.where(r > 0, theta, 0.0)  # nothing to gain: stays at its floor
    order = np.argsort(theta, kind="stable")
    r_rest, lo_clamped = float(r.sum()), 0.0
    for k in order:
        mu = r_rest / (1.0 - lo_clamped) if lo_clamped < 1 else np.inf
        if mu <= theta[k]:  # the devices clamped so far are exactly those below mu
            break
        r_rest -= r[k]
        lo_clamped += lo[k]
    else:
        mu = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.maximum(lo, np.where(r > 0, r / mu, 0.0))
    return beta / max(1.0, beta.sum())


def lower_shares(p: Instance, eps: float) -> np.ndarray:
    """lo[k,o] = D / (eps - A): the least share that meets the delay (inf where none does)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(p.A < eps, p.D / (eps - p.A), np.inf)
    lo = np.where((p.D == 0) & (p.A <= eps), 0.0, lo)
    return np.where(lo <= 1.0, lo, np.inf)


def min_delay(p: Instance, tol: float = 1e-12) -> float:
    """The least achievable delay, by bisection on T (exact to ``tol`` relative)."""
    hi = float(p.A.min(axis=1).max()) + 1.0
    while lower_shares(p, hi).min(axis=1).sum() > 1:
        hi *= 2.0
    lo = float(p.A.min(axis=1).max())
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if lower_shares(p, mid).min(axis=1).sum() <= 1 else (mid, hi)
    return hi


# ---------------------------------------------------------------------------- one choice fixed
def _fixed(p: Instance, choice: Sequence[int]) -> tuple[np.ndarray, ...]:
    k, c = np.arange(p.n), np.asarray(choice)
    return p.A[k, c], p.D[k, c], p.ec[k, c], p.et[k, c]


def _delay_floor(a: np.ndarray, d: np.ndarray) -> float:
    """Least max_k a_k + d_k / beta_k over shares summing to 1 (bisection)."""
    lo, hi = float(a.max()), float(a.max() + d.sum()) + 1e-300
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore"):
            need = np.where(d > 0, d / np.maximum(mid - a, 0.0), 0.0).sum()
        lo, hi = (lo, mid) if need <= 1 else (mid, hi)
    return hi


def _energy_at(a, d, ec, et, T: float) -> tuple[float, np.ndarray | None]:
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(d > 0, d / np.maximum(T - a, 0.0), 0.0)
    beta = water_fill(et, lo)
    if beta is None:
        return math.inf, None
    with np.errstate(divide="ignore"):
        e = np.where(et > 0, et / beta, 0.0)
    return float(ec.sum() + e.sum()), beta


def _weighted_for_choice(p: Instance, choice, w: float, ref: tuple[float, float]):
    """Exact min of w T/T0 + (1-w) E/E0 for fixed options: golden section (the value is convex)."""
    a, d, ec, et = _fixed(p, choice)
    t_lo = _delay_floor(a, d)
    free = water_fill(et, np.zeros_like(et))
    with np.errstate(divide="ignore"):
        t_hi = float(np.max(np.where(d > 0, a + d / free, a)))
    t_hi = t_lo if not math.isfinite(t_hi) or t_hi < t_lo else t_hi

    def f(T: float) -> float:
        return w * T / ref[0] + (1 - w) * _energy_at(a, d, ec, et, T)[0] / ref[1]

    g = (math.sqrt(5) - 1) / 2
    x0, x1 = t_lo, t_hi
    m0, m1 = x1 - g * (x1 - x0), x0 + g * (x1 - x0)
    f0, f1 = f(m0), f(m1)
    while x1 - x0 > 1e-12 * x1:  # golden section, one new evaluation per step
        if f0 <= f1:
            x1, m1, f1 = m1, m0, f0
            m0 = x1 - g * (x1 - x0)
            f0 = f(m0)
        else:
            x0, m0, f0 = m0, m1, f1
            m1 = x0 + g * (x1 - x0)
            f1 = f(m1)
    T = min((t_lo, t_hi, m0 if f0 <= f1 else m1), key=f)
    return f(T), _energy_at(a, d, ec, et, T)[1]


# ---------------------------------------------------------------------------- outer approximation
@dataclass
class _OA:
    """Tangent points per (device, option): for et / b (energy) and D / b (delay)."""

    energy: dict[tuple[int, int], set[float]]
    delay: dict[tuple[int, int], set[float]]


def _tangent(m, col_t: int, z: int, b: int, coef: float, b0: float) -> None:
    # perspective of coef / b at b0: t >= coef (2 z / b0 - b / b0^2), exact at b = b0 z
    m.add_row({col_t: 1.0, z: -2.0 * coef / b0, b: coef / b0**2}, lb=0.0)


def _milp(p: Instance, lo: np.ndarray, cuts: _OA, w: float | None, ref: tuple[float, float]):
    """The outer-approximation MILP (epsilon mode when ``w`` is None)."""
    from splitopt.compile.columns import MilpBuilder

    m, obj, cols = MilpBuilder(), {}, {}
    T = int(m.add_vars(1, name="T")[0]) if w else None
    share: dict[int, float] = {}
    for k in range(p.n):
        pick: dict[int, float] = {}
        delay: dict[int, float] = {T: 1.0} if T is not None else {}
        for o in np.flatnonzero(np.isfinite(lo[k])):
            z, b = (int(c) for c in (m.add_vars(1, ub=1, integer=True)[0], m.add_vars(1, ub=1)[0]))
            cols[(k, int(o))] = (z, b)
            pick[z], share[b] = 1.0, 1.0
            m.add_row({b: 1.0, z: -1.0}, ub=0.0)
            m.add_row({z: float(lo[k, o]), b: -1.0}, ub=0.0)
            e_scale = (1 - w) / ref[1] if w is not None else 1.0
            obj[z] = e_scale * p.ec[k, o]
            if p.et[k, o] > 0:
                t = int(m.add_vars(1)[0])
                obj[t] = e_scale
                for b0 in cuts.energy[(k, int(o))]:
                    _tangent(m, t, z, b, p.et[k, o], b0)
            if T is not None:
                delay[z] = -float(p.A[k, o])
                if p.D[k, o] > 0:
                    s = int(m.add_vars(1)[0])
                    delay[s] = -1.0
                    for b0 in cuts.delay[(k, int(o))]:
                        _tangent(m, s, z, b, p.D[k, o], b0)
        if not pick:
            raise InfeasibleError(f"device {k}: no option meets the delay")
        m.add_row(pick, lb=1.0, ub=1.0)
        if T is not None:  # T >= sum_o A z + s: the disaggregated (convex hull) form
            m.add_row(delay, lb=0.0)
    m.add_row(share, ub=1.0)
    if T is not None and w is not None:
        obj[T] = w / ref[0]
    m.minimize(obj)
    return m, cols


def _initial_cuts(p: Instance, lo: np.ndarray) -> _OA:
    cuts = _OA({}, {})
    for k, o in zip(*np.nonzero(np.isfinite(lo)), strict=True):
        start = max(float(lo[k, o]), 1e-4)
        pts = set(np.geomspace(start, 1.0, 6).tolist()) | {1.0 / p.n}
        cuts.energy[(int(k), int(o))] = {x for x in pts if x >= lo[k, o]}
        cuts.delay[(int(k), int(o))] = set(cuts.energy[(int(k), int(o))])
    return cuts


def _outer(p: Instance, lo: np.ndarray, w: float | None, ref: tuple[float, float], tol: float,
           max_iter: int):
    """Outer approximation until the bounds meet: (choice, beta, bound, iters, value, status)."""
    from splitopt.parallel.milp import solve_program

    best: tuple[float, Any, Any] = (math.inf, None, None)
    cuts, lb, done = _initial_cuts(p, lo), -math.inf, 0
    for it in range(1, max_iter + 1):
        done = it
        m, cols = _milp(p, lo, cuts, w, ref)
        res = solve_program(m.program())
        if res.x is None:
            raise no_plan("energy-delay: no plan", res.status, "energy-delay")
        found = res.bound if res.bound is not None else res.objective
        lb = max(lb, -math.inf if found is None else found)
        choice = [next(o for (kk, o), (z, _) in cols.items() if kk == k and res.x[z] > 0.5)
                  for k in range(p.n)]
        if w is None:
            a, d, ec, et = _fixed(p, choice)
            beta = water_fill(et, lo[np.arange(p.n), choice])
            ub = evaluate(p, choice, beta)[1] if beta is not None else math.inf
        else:
            ub, beta = _weighted_for_choice(p, choice, w, ref)
        if ub < best[0]:
            best = (ub, choice, beta)
        if best[0] - lb <= tol * max(abs(best[0]), 1e-300):
            break
        for k, o in enumerate(choice):
            for b0 in (res.x[cols[(k, o)][1]], None if beta is None else beta[k]):
                if b0 is not None and b0 > 1e-12:
                    cuts.energy[(k, o)].add(float(b0))
                    cuts.delay[(k, o)].add(float(b0))
    status = "optimal" if best[0] - lb <= tol * max(abs(best[0]), 1e-300) else "iteration_limit"
    return best[1], best[2], min(lb, best[0]), done, best[0], status


def min_energy(p: Instance, epsilon: float, *, tol: float = 1e-7, max_iter: int = 200) -> Result:
    """Least energy with delay <= ``epsilon`` (one epsilon-constraint point), to gap ``tol``."""
    if not epsilon > 0:
        raise InputError("epsilon", epsilon, "a delay in seconds > 0 (math.inf: no limit)")
    lo = lower_shares(p, epsilon)
    if np.isinf(lo).all(axis=1).any() or lo.min(axis=1).sum() > 1 + 1e-12:
        raise InfeasibleError(f"energy-delay: no plan meets the delay {epsilon:g} s "
                              f"(the least is {min_delay(p):.6g} s)")
    choice, beta, bound, it, val, status = _outer(p, lo, None, (1.0, 1.0), tol, max_iter)
    T, E = evaluate(p, choice, beta)
    rows = [Row("delay <= epsilon", T, hi=epsilon)] if math.isfinite(epsilon) else []
    return _checked(point(tuple(choice), tuple(float(b) for b in beta), T, E, bound, it,
                          float(epsilon), val, status), E, rows, tol)


def _checked(pt: Result, repriced: float, rows: list[Row], tol: float) -> Result:
    """The point through the verified-answer guard (splitopt.solving.verify)."""
    check = verify(objective=pt.objective, repriced=repriced, bound=pt.bound, rows=rows,
                   shares={"bandwidth": pt.beta},
                   gap=tol * (1 + 1e-6) if pt.status == "optimal" else None)
    return replace(pt, termination=checked_status(pt.status, check), verification=check)


def weighted_sum(p: Instance, w: float, ref: tuple[float, float], *, tol: float = 1e-7,
                 max_iter: int = 200) -> Result:
    """Minimise ``w T / ref[0] + (1 - w) E / ref[1]`` (scalarisation), to gap ``tol``."""
    if not 0 <= w <= 1:
        raise InputError("w", w, "a weight in [0, 1]")
    if w == 0:
        return min_energy(p, math.inf, tol=tol, max_iter=max_iter)
    fast = min_energy(p, min_delay(p) * (1 + 1e-9), tol=1e-3)
    f0 = w * fast.delay_s / ref[0] + (1 - w) * fast.energy_j / ref[1]
    lo = lower_shares(p, f0 * ref[0] / w)  # no optimum is slower than this
    choice, beta, bound, it, val, status = _outer(p, lo, w, ref, tol, max_iter)
    T, E = evaluate(p, choice, beta)
    return _checked(point(tuple(choice), tuple(float(b) for b in beta), T, E, bound, it, None,
                          val, status), w * T / ref[0] + (1 - w) * E / ref[1], [], tol)


# ---------------------------------------------------------------------------- fronts
def nondominated(points: Sequence[Result], rel: float = 1e-9) -> list[Result]:
    """The points no other point dominates, sorted by delay."""
    def dom(q: Result, r: Result) -> bool:
        le = q.delay_s <= r.delay_s * (1 + rel) and q.energy_j <= r.energy_j * (1 + rel)
        lt = q.delay_s < r.delay_s * (1 - rel) or q.energy_j < r.energy_j * (1 - rel)
        return le and lt
    keep = [r for r in points if not any(dom(q, r) for q in points)]
    out: list[Result] = []
    for r in sorted(keep, key=lambda r: (r.delay_s, r.energy_j)):
        if not out or abs(out[-1].delay_s - r.delay_s) > rel * r.delay_s:
            out.append(r)
    return out


def pareto_front(p: Instance, n_points: int = 12, *, tol: float = 1e-7) -> list[Result]:
    """The exact front at ``n_points`` epsilons from the least delay to the least-energy delay."""
    if n_points < 2:
        raise InputError("n_points", n_points, "an integer >= 2")
    t_min, e_min = min_delay(p), min_energy(p, math.inf, tol=tol)
    grid = np.linspace(t_min * (1 + 1e-9), max(e_min.delay_s, t_min * (1 + 2e-9)), n_points)
    return nondominated([min_energy(p, float(e), tol=tol) for e in grid] + [e_min])


def unsupported(front: Sequence[Result], rel: float = 1e-6) -> list[Result]:
    """Front points strictly above the front's lower convex hull: no weighted sum can reach them."""
    pts = sorted(front, key=lambda r: r.delay_s)
    hull: list[Result] = []
    for r in pts:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], r) <= 0:
            hull.pop()
        hull.append(r)
    out = []
    for r in pts:
        for a, b in zip(hull, hull[1:], strict=False):
            if a.delay_s <= r.delay_s <= b.delay_s and b.delay_s > a.delay_s:
                f = (r.delay_s - a.delay_s) / (b.delay_s - a.delay_s)
                if r.energy_j > (a.energy_j + f * (b.energy_j - a.energy_j)) * (1 + rel):
                    out.append(r)
                break
    return out


def _cross(o: Result, a: Result, b: Result) -> float:
    return ((a.delay_s - o.delay_s) * (b.energy_j - o.energy_j)
            - (a.energy_j - o.energy_j) * (b.delay_s - o.delay_s))


# ---------------------------------------------------------------------------- brute force
def brute_force(p: Instance, *, epsilon: float | None = None, w: float | None = None,
                ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """Enumerate every option combination: least energy within ``epsilon``, or weighted sum."""
    best = math.inf
    if (epsilon is None) == (w is None):
        raise InputError("epsilon / w", (epsilon, w), "exactly one of the two")
    if len(p.options) ** p.n > 2e4:
        raise InputError("problem", "too many combinations", "a tiny instance for brute force")
    for choice in itertools.product(range(len(p.options)), repeat=p.n):
        if epsilon is not None:
            a, d, ec, et = _fixed(p, choice)
            lo = lower_shares(p, epsilon)[np.arange(p.n), list(choice)]
            beta = water_fill(et, lo) if np.all(np.isfinite(lo)) else None
            val = evaluate(p, choice, beta)[1] if beta is not None else math.inf
        else:
            val = _weighted_for_choice(p, choice, float(w or 0.0), ref)[0]
        best = min(best, val)
    return best
