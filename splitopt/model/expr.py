"""Expressions and constraints of the declarative builder.

An :class:`Expr` is, over the model's columns x,

    sum_i lin_coef[i] * x[lin_idx[i]] + const
    + sum_j q_coef[j] * z[q_z[j]] / share_{q_res[j]}(device of q_z[j])        (convex for q_coef >=
    0)
    + sum_m w_m * max(terms_m)                                                   (convex for w_m >=
    0)

The middle part is the reference cost model's ``d / beta`` and ``a_srv / phi`` terms: ``z`` is a
one-hot cut-option binary and the share is that device's bandwidth (res 0) or server share (res 1).
Everything is stored as numpy arrays so that building a 1000-device problem costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from splitopt.errors import InputError

_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=float)

BETA, PHI = 0, 1


@dataclass(frozen=True, eq=False)
class Expr:
    """A convex (or affine) expression over the model's columns; build it with + - * and max."""

    lin_idx: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    lin_coef: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    const: float = 0.0
    q_z: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    q_res: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    q_coef: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    maxes: tuple[tuple[float, tuple[Expr, ...]], ...] = ()

    # ------------------------------------------------------------ algebra
    @staticmethod
    def of(value: ExprLike) -> Expr:
        """Wrap a number (or return an expression unchanged)."""
        if isinstance(value, Expr):
            return value
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value):
            return Expr(const=float(value))
        raise InputError("expression operand", value, "a splitopt Expr or a finite number")

    def __add__(self, other: ExprLike) -> Expr:
        o = Expr.of(other)
        return Expr(np.concatenate([self.lin_idx, o.lin_idx]),
                    np.concatenate([self.lin_coef, o.lin_coef]), self.const + o.const,
                    np.concatenate([self.q_z, o.q_z]), np.concatenate([self.q_res, o.q_res]),
                    np.concatenate([self.q_coef, o.q_coef]), self.maxes + o.maxes)

    __radd__ = __add__

    def __mul__(self, k: float) -> Expr:
        if isinstance(k, Expr):
            raise InputError("expression product", "Expr * Expr", "an expression times a number",
                             "Products of decision variables are not linear; use a constraint.")
        k = Expr.of(k).const
        return Expr(self.lin_idx, self.lin_coef * k, self.const * k, self.q_z, self.q_res,
                    self.q_coef * k, tuple((w * k, t) for w, t in self.maxes))

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Expr:
        return self * (1.0 / Expr.of(k).const)

    def __neg__(self) -> Expr:
        return self * -1.0

    def __sub__(self, other: ExprLike) -> Expr:
        return self + (-Expr.of(other))

    def __rsub__(self, other: ExprLike) -> Expr:
        return Expr.of(other) + (-self)

    # ------------------------------------------------------------ relations
    def __le__(self, other: ExprLike) -> Constraint:  # type: ignore[override]
        return Constraint(self - other, -math.inf, 0.0)

    def __ge__(self, other: ExprLike) -> Constraint:  # type: ignore[override]
        # stored as other - self <= 0; ``flipped`` lets messages show it the way it was written
        return Constraint(Expr.of(other) - self, -math.inf, 0.0, flipped=True)

    def __eq__(self, other: object) -> Constraint:  # type: ignore[override]
        return Constraint(self - other, 0.0, 0.0)  # type: ignore[operator]

    __hash__ = object.__hash__

    # ------------------------------------------------------------ shape
    @property
    def is_affine(self) -> bool:
        """True when there is no 1/share term and no max."""
        return not (len(self.q_z) and np.any(self.q_coef != 0)) and not self.maxes

    @property
    def is_convex(self) -> bool:
        """True when every 1/share coefficient and every max weight is >= 0."""
        return bool(np.all(self.q_coef >= 0)) and all(
            w >= 0 and (ts.is_convex if isinstance(ts, DeviceTerms)
                        else all(t.is_convex for t in ts)) for w, ts in self.maxes)

    def columns(self) -> np.ndarray:
        """Every model column the expression touches (max terms included)."""
        parts = [self.lin_idx, self.q_z] + [t.columns() for _, ts in self.maxes for t in ts]
        return np.unique(np.concatenate(parts)) if parts else _EMPTY_I

    def value(self, x: np.ndarray, shares: np.ndarray, n_options: int) -> float:
        """The exact value at model columns ``x``.

        ``shares[res, k]`` are the resource shares; z (the first block) has ``n_options`` columns
        per device.
        """
        v = self.const + float(self.lin_coef @ x[self.lin_idx]) if len(self.lin_idx) else self.const
        if len(self.q_z):
            zv = x[self.q_z]
            on = zv > 0.5
            dev = self.q_z[on] // n_options
            # |share|: a share of -0.0 or -1e-13 must price as a huge time, never -inf
            v += float(np.sum(self.q_coef[on] / np.abs(shares[self.q_res[on], dev])))
        for w, ts in self.maxes:
            if isinstance(ts, DeviceTerms):
                v += w * float(ts.values(x, shares).max())
            else:
                v += w * max(t.value(x, shares, n_options) for t in ts)
        return v


ExprLike = Expr | float | int


