"""Exact paths with closed-form resource allocation: server shares (min-max) and sums (sequential).

**Min-max with a server share.** T_k = A + S / phi_k + D / beta_k, sum beta <= 1, sum phi <= 1.
For a round time T and fixed options let R_k = T - A_k. Minimising sum phi subject to sum beta <= 1
and S/phi + D/beta <= R (KKT, closed form) gives, with

    a = sum_k D_k / R_k,   s = sum_k sqrt(S_k D_k) / R_k,   c = sum_k S_k / R_k,

the least total server share F = c + s^2 / (1 - a) (for a < 1), at beta_k = (D_k + sqrt(S_k D_k) t)
/ R_k and phi_k = S_k / R_k + sqrt(S_k D_k) / (R_k t), t = (1 - a) / s. So T is achievable iff some
choice of options has F(a, s, c) <= 1. F is convex and increasing in the three sums, so its
linearisation at any point gives a separable lower bound (min over options per device): a Lagrangian
test settles most T at once; the rest go to a MILP whose only non-linearity is the one scalar cone
w >= s^2 / (1 - a), closed exactly by tangent cuts. Bisection on T then brackets the optimum.

**Sums (sequential SL, total energy).** min sum_k (A_k + D_k / beta_k + S_k / phi_k) over the
shares is
sum A + (sum sqrt D)^2 + (sum sqrt S)^2 at beta_k = sqrt(D_k) / sum sqrt D (Cauchy-Schwarz); with
the
option choice this is a MILP with two scalar squares, again closed by tangent cuts.
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


def _sums(a: np.ndarray, s: np.ndarray, c: np.ndarray) -> float:
    A, Sm, C = a.sum(), s.sum(), c.sum()
    if Sm <= 0:
        return float(C) if A <= 1 + 1e-15 else np.inf
    return float(C + Sm**2 / (1 - A)) if A < 1 else np.inf


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


def _alloc(A, D, S, opt, T) -> tuple[np.ndarray, np.ndarray, bool]:
    r = np.arange(len(opt))
    a_, d_, s_ = A[r, opt], D[r, opt], S[r, opt]
    R = T - a_
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(R > 0, 1.0 / R, 0.0)
        a, g, c = d_ * inv, np.sqrt(s_ * d_) * inv, s_ * inv
        # a device with transfer or server work cannot finish by T <= A: T is infeasible (it was
        # once dropped from the sums, which made the least-T bisection go below A)
        late = (R < 0) | ((R <= 0) & ((d_ > 0) | (s_ > 0)))
        F = np.inf if late.any() else _sums(a, g, c)
        if g.sum() > 0:
            t = (1 - a.sum()) / g.sum()
            beta = (d_ + np.sqrt(s_ * d_) * t) * inv
            phi = s_ * inv + np.sqrt(s_ * d_) * inv / t
        else:
            beta, phi = a, c
    return beta, phi, F <= 1 + 1e-12


def _fixed_time(A, D, S, opt, lo: float, hi: float) -> float:
    """Least T for fixed options (bisection with the closed-form test)."""
    for _ in range(200):
        if hi - lo <= 1e-13 * abs(hi):
            break
        mid = 0.5 * (lo + hi)
        if _alloc(A, D, S, opt, mid)[2]:
            hi = mid
        else:
            lo = mid
    return hi


def server_minmax(A, D, S, allowed, backend: Backend, *, deadline=None,
                  rtol: float = 1e-10) -> Result:
    """Exact min max_k (A + S/phi + D/beta) by bisection on T (see the module docstring)."""
    if not allowed.any(axis=1).all():
        return Result(INFEASIBLE)
    lo = float(np.max(np.min(np.where(allowed, A, np.inf), axis=1)))
    it, best, hi = 0, None, None

    def probe(T: float) -> str:
        nonlocal best, hi, it
        it += 1
        ok, a, s, c = _coeffs(A, D, S, allowed, T)
        if not ok.any(axis=1).all():
            return "infeasible"
        verdict, opt = _lagrange(ok, a, s, c)
        if verdict == "undecided":
            verdict, opt = _milp_F(ok, a, s, c, backend, deadline)
        if verdict == "feasible":
            t = _fixed_time(A, D, S, opt, float(A[np.arange(len(opt)), opt].max()), T)
            if hi is None or t < hi:
                best, hi = opt, t
        return verdict

    if probe(lo) == "feasible":
        return _server_finish(A, D, S, best, hi, lo, it)
    step = max(abs(lo), 1e-9)
    while hi is None:
        v = probe(lo + step)
        if v == "infeasible":
            lo = lo + step
        elif v == "undecided":
            return Result(TIME_LIMIT, bound=lo, iterations=it)
        step *= 2
    while hi - lo > rtol * abs(hi):
        if deadline is not None and time.perf_counter() > deadline:
            return replace(_server_finish(A, D, S, best, hi, lo, it), termination=TIME_LIMIT)
        mid = 0.5 * (lo + hi)
        v = probe(mid)
        if v == "infeasible":
            lo = mid
        elif v == "undecided":
            return replace(_server_finish(A, D, S, best, hi, lo, it), termination=TIME_LIMIT)
    return _server_finish(A, D, S, best, hi, lo, it)


def _server_finish(A, D, S, opt, T, lo, it) -> Result:
    beta, phi, _ = _alloc(A, D, S, opt, T)
    beta, phi = np.maximum(beta, 1e-12), np.maximum(phi, 1e-12)
    r = np.arange(len(opt))
    obj = float(np.max(A[r, opt] + S[r, opt] / phi + D[r, opt] / beta))
    return Result(OPTIMAL, objective=obj, bound=min(lo, obj), iterations=it, options=opt,
                  beta=beta, phi=phi)


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
    sd, ss = np.sqrt(D[r, opt]), np.sqrt(S[r, opt])
    beta = np.maximum(sd / sd.sum() if sd.sum() > 0 else np.full(n, 1.0 / n), 1e-12)
    phi = np.maximum(ss / ss.sum() if ss.sum() > 0 else np.full(n, 1.0 / n), 1e-12)
    obj = float(np.sum(A[r, opt] + D[r, opt] / beta + S[r, opt] / phi))
    return Result(out.termination, objective=obj, bound=min(out.bound or obj, obj),
                  iterations=out.iterations, options=opt, beta=beta, phi=phi)
