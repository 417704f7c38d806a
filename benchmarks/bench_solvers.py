"""Solver comparison: the same split + bandwidth MILPs on every solver route (milp_routes.py)."""

from __future__ import annotations

from functools import partial

from splitopt.benchmarks.milp_routes import ROUTES, solve_in_process
from splitopt.benchmarks.registry import BenchSpec, Case, register

SIZES_FULL = (10, 100, 1000)
SIZES_QUICK = (10, 100)


def _cases(quick: bool) -> list[Case]:
    sizes = SIZES_QUICK if quick else SIZES_FULL
    limit = 20.0 if quick else 120.0
    return [Case(f"grid-milp-{n}dev", route, partial(solve_in_process, route, n, 0, limit), n)
            for n in sizes for route in ROUTES]


SPEC = register(BenchSpec(
    name="solvers",
    description="one split + bandwidth MILP (devices x 10 cuts x 5 bandwidth levels) on every "
                "solver route, each in its own process; every answer re-priced under the "
                "reference cost model",
    cases=_cases, baseline="highspy"))
