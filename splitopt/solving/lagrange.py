"""The Lagrangian dual over the two share budgets, for sums of per-device terms.

A Problem whose objective is a sum of device terms and whose rows each touch one device couples
its devices only through ``sum_k beta_k <= 1`` and ``sum_k phi_k <= 1``. Relaxing the two budgets
with prices (lam, mu) >= 0 splits it into one tiny problem per device and option::

    L(lam, mu) = sum_k min_o v[k,o](lam, mu) - lam - mu
    v[k,o] = a + min  b/beta + c/phi + lam beta + mu phi
                 s.t. q/beta + r/phi <= R,  bl <= beta <= 1,  pl <= phi <= 1

(a + b/beta + c/phi: the option's objective term; q/beta + r/phi <= R: its row with both shares;
bl, pl: the least shares its one-share rows ask). For a row price nu >= 0 the inner minimum
separates in closed form, ``beta(nu) = clip(sqrt((b + nu q) / lam), bl, 1)`` (phi alike), and
``theta(nu) = a + (b + nu q)/beta + lam beta + (c + nu r)/phi + mu phi - nu R`` is a lower bound
on v[k,o] for every nu (weak duality of the convex inner problem); nu is found by Newton steps
on the row (bisection where a step leaves the bracket), vectorised over all devices x options.
So L(lam, mu) is a proven lower bound on the integer optimum for every (lam, mu) >= 0; it is
concave and is maximised by a centre-of-gravity cutting-plane method in the (lam, mu) plane
(:func:`splitopt.solving.lagrange_max.maximise`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from splitopt.model.expr import DeviceTerms

if TYPE_CHECKING:
    from splitopt.model.problem import Problem

_NU_STEPS = 64  # at most this many steps on each row price (Newton, else bisection)


@dataclass(frozen=True)
class Table:
    """Per device x option (dense, (n, o)): objective a + b/beta + c/phi, row, least shares.

    ``ok`` marks the options still open; ``has_phi`` is False without server shares (then c, r,
    pl are 0 and phi is not a variable). ``const``: the objective's constant.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    q: np.ndarray
    r: np.ndarray
    R: np.ndarray
    bl: np.ndarray
    pl: np.ndarray
    ok: np.ndarray
    has_phi: bool
    const: float
    cols: np.ndarray  # the option (column of the Problem's option table) of each entry

    def only(self, ok: np.ndarray) -> Table:
        """The same table with the options ``ok`` open (others closed)."""
        return replace(self, ok=self.ok & ok)

    def compact(self) -> Table:
        """The open options moved to the front, the table cut to the most any device keeps."""
        order = np.argsort(~self.ok, axis=1, kind="stable")
        w = max(int(self.ok.sum(axis=1).max()), 1)
        take = order[:, :w]
        return Table(*(np.take_along_axis(getattr(self, f), take, axis=1) for f in _ARRAYS),
                     self.has_phi, self.const, np.take_along_axis(self.cols, take, axis=1))

    def prune(self) -> Table:
        """Close every option that another open option of its device beats in every respect.

        (Objective terms, row, least shares: never the better choice at any prices.)
        """
        key = np.stack([self.a, self.b, self.c, self.q, self.r, -self.R, self.bl, self.pl], -1)
        key = np.where(self.ok[..., None], key, np.inf)
        ok = self.ok.copy()
        idx = np.arange(key.shape[1])
        for s in range(0, key.shape[0], 64):  # (devices, i, j, 8) in blocks of 64 devices
            k = key[s:s + 64]
            le = np.all(k[:, :, None, :] <= k[:, None, :, :], axis=-1)  # i no worse than j
            lt = np.any(k[:, :, None, :] < k[:, None, :, :], axis=-1)
            beats = le & (lt | (idx[:, None] < idx[None, :]))
            beats &= self.ok[s:s + 64, :, None]
            beats[:, idx, idx] = False
            ok[s:s + 64] &= ~beats.any(axis=1)
        return replace(self, ok=ok)


_ARRAYS = ("a", "b", "c", "q", "r", "R", "bl", "pl", "ok")


def extract(p: Problem) -> Table | None:
    """The table of a Problem of this structure, else None (the generic route takes it).

    The structure: minimise a sum of device-local terms, every row device-local (one row with
    both shares per option at most, upper limits only on share terms), default share bounds, no
    user columns, no common cut.
    """
    from splitopt.solving.structure import analyse

    n, o = p.n_devices, p.n_options
    has_phi = p.server_share is not None
    if (p.sense != "min" or p.tied or p.extras or p.objective is None
            or p.n_cols != n * o + n * (2 if has_phi else 1)):
        return None
    q = copy.copy(p)
    q.constraints = []
    st = analyse(q)
    if st.kind != "separable" or np.any(st.D < 0) or np.any(st.S < 0):
        return None
    t = Table(st.A.copy(), st.D.copy(), st.S.copy(), np.zeros((n, o)), np.zeros((n, o)),
              np.full((n, o), np.inf), np.zeros((n, o)), np.zeros((n, o)), p.allowed.copy(),
              has_phi, float(st.const), np.tile(np.arange(o), (n, 1)))
    for c in p.constraints:
        rows = _device_rows(p, c)
        if rows is None:
            return None
        for ks, lin, qb, qp in rows:
            if not _add_row(t, ks, lin, qb, qp, c.lb, c.ub):
                return None
    if not has_phi and (np.any(t.c > 0) or np.any(t.r > 0) or np.any(t.pl > 0)):
        return None
    t.ok[:] &= (t.bl <= 1.0) & (t.pl <= 1.0) & (t.q + t.r <= t.R)
    return t


