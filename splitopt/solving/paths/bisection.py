"""The ``bisection`` path: min-max round time, per-device rows only (no solver; numpy).

The kernel is :func:`splitopt.solving.bisection.bisect_minmax`; a common cut for all devices
(``tied``) runs it once per candidate cut and keeps the best.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.backends.base import INFEASIBLE
from splitopt.backends.results import Result
from splitopt.solving.bisection import bisect_minmax

if TYPE_CHECKING:
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


def accepts(st: Structure) -> bool:
    """Min-max objective, no server shares, no row coupling devices."""
    return st.kind == "minmax" and not st.has_phi and not st.coupling


def run(p: Problem, st: Structure, be: Any, deadline: float | None, gap: float, log: bool,
        warm: Any, progress: Any) -> Result:
    """Bisection on the round time (exact to 1e-12; ``gap`` does not loosen it)."""
    if st.tied:
        return _tied(p, st, deadline)
    return bisect_minmax(st.A, st.D, st.beta_min, st.allowed, deadline=deadline)


def _tied(p: Problem, st: Structure, deadline: float | None) -> Result:
    """One common cut: the bisection once per candidate cut, the best kept (exact)."""
    cut, off = p.options.cut, p.options.is_off
    best: Result | None = None
    bound, it = np.inf, 0
    for c in np.unique(cut[cut >= 0]):
        allowed = st.allowed & ((cut == c) | off)
        if not allowed.any(axis=1).all():
            continue
        out = bisect_minmax(st.A, st.D, st.beta_min, allowed, deadline=deadline)
        it += out.iterations
        if out.termination == INFEASIBLE:
            continue
        assert out.bound is not None and out.objective is not None
        bound = min(bound, out.bound)
        if best is None or out.objective < best.objective:  # type: ignore[operator]
            best = out
    if best is None:
        return Result(INFEASIBLE, iterations=it)
    return replace(best, bound=float(bound), iterations=it)
