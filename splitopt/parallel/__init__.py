"""Exact MILPs built column by column, and solving one MILP split across workers.

- :mod:`splitopt.parallel.milp`: :func:`solve_program`, a Program solved by the builder's HiGHS
  backend (the column builder, :class:`~splitopt.compile.columns.MilpBuilder`, makes the
  programs of the formulations whose variables the declarative Problem lacks);
- :mod:`splitopt.parallel.split`: partition a program's search space into sub-problems, solve them
  on local processes, Dask or Ray, and combine the best solution with the least bound.
"""

from __future__ import annotations

from splitopt.parallel.milp import MilpBuilder, solve_program
from splitopt.parallel.split import (
    ENGINES,
    Subproblem,
    auto_split,
    combine,
    solve_split,
    split_by_binaries,
    split_by_choice,
)

__all__ = ["ENGINES", "MilpBuilder", "Subproblem", "auto_split", "combine", "solve_program",
           "solve_split", "split_by_binaries", "split_by_choice"]
