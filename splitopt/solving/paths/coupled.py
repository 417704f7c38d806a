"""The ``coupled`` path: min-max round time with rows that couple devices (bisection + MILP).

The kernel is :func:`splitopt.solving.coupled.coupled_minmax`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitopt.backends.base import Backend
    from splitopt.backends.results import Result
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


def accepts(st: Structure) -> bool:
    """Min-max without server shares (any rows; ``auto`` takes the bisection when none couple)."""
    return st.kind == "minmax" and not st.has_phi


def run(p: Problem, st: Structure, be: Backend, deadline: float | None, gap: float, log: bool,
        warm: Any, progress: Any) -> Result:
    """Bisection on T, each probe a MILP feasibility step over the coupling rows."""
    from splitopt.solving.coupled import coupled_minmax

    return coupled_minmax(p, st, be, deadline=deadline, rtol=min(gap, 1e-9))
