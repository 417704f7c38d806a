"""The ``server-share`` path: min-max round time with server shares (closed form + MILP).

The kernel is :func:`splitopt.solving.resource.server_minmax`.
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
    """Min-max with server shares, per-device rows only, no common cut, no least shares."""
    return (st.kind == "minmax" and st.has_phi and not st.coupling and not st.tied
            and not np.any(st.beta_min > 0))


def run(p: Problem, st: Structure, be: Backend, deadline: float | None, gap: float, log: bool,
        warm: Any, progress: Any) -> Result:
    """Bisection on T, each probe decided by the closed-form share test (a MILP when undecided)."""
    from splitopt.solving.resource import server_minmax

    return server_minmax(st.A, st.D, st.S, st.allowed, be, deadline=deadline)
