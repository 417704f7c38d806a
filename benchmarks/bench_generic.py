"""Generic family (issue 15 rows 5-6): the generic MILP build against a raw highspy ``passModel``
of the same matrix, and the generic exact path on a formulation no structured path takes (min
total energy s.t. a round deadline, FL/SL modes), both from benchmarks/builder.py.

``build`` rows: Problem + compile + HiGHS load over raw ``passModel``, CPU time of interleaved
repeats (ratio median and range). ``generic-path`` rows: the generic path's wall clock, status and
proven gap; ``outer-approximation`` rows: the same Problem by the outer-approximation route (the
share-budget dual off), the same-run baseline.

Run: ``splitopt bench generic [--quick]``, or one row through
``python -m splitopt.benchmarks.builder --build-vs-passmodel`` / ``--generic-energy --baseline``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

BUILD = {True: (100, 1000), False: (100, 1000, 10_000)}
ENERGY = {True: (10, 100), False: (10, 100, 1000)}


def build_row(n: int) -> dict[str, Any]:
    """Our build + load over raw passModel at n devices x 50 options."""
    from splitopt.benchmarks.builder import build_vs_pass_model

    r = build_vs_pass_model([n])[0]
    return {"status": "built", "build_s": r["ours_s"], "anchor_s": r["pass_model_s"], **r}


def energy_row(n: int, method: str, time_limit: float) -> dict[str, Any]:
    """The generic path (or its outer-approximation baseline) on the min-energy instance."""
    from splitopt.benchmarks.builder import energy_problem, generic_energy, outer_approximation_row

    if method == "generic-path":
        r = generic_energy([n], time_limit, progress=False)[0]
    else:
        r = outer_approximation_row(energy_problem(n), n, time_limit, False)
    return {"objective": r["objective"], "bound": r["bound"], "gap": r["gap"],
            "status": r["status"], "solve_s": r["wall_s"], "devices": n, "path": r["path"]}


def _cases(quick: bool) -> list[Case]:
    limit = 10.0 if quick else 60.0
    out = [Case(f"build-N{n}xC50", "build+load", partial(build_row, n), n) for n in BUILD[quick]]
    out += [Case(f"energy-N{n}xC50", m, partial(energy_row, n, m, limit), n)
            for n in ENERGY[quick] for m in ("generic-path", "outer-approximation")]
    return out


SPEC = register(BenchSpec(
    name="generic",
    description="the generic MILP build + load against raw highspy passModel, and the generic "
                "exact path (share-budget dual) against its outer-approximation route on min "
                "energy s.t. a round deadline with modes",
    cases=_cases, baseline="outer-approximation",
    extra={"columns": ["devices", "anchor_s", "ratio_median", "ratio_min", "ratio_max",
                       "path"]}))
