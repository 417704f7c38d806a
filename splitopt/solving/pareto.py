"""The exact Pareto front of any two expressions of any Problem, by the epsilon-constraint method.

``pareto_front(problem, x, y)`` minimises ``x`` subject to ``y <= eps`` for a sweep of epsilons
between the two ends of the front, each an exact solve of the public builder (so every point is a
verified optimum with its bound):

* end A: the least ``y``, then the least ``x`` among the plans that reach it (lexicographic);
* end B: the least ``x``, then the least ``y`` among the plans that reach it;
* between: ``eps`` evenly spaced from ``y(A)`` to ``y(B)``; ``min x s.t. y <= eps``.

Every epsilon point is Pareto-optimal up to ties in ``y`` (weakly: a plan with the same ``x`` and a
smaller ``y`` may exist; :func:`nondominated` removes the dominated ones). Unlike a weighted sum,
this reaches the unsupported points of a non-convex (discrete) front. The Problem is left as it
was given (its objective and constraints are restored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.errors import InputError, no_plan

if TYPE_CHECKING:
    from splitopt.backends.results import Result
    from splitopt.model.expr import Expr
    from splitopt.model.problem import Problem

#: relative slack of the lexicographic second solve (x <= x* (1 + TIE)): the first solve's own
#: optimality gap, so the second stays feasible
TIE = 1e-7


def value_at(problem: Problem, expr: Expr, result: Result) -> float:
    """The exact value of ``expr`` at a result's plan (its options, shares and extra variables)."""
    from splitopt.backends.export import problem_point
    from splitopt.solving.generic import model_point

    xm, shares, _ = model_point(problem, problem_point(problem, result))
    return float(expr.value(xm, shares, problem.n_options))


def _min(problem: Problem, obj: Expr, rows: Sequence[Any], **solve: Any) -> Result:
    saved, objective, sense = list(problem.constraints), problem.objective, problem.sense
    try:
        problem.add(list(rows), name="pareto") if rows else None
        problem.minimize(obj)
        res = problem.solve(**solve)
    finally:
        problem.constraints[:] = saved
        problem.objective, problem.sense = objective, sense
    if res.plan is None:
        raise no_plan("the Pareto front's solve found no plan", res.termination,
                      "the Pareto front")
    return res


def _objective(res: Result) -> float:
    assert res.objective is not None  # _min returns only results that carry a plan
    return float(res.objective)


def _point(problem: Problem, x: Expr, y: Expr, res: Result, eps: float | None) -> Result:
    return replace(res, extras={**res.extras, "x_value": value_at(problem, x, res),
                                "y_value": value_at(problem, y, res), "epsilon": eps})


def pareto_front(problem: Problem, x: Expr, y: Expr, n_points: int = 8, **solve: Any
                 ) -> list[Result]:
    """Exact points of the (x, y) Pareto front, both minimised, from least y to least x.

    Each point is the Result of ``min x s.t. y <= eps`` (``extras``: ``x_value``, ``y_value``,
    ``epsilon``); ``solve`` goes to every :func:`splitopt.solving.solve` call (backend, time_limit,
    ...).
    """
    if not (isinstance(n_points, int) and n_points >= 2):
        raise InputError("n_points", n_points, "an integer >= 2")
    y_min = _objective(_min(problem, y, [], **solve))
    a = _min(problem, x, [y <= y_min + TIE * max(abs(y_min), 1e-12)], **solve)
    x_min = _objective(_min(problem, x, [], **solve))
    b = _min(problem, y, [x <= x_min + TIE * max(abs(x_min), 1e-12)], **solve)
    ends = [_point(problem, x, y, a, y_min), _point(problem, x, y, b, None)]
    ya, yb = ends[0].extras["y_value"], ends[1].extras["y_value"]
    mids = [_point(problem, x, y, _min(problem, x, [y <= float(eps)], **solve), float(eps))
            for eps in np.linspace(ya, yb, n_points)[1:-1] if ya < eps < yb]
    return nondominated([ends[0], *mids, ends[1]])


def nondominated(points: Sequence[Result], rel: float = 1e-9) -> list[Result]:
    """The points no other point beats in both x and y (ties kept once), by increasing y."""
    pts = sorted(points, key=lambda r: (r.extras["y_value"], r.extras["x_value"]))
    out: list[Result] = []
    for p in pts:
        px = p.extras["x_value"]
        if not out or px < out[-1].extras["x_value"] * (1 - rel) - 1e-300:
            out.append(p)
    return out
