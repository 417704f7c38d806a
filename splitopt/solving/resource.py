"""Exact paths with closed-form resource allocation: server shares (min-max) and sums (sequential).

**Min-max with a server share.** T_k = A + S / phi_k + D / beta_k, sum beta <= 1, sum phi <= 1.
For a round time T and fixed options let R_k = T - A_k. Minimising sum phi subject to sum beta <= 1
and S/phi + D/beta <= R (KKT, closed form) gives, with

    a = sum_k D_k / R_k,   s = sum_k sqrt(S_k D_k) / R_k,   c = sum_k S_k / R_k,

the least total server share F = c + s^2 / (1 - a) (for a < 1), at beta_k = (D_k + sqrt(S_k D_k) t)
/ R_k and phi_k = S_k / R_k + sqrt(S_k D_k) / (R_k t), t = (1 - a) / s. So T is achievable iff some
choice of options has F(a, s, c) <= 1. F is convex and increasing in the three sums, so its
linearisation at any point gives a separable lower bound (min over options per device): this
linearised Lagrangian test settles most T at once; the rest go to the Lagrangian branch and bound
of splitopt.solving.server_dual (the dual of sum phi <= 1, devices of one class priced once), and
what that leaves (node budget spent) to a MILP whose only non-linearity is the one scalar cone
w >= s^2 / (1 - a), closed exactly by tangent cuts. Bisection on T brackets the optimum; a
reachable probe moves the upper end down to its options' own least T (splitopt.solving.shares).
This is the one shared-server kernel: the builder's ``server-share`` path and the planner call it
with a backend, EdgeSplit/SFL's own solve without (no MILP; the bound stays a proof).

**Sums (sequential SL, total energy).** min sum_k (A_k + D_k / beta_k + S_k / phi_k) over the
shares is sum A + (sum sqrt D)^2 + (sum sqrt S)^2 at beta_k = sqrt(D_k) / sum sqrt D
(Cauchy-Schwarz); with the option choice this is a MILP with two scalar squares, again closed by
tangent cuts.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from splitopt.backends.base import INFEASIBLE, OPTIMAL, TIME_LIMIT, Backend
from splitopt.backends.results import Result
from splitopt.compile.program import Program
from splitopt.solving.oa import solve_outer
from splitopt.solving.server_dual import dual_decide, row_groups, undominated
from splitopt.solving.shares import least_server_share, server_fixed_minmax, sum_shares


def _sums(a: np.ndarray, s: np.ndarray, c: np.ndarray) -> float:
    return least_server_share(a.sum(), s.sum(), c.sum())


def _coeffs(A: np.ndarray, D: np.ndarray, S: np.ndarray, allowed: np.ndarray, T: float):
    R = T - A
    ok = allowed & ((R > 0) | ((R >= 0) & (D == 0) & (S == 0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ok & (R > 0), 1.0 / R, 0.0)
    return ok, D * inv, np.sqrt(S * D) * inv, S * inv


def _lagrange(ok, a, s, c, iters: int = 40) -> tuple[str, np.ndarray | None]:
    """'feasible' with options, 'infeasible', or 'undecided' at one T."""
    big = np.where(ok, 0.0, np.inf)
    rows = np.arange(len(ok))
    opt = np.argmin(a + s + c + big, axis=1)
    seen = set()
    for _ in range(iters):
        xa, xs, xc = a[rows, opt], s[rows, opt], c[rows, opt]
        F = _sums(xa, xs, xc)
        if F <= 1:
            return "feasible", opt
        A_, S_ = xa.sum(), xs.sum()
        if A_ >= 1:
            opt = np.argmin(a + big, axis=1)
            if a[rows, opt].sum() >= 1 and s[rows, opt].sum() > 0:
                return "infeasible", None
            if tuple(opt) in seen:
                return "undecided", None
            seen.add(tuple(opt))
            continue
        g = np.array([S_**2 / (1 - A_) ** 2, 2 * S_ / (1 - A_), 1.0])
        lin = g[0] * a + g[1] * s + g[2] * c + big
        new = np.argmin(lin, axis=1)
        lb = F + lin[rows, new].sum() - (g[0] * A_ + g[1] * S_ + g[2] * xc.sum())
        if lb > 1 + 1e-12:
            return "infeasible", None
        if tuple(new) in seen:
            return "undecided", None
        seen.add(tuple(opt))
        opt = new
    return "undecided", None


def _milp_F(ok, a, s, c, backend: Backend, deadline) -> tuple[str, np.ndarray | None]:
    """Decide min F <= 1 exactly with a MILP and one cone w >= s^2 / (1 - a)."""
    n, o = ok.shape
    nz = n * o
    cols = nz + 3  # z, sc, v, w
    sc, v, w = nz, nz + 1, nz + 2
    cost = np.concatenate([np.where(ok, c, 0).ravel(), [0.0, 0.0, 1.0]])
    onehot = sp.csr_matrix((np.ones(nz), (np.repeat(np.arange(n), o), np.arange(nz))), (n, cols))
    link_s = sp.lil_matrix((2, cols))
    link_s[0, :nz] = -np.where(ok, s, 0).ravel()
    link_s[0, sc] = 1.0
    link_s[1, :nz] = np.where(ok, a, 0).ravel()
    link_s[1, v] = 1.0
    A = sp.vstack([onehot, link_s.tocsr()], format="csr")
    lb = np.concatenate([np.ones(n), [0.0, 1.0]])
    col_ub = np.concatenate([ok.ravel().astype(float), [np.inf, 1.0, np.inf]])
    integ = np.concatenate([np.ones(nz, bool), np.zeros(3, bool)])
    prog = Program(cost, A, lb, lb.copy(), np.concatenate([np.zeros(nz), [0, 1e-12, 0]]), col_ub,
                   integ, [f"x{i}" for i in range(cols)], [f"r{i}" for i in range(n + 2)],
                   cones=np.array([[w, sc, v]]))
    out = solve_outer(prog, backend, deadline=deadline, gap=1e-9,
                      stop=lambda lb_, ub_: lb_ > 1 + 1e-12 or (ub_ is not None and ub_ <= 1))
    if out.x is not None and out.objective is not None and out.objective <= 1:
        return "feasible", np.argmax(out.x[:nz].reshape(n, o), axis=1)
    if out.termination == INFEASIBLE or (out.bound is not None and out.bound > 1):
        return "infeasible", None
    return "undecided", None


def server_minmax(A, D, S, allowed, backend: Backend | None = None, *, deadline=None,
                  rtol: float = 1e-10, budget: int = 200) -> Result:
    """Exact min max_k (A + S/phi + D/beta) by bisection on T (see the module docstring).

    Each probe T is decided by the first test that settles it: the linearised Lagrangian test,
    the Lagrangian branch and bound of :func:`splitopt.solving.server_dual.dual_decide` (at most
    ``budget`` nodes), then the MILP with one cone (``backend``). A probe none settles (no
    ``backend``, or the deadline) moves the search up without proof: the returned bound is
    always proven (the last unreachable probe) and the gap says how far it is; the termination
    is then ``time_limit`` (the node budget ran out) unless the gap is within ``rtol``, and
    ``message`` counts those probes. With a ``backend`` and no deadline every probe is settled,
    so the result is exact.
    """
    if not allowed.any(axis=1).all():
        return Result(INFEASIBLE)
    n = len(A)
    rows = np.arange(n)
    dual: list = []  # (rows without dominated options, class groups): made on first use

    def decide(T: float) -> tuple[bool | None, np.ndarray | None]:
        if not dual:
            a_dual = undominated(np.where(allowed, A, np.inf), S, D)
            dual.extend([a_dual, row_groups(a_dual, S, D)])
        return dual_decide(dual[0], S, D, T, budget, dual[1])

    lo = proven = float(np.max(np.min(np.where(allowed, A, np.inf), axis=1)))
    it, best, hi, unsettled = 0, None, None, 0

    def probe(T: float) -> str:
        nonlocal best, hi, it
        it += 1
        ok, a, s, c = _coeffs(A, D, S, allowed, T)
        if not ok.any(axis=1).all():
            return "infeasible"
        verdict, opt = _lagrange(ok, a, s, c)
        if verdict == "undecided":
            reachable, opt = decide(T)
            verdict = {True: "feasible", False: "infeasible", None: "undecided"}[reachable]
        if verdict == "undecided" and backend is not None:
            verdict, opt = _milp_F(ok, a, s, c, backend, deadline)
        if verdict == "feasible":
            t = server_fixed_minmax(A[rows, opt], S[rows, opt], D[rows, opt],
                                    lo=float(A[rows, opt].max()), hi=T)[0]
            if hi is None or t < hi:
                best, hi = opt, t
        return verdict

    def finish(termination: str = OPTIMAL) -> Result:
        if best is None:
            return Result(TIME_LIMIT, bound=proven, iterations=it)
        out = _server_finish(A, D, S, best, proven, hi)
        if unsettled and out.objective - out.bound > rtol * abs(out.objective):
            termination = TIME_LIMIT
        note = f"{unsettled} probes left undecided (node budget, no MILP)" if unsettled else ""
        return replace(out, termination=termination, iterations=it, message=note)

    if probe(lo) == "feasible":
        return finish()
    if hi is None:  # the options that are best with equal shares 1/n: a plan, so hi is finite
        best = np.argmin(np.where(allowed, A + n * (S + D), np.inf), axis=1)
        hi = server_fixed_minmax(A[rows, best], S[rows, best], D[rows, best])[0]
    while hi - lo > rtol * abs(hi):
        if deadline is not None and time.perf_counter() > deadline:
            return finish(TIME_LIMIT)
        mid = 0.5 * (lo + hi)
        v = probe(mid)
        if v == "infeasible":
            lo = proven = mid
        elif v == "undecided":
            if backend is not None:
                return finish(TIME_LIMIT)
            lo, unsettled = mid, unsettled + 1
    return finish()


def _server_finish(A, D, S, opt, lo, hi) -> Result:
    """The plan of options ``opt``, which reach round time ``hi``: their own least T and shares."""
    r = np.arange(len(opt))
    obj, _, beta, phi = server_fixed_minmax(A[r, opt], S[r, opt], D[r, opt],
                                            lo=float(A[r, opt].max()), hi=hi)
    return Result(OPTIMAL, objective=obj, bound=min(lo, obj), options=opt, beta=beta,
                  phi=phi)


def separable_sum(A, D, S, allowed, backend: Backend, *, deadline=None,
                  gap: float = 1e-9) -> Result:
    """Exact min sum_k (A + D/beta + S/phi) with option choice (MILP + two scalar squares)."""
    n, o = A.shape
    if not allowed.any(axis=1).all():
        return Result(INFEASIBLE)
    nz = n * o
    p, q, one, w1, w2 = nz, nz + 1, nz + 2, nz + 3, nz + 4
    cols = nz + 5
    cost = np.concatenate([np.where(allowed, A, 0).ravel(), [0, 0, 0, 1.0, 1.0]])
    onehot = sp.csr_matrix((np.ones(nz), (np.repeat(np.arange(n), o), np.arange(nz))), (n, cols))
    link = sp.lil_matrix((2, cols))
    link[0, :nz] = np.sqrt(D).ravel()
    link[0, p] = -1.0
    link[1, :nz] = np.sqrt(S).ravel()
    link[1, q] = -1.0
    Am = sp.vstack([onehot, link.tocsr()], format="csr")
    b = np.concatenate([np.ones(n), [0.0, 0.0]])
    lbc = np.concatenate([np.zeros(nz), [0, 0, 1, 0, 0]])
    ubc = np.concatenate([allowed.ravel().astype(float), [np.inf, np.inf, 1, np.inf, np.inf]])
    integ = np.concatenate([np.ones(nz, bool), np.zeros(5, bool)])
    prog = Program(cost, Am, b, b.copy(), lbc, ubc, integ, [f"x{i}" for i in range(cols)],
                   [f"r{i}" for i in range(n + 2)], cones=np.array([[w1, p, one], [w2, q, one]]))
    out = solve_outer(prog, backend, deadline=deadline, gap=gap)
    if out.x is None:
        return Result(out.termination, bound=out.bound, iterations=out.iterations)
    opt = np.argmax(out.x[:nz].reshape(n, o), axis=1)
    r = np.arange(n)
    beta = np.maximum(sum_shares(D[r, opt])[1], 1e-12)
    phi = np.maximum(sum_shares(S[r, opt])[1], 1e-12)
    obj = float(np.sum(A[r, opt] + D[r, opt] / beta + S[r, opt] / phi))
    return Result(out.termination, objective=obj, bound=min(out.bound or obj, obj),
                  iterations=out.iterations, options=opt, beta=beta, phi=phi)
