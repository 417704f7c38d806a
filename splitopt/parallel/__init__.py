"""Exact MILPs built column by column, and solving one MILP split across workers.

- :mod:`splitopt.parallel.milp`: a small sparse builder producing the builder's Program, solved by
  its HiGHS backend (used by the formulations whose variables the declarative Problem lacks);
- :mod:`splitopt.parallel.split`: partition a program's search space into sub-problems, solve them
  on local processes, Dask or Ray, and combine the best solution with the least bound.
"""

from __future__ import annotations

from splitopt.parallel.milp import MilpBuilder, MilpResult, solve_program
from splitopt.parallel.split import (
    ENGINES,
    SplitResult,
    Subproblem,
    auto_split,
    combine,
    solve_split,
    split_by_binaries,
    split_by_choice,
)

__all__ = ["ENGINES", "MilpBuilder", "MilpResult", "SplitResult", "Subproblem", "auto_split",
           "combine", "solve_program", "solve_split", "split_by_binaries", "split_by_choice"]