def _device_rows(p: Problem, c) -> list | None:
    """[(devices, lin, 1/beta coef, 1/phi coef)] of a constraint, one row per device.

    Arrays of shape (len(devices), o); None when a row couples devices.
    """
    from splitopt.solving.structure import device_of, per_option

    b = c.body
    if len(b.maxes) == 1 and not len(b.lin_idx) and not len(b.q_z) and b.maxes[0][0] > 0:
        w, ts = b.maxes[0]  # max_j e_j <= ub: one row per term
        if c.lb > -np.inf:
            return None
        if isinstance(ts, DeviceTerms) and ts.lin.shape == (p.n_devices, p.n_options):
            z = np.zeros(ts.lin.shape)
            parts = (w * (z + (0.0 if a is None else a)) for a in (ts.lin, ts.beta, ts.phi))
            lin, qb, qp = parts
            return [(np.arange(p.n_devices), lin + b.const, qb, qp)]
        out = []
        for t in ts:
            k = device_of(p, t)
            if k is None or k < 0:
                return None
            lin, qb, qp = per_option(p, t * w, k)
            out.append((np.array([k]), lin[None] + b.const, qb[None], qp[None]))
        return out
    k = device_of(p, b)
    if k is None or k < 0:  # coupling, or a constant relation (the generic route explains it)
        return None
    lin, qb, qp = per_option(p, b, k)
    return [(np.array([k]), lin[None], qb[None], qp[None])]


def _add_row(t: Table, ks: np.ndarray, lin: np.ndarray, qb: np.ndarray, qp: np.ndarray,
             lb: float, ub: float) -> bool:
    """Fold ``lb <= lin + qb/beta + qp/phi <= ub`` of devices ks into t.

    False when it is not this structure: a negative share coefficient, a lower limit on a share
    term, two rows with both shares on one option.
    """
    if np.any(qb < 0) or np.any(qp < 0):
        return False
    shares = (qb > 0) | (qp > 0)
    if lb > -np.inf and np.any(shares):
        return False
    ok = (lin >= lb - 1e-9 * max(1.0, abs(lb))) & np.where(shares, lin < ub,
                                                           lin <= ub + 1e-9 * max(1.0, abs(ub)))
    room = ub - lin
    with np.errstate(divide="ignore", invalid="ignore"):
        need_b = np.where((qb > 0) & (qp == 0) & ok, qb / room, 0.0)
        need_p = np.where((qp > 0) & (qb == 0) & ok, qp / room, 0.0)
    both = (qb > 0) & (qp > 0) & ok
    if np.any(both & np.isfinite(t.R[ks])):
        return False
    t.ok[ks] &= ok
    t.bl[ks] = np.maximum(t.bl[ks], need_b)
    t.pl[ks] = np.maximum(t.pl[ks], need_p)
    t.q[ks] = np.where(both, qb, t.q[ks])
    t.r[ks] = np.where(both, qp, t.r[ks])
    t.R[ks] = np.where(both, room, t.R[ks])
    return True


@dataclass(frozen=True)
class Point:
    """The dual function at (lam, mu).

    Its value, subgradient, each device's argmin and the per-option lower bounds theta (inf
    where closed) with their shares.
    """

    lam: float
    mu: float
    value: float
    grad: np.ndarray
    pick: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    phi: np.ndarray


def _share(coef: np.ndarray, price: float, lo: np.ndarray) -> np.ndarray:
    """Argmin over lo <= s <= 1 of coef/s + price s (coef >= 0)."""
    s = np.sqrt(coef / price) if price > 0 else np.where(coef > 0, 1.0, 0.0)
    return np.minimum(np.maximum(s, lo), 1.0)


