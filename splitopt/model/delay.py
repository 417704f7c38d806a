"""Delay to a target accuracy on the builder: rounds-to-target h(P) times the round latency L.

HSFL (``formulations/hsfl.py``) minimises the training delay to a target: the rounds a
convergence surrogate says the target takes, h(P) with P an additive penalty of each device's mode
and batch size, times the round latency L. The band is time-shared: FL devices hold their own
shares beta_k for the round, the SL devices take turns through the server and the one
transmitting uses the band the FL devices leave, beta_s (``costs.check_bandwidth``: split devices
in turn count their band once). So, with a = device + server seconds and d = transfer seconds at
the whole band of each device's option,

    L = max( max_{k in FL} a_k + d_k / beta_k,  sum_{k in SL} a_k + (sum_{k in SL} d_k) / beta_s ),
    sum_{FL} beta_k + beta_s <= 1,        objective  h(P) * L,   h nondecreasing.

A product of two expressions is not convex, so it is not an :class:`~splitopt.model.expr.Expr`:
:func:`minimize_delay_to_target` sets a :class:`DelayToTarget` as the Problem's objective, and
only the exact ``delay-to-target`` path (:mod:`splitopt.solving.hsfl_path`, a branch and bound
over latency intervals) takes it. Per-device constraints (memory, batch or mode restrictions,
pins) are allowed; rows coupling devices are refused.

>>> p = Problem(scenario, modes=True, batch=range(1, 33), server_share=False)   # sequential
>>> pen = mode_batch_penalty(p, lambda k, fl, b: 0.5 * rho[k] * fl + 4.0 * rho[k] ** 2 / b)
>>> minimize_delay_to_target(p, pen, rounds=lambda P: 100 / (1 - P) if P < 1 else math.inf)
>>> p.solve().path                                                            # 'delay-to-target'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from splitopt.errors import InputError
from splitopt.model.expr import Expr, total

if TYPE_CHECKING:
    from splitopt.model.problem import Problem

#: the structure kind of a delay-to-target objective (the path that takes it)
KIND = "delay-to-target"


def mode_batch_penalty(p: Problem, fn: Callable[[int, np.ndarray, np.ndarray], np.ndarray]
                       ) -> Expr:
    """P = sum_k pen_k(mode, batch): ``fn(k, is_fl, batch)`` per option of device k (arrays).

    An affine expression of the one-hot options, like any other; it depends on each device's
    mode and batch size only (the SL cut does not change it), as the exact path needs.
    """
    o = p.options
    fl, b = o.is_fl.astype(float), o.batch.astype(float)
    parts = []
    for k in range(p.n_devices):
        v = np.broadcast_to(np.asarray(fn(k, fl, b), dtype=float), fl.shape)
        if not np.all(np.isfinite(v)):
            raise InputError("penalty", f"device {p.device_name(k)!r}", "finite numbers")
        parts.append(p.option_expr(k, v))
    return total(parts)


@dataclass(frozen=True, eq=False)
class DelayToTarget:
    """Objective h(P) * L with a time-shared SL band (see the module docstring).

    ``penalty[k, o]``: device k's penalty at option o (the constant of P added to every device
    0); ``a``, ``d``: (N, O) seconds at the whole server and the whole band; ``is_fl``: (O,).
    """

    penalty: np.ndarray
    rounds: Callable[[float], float]
    a: np.ndarray
    d: np.ndarray
    is_fl: np.ndarray
    kind: str = KIND
    reason: str = "a product h(P) * L: only the delay-to-target path takes it"

    def latency(self, option: np.ndarray, beta: np.ndarray) -> float:
        """L of per-device options at per-device shares (the SL group's band: its largest)."""
        rows = np.arange(len(option))
        fl = self.is_fl[option]
        a, d = self.a[rows, option], self.d[rows, option]
        with np.errstate(divide="ignore"):
            parts = list(a[fl] + d[fl] / np.abs(beta[fl]))
            if (~fl).any():
                beta_s = float(np.abs(beta[~fl]).max())
                parts.append(a[~fl].sum() + d[~fl].sum() / beta_s)
        return float(max(parts))

    def value_at(self, option: np.ndarray, beta: np.ndarray) -> float:
        """h(P) * L of per-device options and shares (inf when the target is out of reach)."""
        r = self.rounds(float(self.penalty[np.arange(len(option)), option].sum()))
        return r * self.latency(option, beta) if math.isfinite(r) else math.inf

    def value(self, x: np.ndarray, shares: np.ndarray, n_options: int) -> float:
        """The exact value at the Problem's columns (as :meth:`Expr.value`, for the guard)."""
        n = self.a.shape[0]
        option = np.asarray(x[:n * n_options]).reshape(n, n_options).argmax(axis=1)
        return self.value_at(option, np.asarray(shares[0, :n], dtype=float))


def minimize_delay_to_target(p: Problem, penalty: Expr,
                             rounds: Callable[[float], float]) -> DelayToTarget:
    """Set ``p``'s objective to h(P) * L (``rounds`` is h, nondecreasing, inf out of reach).

    ``p`` must take SL devices in turn (``training.schedule: sequential``) at the whole server
    (``server_share=False``) without selection; ``penalty`` is an affine expression of the
    options (:func:`mode_batch_penalty`).
    """
    from splitopt.model.problem import Problem

    if not isinstance(p, Problem):
        raise InputError("problem", type(p).__name__, "a splitopt Problem")
    if p.scenario.training.schedule != "sequential":
        raise InputError("training.schedule", p.scenario.training.schedule, "'sequential'",
                         "Delay to target takes the SL devices in turn (time-shared band).")
    if p.server_share is not None:
        raise InputError("server_share", True, "False",
                         "SL devices in turn use the whole server: Problem(..., "
                         "server_share=False).")
    if p.options.is_off.any():
        raise InputError("selection", True, "False", "Every device takes part in HSFL.")
    if not callable(rounds):
        raise InputError("rounds", rounds, "a function of the total penalty P")
    e = Expr.of(penalty)
    nz = p.n_devices * p.n_options
    if not e.is_affine or (len(e.lin_idx) and e.lin_idx.max() >= nz):
        raise InputError("penalty", "an expression beyond the options",
                         "an affine expression of the mode/batch options (mode_batch_penalty)")
    pen = np.bincount(e.lin_idx, e.lin_coef, minlength=nz).reshape(p.n_devices, p.n_options)
    pen[0] += e.const
    o = p.options
    obj = DelayToTarget(pen, rounds, o.a_dev + o.a_srv, np.asarray(o.d), o.is_fl.copy())
    p.objective, p.sense = obj, "min"  # type: ignore[assignment]
    return obj
