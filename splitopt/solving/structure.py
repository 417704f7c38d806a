"""Recognise structure that an exact fast path can exploit, and presolve per-device constraints.

A constraint that touches one device only is exact to presolve over the device's options, because
z[k, :] is one-hot: ``sum_o v_o z[k,o] <= ub`` keeps the options with v_o <= ub, and
``sum_o z[k,o] (l_o + q_o / beta_k) <= ub`` keeps the options with l_o < ub and asks for
``beta_k >= q_o / (ub - l_o)`` there (a per-option minimum share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from splitopt.model.expr import BETA, Constraint, DeviceTerms, Expr

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


@dataclass
class Structure:
    """What the analysis found.

    ``kind`` is ``"minmax"`` (objective w * max_k T_k + const, each T_k device-local),
    ``"separable"`` (objective sum_k of device-local terms) or ``"generic"``; ``reason`` says why
    a fast path does not apply.
    """

    kind: str
    reason: str = ""
    A: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, O) constant part
    D: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, O) coef of 1/beta
    S: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, O) coef of 1/phi
    weight: float = 1.0
    const: float = 0.0
    allowed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    beta_min: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N, O)
    coupling: list[Constraint] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)  # per-device presolve failures
    tied: bool = False

    @property
    def has_phi(self) -> bool:
        """True when some option pays a 1/phi term."""
        return bool(np.any(self.S > 0))


def device_of(p: Problem, e: Expr) -> int | None:
    """The device whose z block holds every column of e (and no other column), else None."""
    if e.maxes:
        return None
    o, nz = p.n_options, p.n_devices * p.n_options
    cols = np.concatenate([e.lin_idx, e.q_z])
    if not len(cols):
        return -1  # a constant
    lo, hi = cols.min(), cols.max()
    if hi >= nz or lo // o != hi // o:
        return None
    return int(lo // o)


def per_option(p: Problem, e: Expr, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lin, 1/beta coef, 1/phi coef) per option of a device-local expression (constant in)."""
    o = p.n_options
    lin = e.const + np.bincount(e.lin_idx - k * o, e.lin_coef, minlength=o)
    sel = e.q_res == BETA
    qb = np.bincount(e.q_z[sel] - k * o, e.q_coef[sel], minlength=o)
    qp = np.bincount(e.q_z[~sel] - k * o, e.q_coef[~sel], minlength=o)
    return lin, qb, qp


def _shares_default(p: Problem) -> bool:
    n, off = p.n_devices, p.bandwidth.offset
    ok = np.all(p.col_lb[off:off + n] == 0) and np.all(p.col_ub[off:off + n] == 1)
    if p.server_share is not None:
        s = p.server_share.offset
        ok = ok and np.all(p.col_lb[s:s + n] == 0) and np.all(p.col_ub[s:s + n] == 1)
    return bool(ok)


def analyse(p: Problem) -> Structure:
    """Classify the problem and presolve its per-device constraints."""
    obj = p.objective
    assert obj is not None
    if not isinstance(obj, Expr):  # a product objective (model/delay.py): its own exact path
        from splitopt.solving.hsfl_path import structure

        return structure(p)
    if not _shares_default(p):
        return Structure("generic", "shares are bounded or fixed by the user")
    n, o = p.n_devices, p.n_options
    if len(obj.maxes) == 1 and not len(obj.lin_idx) and not len(obj.q_z):
        kind, (weight, terms) = "minmax", obj.maxes[0]
    elif not obj.maxes:
        kind, weight, terms = "separable", 1.0, (obj - obj.const,)
    else:
        return Structure("generic", "the objective is not a max of device delays or a sum")
    if isinstance(terms, DeviceTerms) and terms.lin.shape == (n, o):
        # built as arrays: read-only views of them (no copies; nothing downstream writes A, D, S)
        A, D, S = (_read_only(x, (n, o)) for x in (terms.lin, terms.beta, terms.phi))
    else:
        A, D, S = np.zeros((n, o)), np.zeros((n, o)), np.zeros((n, o))
        why = _per_term(p, kind, terms, A, D, S)
        if why:
            return Structure("generic", why)
    st = Structure(kind, A=A, D=D, S=S, weight=weight, const=obj.const,
                   allowed=p.allowed.copy(), beta_min=np.zeros((n, o)), tied=p.tied)
    for c in p.constraints:
        _classify(p, c, st)
    return st


def _or0(a: np.ndarray | None) -> np.ndarray | float:
    return 0.0 if a is None else a


