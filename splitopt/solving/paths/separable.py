"""The ``separable`` path: sums of device terms (sequential rounds, total energy).

The kernel is :func:`splitopt.solving.resource.separable_sum`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from splitopt.backends.base import Backend
    from splitopt.backends.results import Result
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


def accepts(st: Structure) -> bool:
    """A sum of device-local terms, per-device rows only, no common cut, no least shares."""
    return (st.kind == "separable" and not st.coupling and not st.tied
            and not np.any(st.beta_min > 0))


def run(p: Problem, st: Structure, be: Backend, deadline: float | None, gap: float, log: bool,
        warm: Any, progress: Any) -> Result:
    """One MILP with two scalar squares (Cauchy-Schwarz shares), closed by tangent cuts."""
    from splitopt.solving.resource import separable_sum

    return separable_sum(st.A, st.D, st.S, st.allowed, be, deadline=deadline,
                         gap=min(gap, 1e-7))
