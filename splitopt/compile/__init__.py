"""Compilation of a Problem into a Program by small reversible steps (solving happens elsewhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitopt.compile.program import Program
from splitopt.compile.steps import (
    Chain,
    EpigraphMax,
    Lower,
    Perspective,
    Step,
    ToMatrix,
    generic_chain,
)
from splitopt.compile.tangents import OuterApproximation, Tangents

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


def compile_problem(problem: Problem, *, linear: bool = True) -> Program:
    """The generic Program of a problem; ``linear=True`` applies the outer approximation too."""
    prog, _ = generic_chain(linear).apply(problem)  # linear: OuterApproximation's rows
    return prog


__all__ = ["Chain", "EpigraphMax", "Lower", "OuterApproximation", "Perspective", "Program", "Step",
           "Tangents", "ToMatrix", "compile_problem", "generic_chain"]