def _over(coef: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Coef / s with 0 where coef is 0 (a share of 0 that nothing prices)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(coef > 0, coef / s, 0.0)


def _at(nu: np.ndarray | float, lam: float, mu: float, b: np.ndarray, c: np.ndarray,
        q: np.ndarray, r: np.ndarray, bl: np.ndarray, pl: np.ndarray,
        has_phi: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(beta, phi, row value h = q/beta + r/phi, dh/dnu) of the inner Lagrangian at row price nu.

    An unclipped share sqrt(k/price), k = coef + nu q, gives d(q/s)/dnu = -(q/s) q / 2k; a
    clipped one gives 0.
    """
    kb = b + nu * q
    beta = _share(kb, lam, bl)
    hb = _over(q, beta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        free = (beta > bl) & (beta < 1.0) & (kb > 0)
        dh = np.where(free, -hb * q / (2 * kb), 0.0)
        if not has_phi:
            return beta, np.ones_like(beta), hb, dh
        kp = c + nu * r
        phi = _share(kp, mu, pl)
        hp = _over(r, phi)
        free = (phi > pl) & (phi < 1.0) & (kp > 0)
        dh = dh + np.where(free, -hp * r / (2 * kp), 0.0)
    return beta, phi, hb + hp, dh


def options_at(t: Table, lam: float, mu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, beta, phi) per device x option: each option's inner lower bound and shares.

    theta is +inf for closed options. The shares meet the option's rows (nu at the feasible end
    of its bracket); theta is the inner dual at that nu, a lower bound on the inner minimum.
    """
    ok = t.ok
    row = ok & np.isfinite(t.R)
    R = np.where(row, t.R, 1.0)
    q, r = np.where(row, t.q, 0.0), np.where(row, t.r, 0.0)
    beta, phi, h, _ = _at(0.0, lam, mu, t.b, t.c, q, r, t.bl, t.pl, t.has_phi)
    need = np.flatnonzero(row & (h > R))  # rows broken at price 0: bisection on these only
    nu = np.zeros(t.a.shape)
    if len(need):
        args = [v.ravel()[need] for v in (t.b, t.c, q, r, t.bl, t.pl)]
        Rn = R.ravel()[need]
        # a price above the root: sqrt(q lam / nu) + sqrt(r mu / nu) <= R, then x4 as needed
        hi = ((np.sqrt(args[2] * lam) + np.sqrt(args[3] * mu)) / Rn) ** 2 + 1e-300
        for _ in range(200):
            short = _at(hi, lam, mu, *args, t.has_phi)[2] > Rn
            if not short.any():
                break
            hi = np.where(short, hi * 4.0, hi)
        # Newton on u = nu^-1/2 from the bracket's top: h(u) is concave and increasing where
        # no share is clipped (r/phi = sqrt(r mu) u when c = 0), so the steps climb to the
        # root from the feasible side (h <= R); bisection where a step falls below the bracket
        lo, nu_k, act = np.zeros_like(hi), hi.copy(), np.arange(len(hi))
        for _ in range(_NU_STEPS):  # on the prices not yet found (most take a few steps)
            sub = [v[act] for v in args]
            Ra, na, la, ha = Rn[act], nu_k[act], lo[act], hi[act]
            _, _, hk, dk = _at(na, lam, mu, *sub, t.has_phi)
            above = hk > Ra
            la, ha = np.where(above, na, la), np.where(above, ha, na)
            lo[act], hi[act] = la, ha
            done = (ha - la <= 1e-13 * ha) | (~above & (Ra - hk <= 1e-13 * Ra))
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step = (1.0 / np.sqrt(na) - (hk - Ra) / (-2.0 * na ** 1.5 * dk)) ** -2.0
            # a step beyond hi restarts from hi (feasible, as Newton would go on), once
            newton = (dk < 0) & (step > la) & ((step < ha) | (na < ha))
            nxt = np.where(newton, np.minimum(step, ha), 0.5 * (la + ha))
            act, nxt = act[~done], nxt[~done]
            if not len(act):
                break
            nu_k[act] = nxt
        bn, pn, hn, _ = _at(hi, lam, mu, *args, t.has_phi)
        for full, part in ((beta, bn), (phi, pn), (h, hn), (nu, hi)):
            full.ravel()[need] = part
    # the inner dual at nu: objective at the shares + nu (row - R) <= 0 (h <= R at hi)
    theta = (t.a + _over(t.b, beta) + lam * beta + (_over(t.c, phi) + mu * phi) * t.has_phi
             + nu * np.where(row, h - R, 0.0))
    return np.where(ok & (h <= R + 1e-12 * R), theta, np.inf), beta, phi


def evaluate(t: Table, lam: float, mu: float) -> Point:
    """L(lam, mu) (a proven lower bound), its subgradient and each device's argmin."""
    theta, beta, phi = options_at(t, lam, mu)
    pick = np.argmin(theta, axis=1)
    rows = np.arange(len(pick))
    best = theta[rows, pick]
    value = float(best.sum()) - lam - (mu if t.has_phi else 0.0) + t.const
    g = np.array([beta[rows, pick].sum() - 1.0, phi[rows, pick].sum() - 1.0 if t.has_phi else 0.0])
    return Point(lam, mu, value, g, pick, theta, beta, phi)
