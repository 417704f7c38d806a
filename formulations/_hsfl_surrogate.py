"""The HSFL convergence surrogate: rounds to a target as a function of modes and batch sizes.

Its form is the framework's, not the paper's theorem (we had only the paper's abstract, which
says that the convergence depends on the modes and batch sizes but not how):

    R = A / (eps - G * sum_{k in FL} rho_k - sigma^2 * sum_k rho_k^2 / b_k),

the rounds an SGD-type bound of the form loss_r - f* <= A / r + G * (FL share) + sigma^2 *
(variance term) needs to reach loss_r - f* = eps. rho_k is device k's data share, G the drift the
FL-mode devices' local training on non-IID data adds, sigma^2 the gradient variance.
:func:`estimate_surrogate` fits A, G, sigma^2 and the floor f* from pilot runs;
docs/formulations.md shows a fit on digits with non-IID splits against measured rounds-to-target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitopt.errors import InputError


@dataclass(frozen=True)
class Surrogate:
    """R = A / (eps - G * sum_{FL} rho_k - sigma2 * sum_k rho_k^2 / b_k) rounds to the target.

    ``eps`` is the target optimality gap (target loss minus the loss floor). Subclass and override
    :meth:`penalty` (per device, additive) and :meth:`rounds` (nondecreasing in the total) to use
    another surrogate with the exact solver.
    """

    A: float = 100.0
    G: float = 0.5
    sigma2: float = 4.0
    eps: float = 1.0

    def __post_init__(self) -> None:
        for name in ("A", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"surrogate.{name}", v, "a finite number > 0")
        for name in ("G", "sigma2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(f"surrogate.{name}", v, "a finite number >= 0")

    def penalty(self, rho: np.ndarray, fl: np.ndarray | bool, b: np.ndarray) -> np.ndarray:
        """Each device's share of the denominator: G * rho * [FL] + sigma2 * rho^2 / b."""
        return self.G * rho * np.asarray(fl, dtype=float) + self.sigma2 * rho**2 / b

    def rounds(self, total_penalty: float) -> float:
        """Rounds to the target for a total penalty (inf when the target is out of reach)."""
        slack = self.eps - total_penalty
        return self.A / slack if slack > 0 else math.inf


def estimate_surrogate(runs: Sequence[dict[str, Any]], target: float) -> tuple[Surrogate, float]:
    """Fit A, G, sigma2 (and the loss floor f*) from short pilot runs.

    Each run is ``{"losses": [per-round loss ...], "fl_share": sum_{FL} rho_k,
    "var_term": sum_k rho_k^2 / b_k}`` (use 1 - accuracy for accuracies). The model is the bound
    behind the surrogate, loss_r = f* + A / r + G * fl_share + sigma2 * var_term, fitted by
    bounded least squares (A, G, sigma2 >= 0). Runs must differ in fl_share and in var_term for
    G and sigma2 to be identified. Returns the surrogate with eps = target - f*, and f*.
    """
    from scipy.optimize import lsq_linear

    if not isinstance(runs, Sequence) or not runs:
        raise InputError("runs", runs, "a non-empty list of pilot runs")
    rows, ys = [], []
    for i, run in enumerate(runs):
        losses = np.asarray(run.get("losses", []) if isinstance(run, dict) else [], dtype=float)
        if losses.ndim != 1 or len(losses) < 2 or not np.all(np.isfinite(losses)):
            raise InputError(f"runs[{i}].losses", run, "a list of at least 2 finite losses")
        r = np.arange(1, len(losses) + 1, dtype=float)
        rows.append(np.column_stack([np.ones_like(r), 1 / r, np.full_like(r, run["fl_share"]),
                                     np.full_like(r, run["var_term"])]))
        ys.append(losses)
    fit = lsq_linear(np.vstack(rows), np.concatenate(ys),
                     bounds=([-np.inf, 0, 0, 0], [np.inf, np.inf, np.inf, np.inf]))
    f_star, a, g, s2 = (float(v) for v in fit.x)
    if not target > f_star:
        raise InputError("target", target, f"a loss above the fitted floor {f_star:.4g}")
    return Surrogate(A=max(a, 1e-12), G=g, sigma2=s2, eps=target - f_star), f_star


def rounds_to_target(losses: Sequence[float], target: float) -> float:
    """First round (1-based) whose best loss so far is <= ``target`` (inf when none is)."""
    best = np.minimum.accumulate(np.asarray(losses, dtype=float))
    hit = np.flatnonzero(best <= target)
    return float(hit[0] + 1) if len(hit) else math.inf


def estimate_surrogate_from_rounds(runs: Sequence[dict[str, Any]], levels: Sequence[float],
                                   target: float) -> tuple[Surrogate, float]:
    """Fit A, G, sigma2 and f* from the rounds the pilot runs took to reach loss ``levels``.

    The surrogate says a run reaches loss t after R = A / (t - f* - G fl - sigma2 var) rounds,
    so 1 / R = t / A - f* / A - (G / A) fl - (sigma2 / A) var is linear in (1/A, f*/A, G/A,
    sigma2/A): bounded least squares over every (run, level) the run reached. Levels the pilots
    reach early let the fit predict a lower ``target`` beyond the pilot. Returns the surrogate
    with eps = target - f*, and f*.
    """
    from scipy.optimize import lsq_linear

    if not isinstance(runs, Sequence) or not runs:
        raise InputError("runs", runs, "a non-empty list of pilot runs")
    rows, ys = [], []
    for i, run in enumerate(runs):
        losses = run.get("losses") if isinstance(run, dict) else None
        if not isinstance(losses, Sequence) or not np.all(np.isfinite(losses)):
            raise InputError(f"runs[{i}].losses", run, "a list of finite losses")
        for t in levels:
            r = rounds_to_target(losses, t)
            if math.isfinite(r):
                rows.append([t, -1.0, -run["fl_share"], -run["var_term"]])
                ys.append(1.0 / r)
    if len(rows) < 4:
        raise InputError("levels", list(levels), "loss levels the pilot runs reach (at least 4 "
                         "(run, level) pairs)")
    fit = lsq_linear(np.array(rows), np.array(ys),
                     bounds=([1e-12, -np.inf, 0, 0], [np.inf, np.inf, np.inf, np.inf]))
    inv_a, fa, ga, sa = (float(v) for v in fit.x)
    a = 1.0 / inv_a
    f_star = fa * a
    if not target > f_star:
        raise InputError("target", target, f"a loss above the fitted floor {f_star:.4g}")
    return Surrogate(A=a, G=ga * a, sigma2=sa * a, eps=target - f_star), f_star
