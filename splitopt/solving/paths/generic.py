"""The ``generic`` path: any Problem (outer approximation by cut generation, or a conic backend).

The kernel is :func:`splitopt.solving.generic.solve_generic`; it prices the whole objective
(``structural=False`` in the table). Always last in :data:`splitopt.solving.paths.PATHS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitopt.backends.base import Backend
    from splitopt.backends.results import Result
    from splitopt.model.problem import Problem
    from splitopt.solving.structure import Structure


def accepts(st: Structure) -> bool:
    """Every structure but a product objective (``delay-to-target``: not an expression)."""
    return st.kind != "delay-to-target"


def run(p: Problem, st: Structure, be: Backend, deadline: float | None, gap: float, log: bool,
        warm: Any, progress: Any) -> Result:
    """Compile by the reversible steps, then cut generation until the gap closes."""
    from splitopt.solving.generic import solve_generic

    return solve_generic(p, be, deadline=deadline, gap=gap, log=log, warm=warm,
                         progress=progress)