def _read_only(a: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A read-only float view of ``a`` (zeros of ``shape`` when None)."""
    v = np.broadcast_to(0.0, shape) if a is None else np.asarray(a, dtype=float).view()
    v.flags.writeable = False
    return v


def _per_term(p: Problem, kind: str, terms, A: np.ndarray, D: np.ndarray,
              S: np.ndarray) -> str:
    """Fill A, D, S term by term; the reason when a term is not one device's."""
    seen = np.zeros(p.n_devices, dtype=bool)
    parts = _split_by_device(p, terms[0]) if kind == "separable" else None
    if kind == "separable" and parts is None:
        return "the objective mixes devices in one term"
    for k, t in (parts.items() if parts is not None else enumerate_terms(p, terms)):
        if k is None or (kind == "minmax" and seen[k]):
            return "a term of the max is not one device's delay"
        seen[k] = True
        lin, qb, qp = per_option(p, t, k)
        A[k], D[k], S[k] = A[k] + lin, D[k] + qb, S[k] + qp
    return ""


def enumerate_terms(p: Problem, terms: tuple[Expr, ...]) -> list[tuple[int | None, Expr]]:
    """(device, term) for each term of a max (device None when a term is not device-local)."""
    out = []
    for t in terms:
        k = device_of(p, t)
        out.append((None if k is None or k < 0 else k, t))
    return out


def _split_by_device(p: Problem, e: Expr) -> dict[int, Expr] | None:
    """Split a sum into device-local parts, or None when a column is not in the z block."""
    if e.maxes:
        return None
    o, nz = p.n_options, p.n_devices * p.n_options
    if (len(e.lin_idx) and e.lin_idx.max() >= nz) or (len(e.q_z) and e.q_z.max() >= nz):
        return None
    out: dict[int, Expr] = {}
    dl, dq = e.lin_idx // o, e.q_z // o
    for k in np.unique(np.concatenate([dl, dq])):
        a, b = dl == k, dq == k
        out[int(k)] = Expr(e.lin_idx[a], e.lin_coef[a], 0.0, e.q_z[b], e.q_res[b], e.q_coef[b])
    return out


def _classify(p: Problem, c: Constraint, st: Structure) -> None:
    """Presolve a device-local constraint into the option masks, or record it as coupling."""
    b = c.body
    if len(b.maxes) == 1 and not len(b.lin_idx) and not len(b.q_z) and b.maxes[0][0] > 0:
        w, ts = b.maxes[0]  # max_j e_j <= ub: one device-local constraint per term
        if isinstance(ts, DeviceTerms) and ts.lin.shape == st.A.shape:
            lin, qb, qp = (w * np.asarray(_or0(a) + np.zeros(ts.lin.shape))
                           for a in (ts.lin, ts.beta, ts.phi))
            _presolve(p, c, st, np.arange(p.n_devices), lin + b.const, qb, qp)
            return
        for t in ts:
            _classify(p, Constraint(t * w + b.const, c.lb, c.ub, c.name), st)
        return
    k = device_of(p, b)
    if k is None:
        if c.name.startswith("tie:") and st.tied:
            return
        if (len(b.q_z) or b.maxes or (len(b.lin_idx) and _touches_shares(p, b))):
            st.kind, st.reason = "generic", f"constraint {c.name or '(unnamed)'} couples shares"
        else:
            st.coupling.append(c)
        return
    if k < 0:  # a constant relation
        if not (c.lb - 1e-9 <= b.const <= c.ub + 1e-9):
            st.explained.append(f"constraint {c.name or '(unnamed)'} is a false constant relation")
        return
    lin, qb, qp = per_option(p, b, k)
    _presolve(p, c, st, np.array([k]), lin[None], qb[None], qp[None])


def _presolve(p: Problem, c: Constraint, st: Structure, ks: np.ndarray, lin: np.ndarray,
              qb: np.ndarray, qp: np.ndarray) -> None:
    """Presolve ``lin + qb / beta_k (+ qp / phi_k)`` in [lb, ub] for devices ks (rows of lin)."""
    if np.any(qp):
        st.kind, st.reason = "generic", "a per-device constraint on the server share"
        return
    ok = (lin >= c.lb - 1e-9) & (lin <= c.ub + 1e-9) & (qb == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        room = c.ub - lin
        need = np.where(qb > 0, qb / room, 0.0)
    ok |= (qb > 0) & (room > 0) & (lin >= c.lb - 1e-9) & (need <= 1 + 1e-12)
    before = st.allowed[ks].copy()
    st.allowed[ks] &= ok
    st.beta_min[ks] = np.maximum(st.beta_min[ks], np.where(qb > 0, need, 0.0))
    emptied = np.flatnonzero(before.any(axis=1) & ~st.allowed[ks].any(axis=1))
    if len(emptied):
        from splitopt.solving.explain import explain_device

        for i in emptied:
            st.explained.append(explain_device(p, int(ks[i]), c, lin[i], qb[i], before[i]))


def _touches_shares(p: Problem, e: Expr) -> bool:
    nz = p.n_devices * p.n_options
    share_end = p.bandwidth.offset + p.n_devices * (2 if p.server_share is not None else 1)
    return bool(np.any((e.lin_idx >= nz) & (e.lin_idx < share_end)))


def is_inf(x: float) -> bool:
    """True for +-inf."""
    return math.isinf(x)
