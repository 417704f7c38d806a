"""Solving a Program's linear part with HiGHS, the one call the column-built models use.

The models themselves are built with :class:`splitopt.compile.columns.MilpBuilder` (``compile/``
makes Programs; this module only solves them, through the builder's one HiGHS driver).

Example:
-------
>>> from splitopt.compile.columns import MilpBuilder
>>> m = MilpBuilder()
>>> x = m.add_vars(3, ub=1, integer=True, name="x")
>>> _ = m.add_row({int(x[0]): 1.0, int(x[1]): 1.0}, ub=1)
>>> m.minimize({int(x[0]): -1.0, int(x[2]): -2.0})
>>> solve_program(m.program()).objective
-3.0

"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from splitopt.backends.results import Result
from splitopt.compile.columns import MilpBuilder
from splitopt.compile.program import Program
from splitopt.errors import InputError


def solve_program(prog: Program, *, time_limit: float | None = None, mip_gap: float = 1e-9,
                  build_s: float = 0.0, threads: int = 1,
                  start: np.ndarray | None = None) -> Result:
    """Solve a Program's linear part with HiGHS (``threads`` HiGHS threads; one in workers).

    The one HiGHS driver of the project (:class:`splitopt.backends.highs.HighsBackend`: the whole
    CSR matrix at once, a wall-clock limit, the checks and re-solves that keep HiGHS's presolve
    from returning a wrong "optimal"). A time-limited solve returns its best point ``x`` and its
    proven bound (termination ``time_limit``); ``start`` is a MIP start (a full point, ignored by
    HiGHS when infeasible). Minimisation throughout: ``bound <= optimum <= objective``.
    """
    if time_limit is not None and not time_limit > 0:
        raise InputError("time_limit", time_limit, "a number of seconds > 0, or None")
    from splitopt.backends.highs import HighsBackend

    res = HighsBackend(threads=threads, full_start=True).solve_program(
        prog, time_limit=time_limit, warm_start=start, mip_gap=mip_gap)
    bound = res.bound
    if res.termination == "optimal" and res.objective is not None:
        # HiGHS's dual bound may sit a hair above the optimum; keep bound <= objective
        bound = res.objective if bound is None else min(bound, res.objective)
    return replace(res, bound=bound, build_s=build_s, backend="highs")


__all__ = ["MilpBuilder", "solve_program"]