class DeviceTerms(Sequence):
    """One option expression per device, held as (N, O) arrays: the terms of a fleet-wide max.

    Term k is ``sum_o z[k,o] (lin[k,o] + beta[k,o] / beta_k + phi[k,o] / phi_k)`` over the z
    block (``n_options`` columns per device). The fast paths read the arrays at once
    (``solving.structure.analyse``); code that walks the terms gets each as an :class:`Expr`,
    built on first access, the same one ``Problem.option_expr`` builds.
    """

    def __init__(self, n_options: int, lin: np.ndarray, beta: np.ndarray | None,
                 phi: np.ndarray | None):
        self.n_options, self.lin, self.beta, self.phi = n_options, lin, beta, phi
        self._built: dict[int, Expr] = {}

    def __len__(self) -> int:
        return len(self.lin)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return tuple(self[i] for i in range(*k.indices(len(self))))
        k = int(k) + (len(self) if k < 0 else 0)
        if not 0 <= k < len(self):
            raise IndexError(k)
        e = self._built.get(k)
        if e is None:
            beta = None if self.beta is None else self.beta[k]
            phi = None if self.phi is None else self.phi[k]
            e = self._built[k] = option_expr(k, self.n_options, np.array(self.lin[k]), beta, phi)
        return e

    @property
    def is_convex(self) -> bool:
        """True when every 1/share coefficient is >= 0."""
        return all(c is None or bool(np.all(c >= 0)) for c in (self.beta, self.phi))

    def values(self, x: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """Every term's exact value at model columns ``x`` (one-hot z), in one array pass."""
        n, o = self.lin.shape
        z = x[:n * o].reshape(n, o)
        on = z > 0.5
        v = (self.lin * z).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            for res, coef in ((BETA, self.beta), (PHI, self.phi)):
                if coef is not None:
                    q = np.where(on & (coef != 0), coef, 0.0).sum(axis=1)
                    v = v + np.where(q != 0, q / np.abs(shares[res, :n]), 0.0)
        return v


def option_expr(k: int, n_options: int, lin: np.ndarray, beta: np.ndarray | None = None,
                phi: np.ndarray | None = None) -> Expr:
    """sum_o z[k,o] (lin[o] + beta[o] / beta_k + phi[o] / phi_k) over device k's z block."""
    cols = k * n_options + np.arange(n_options, dtype=np.int64)
    qz, qr, qc = [], [], []
    for res, coef in ((BETA, beta), (PHI, phi)):
        if coef is not None:
            nz = np.flatnonzero(coef)
            qz.append(cols[nz])
            qr.append(np.full(len(nz), res, dtype=np.int64))
            qc.append(np.asarray(coef, dtype=float)[nz])
    lin = np.asarray(lin, dtype=float)
    if not qz:
        return Expr(cols, lin)
    return Expr(cols, lin, 0.0, np.concatenate(qz), np.concatenate(qr), np.concatenate(qc))


def maximum(terms: Iterable[ExprLike]) -> Expr:
    """max(terms): convex; allowed in objectives to minimise and on the small side of ``<=``."""
    given = tuple(Expr.of(t) for t in terms)
    if not given:
        raise InputError("maximum", [], "at least one expression")
    if len(given) == 1:
        return given[0]
    ts = tuple(u for t in given for u in _flat(t))
    return Expr(maxes=((1.0, ts),))


def _flat(t: Expr) -> tuple[Expr, ...]:
    """A term ``rest + w max(ts)`` (one max, w > 0) as the terms ``rest + w t_j``, recursively.

    max(max(a, b) + c, d) = max(a + c, b + c, d): a max of maxes is one max, so every relation
    ``maximum(...) <= b`` becomes one row per innermost term (see compile's EpigraphMax).
    """
    if len(t.maxes) != 1 or t.maxes[0][0] <= 0:
        return (t,)
    w, ts = t.maxes[0]
    rest = replace(t, maxes=())
    return tuple(u for s in ts for u in _flat(s * w + rest))


def total(terms: Iterable[ExprLike]) -> Expr:
    """Sum of expressions, concatenating arrays once (faster than repeated +)."""
    ts = [Expr.of(t) for t in terms]
    if not ts:
        return Expr()
    return Expr(np.concatenate([t.lin_idx for t in ts]), np.concatenate([t.lin_coef for t in ts]),
                sum(t.const for t in ts), np.concatenate([t.q_z for t in ts]),
                np.concatenate([t.q_res for t in ts]), np.concatenate([t.q_coef for t in ts]),
                tuple(m for t in ts for m in t.maxes))


@dataclass(frozen=True, eq=False)
class Constraint:
    """lb <= body <= ub with the body's constant folded in at compile time."""

    body: Expr
    lb: float
    ub: float
    name: str = ""
    flipped: bool = False  # written as a >= b (stored as b - a <= 0)

    def named(self, name: str) -> Constraint:
        """A copy carrying a name (used in infeasibility messages and LP/MPS files)."""
        return Constraint(self.body, self.lb, self.ub, name, self.flipped)

    @property
    def label(self) -> str:
        """``constraint 'name'`` or ``an unnamed constraint`` (for messages)."""
        return f"constraint {self.name!r}" if self.name else "an unnamed constraint"

    def check_convex(self) -> None:
        """Raise if the constraint is not convex.

        A 1/share term or a max must sit on the small side.
        """
        if self.body.is_affine:
            return
        if self.lb > -math.inf or not self.body.is_convex:
            raise InputError(f"constraint {self.name or ''}".strip(), "a non-convex relation",
                             "affine relations, or convex expressions (max, delays, energy) <= a "
                             "number or an affine expression",
                             "Write max/delay/energy terms on the left of '<='.")
