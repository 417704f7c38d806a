"""One contract for every published formulation: build, solve, baselines, registered by name.

A :class:`Formulation` is what ``splitopt solve --problem NAME`` runs and what a researcher
compares against:

* ``problem(scenario) -> Problem``: the paper as a public-builder :class:`~splitopt.model.Problem`
  (objective set). All seven shipped papers are stated this way; a formulation a user registers
  may leave it ``None``, saying in ``builder_lacks`` what the builder cannot state;
* ``solve(scenario, *, backend=None, time_limit=None) -> Result``: the exact optimum as the one
  :class:`~splitopt.backends.results.Result` (termination, objective, bound, plan, timings,
  verification; the paper's own findings in ``extras``);
* ``baselines(scenario) -> {name: Result}``: the paper's baselines, priced the same way.

:func:`register` files a formulation under its name and makes it solvable from the CLI: a
formulation with a ``problem`` goes through :func:`splitopt.solving.solve` (every exact path,
``--path``, the guard), one without runs its own exact route. The seven shipped ones are
registered when :mod:`splitopt.formulations` is imported (:func:`get` does that on demand).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from splitopt.backends.results import Result
from splitopt.errors import InputError

if TYPE_CHECKING:
    from splitopt.model.problem import Problem
    from splitopt.plan import Plan
    from splitopt.scenario import Scenario

Solver = Callable[..., Result]  # (scenario, *, backend=None, time_limit=None) -> Result


@dataclass(frozen=True)
class Formulation:
    """A published formulation under one contract (see the module docstring)."""

    name: str
    paper: str
    solve: Solver
    baselines: Callable[[Scenario], Mapping[str, Result]]
    problem: Callable[[Scenario], Problem] | None = None
    builder_lacks: str = ""
    #: ``splitopt solve --problem NAME`` runs ``solve`` rather than the bare Problem, where the
    #: paper's solve adds what the Problem's plan does not say (HSFL's rounds, Synergy's mapping)
    cli_runs_solve: bool = False

    def build(self, scenario: Scenario) -> Problem:
        """The builder Problem of this formulation, or a clear error saying what is missing."""
        if self.problem is None:
            raise InputError("formulation", self.name, "a formulation the builder can state",
                             f"The public builder cannot state {self.name} yet "
                             f"({self.builder_lacks}); use solve(scenario), its exact route.")
        return self.problem(scenario)


#: every registered formulation, by name
REGISTRY: dict[str, Formulation] = {}


def register(form: Formulation) -> Formulation:
    """File ``form`` under its name, for :func:`get` and ``splitopt solve --problem NAME``."""
    from splitopt.model import problems

    if not isinstance(form, Formulation):
        raise InputError("formulation", type(form).__name__, "a splitopt.formulation.Formulation")
    REGISTRY[form.name] = form
    if form.problem is not None:
        problems.register(form.name, form.problem)
    if form.problem is None or form.cli_runs_solve:
        problems.register_route(form.name, form.solve)
    return form


def _load() -> None:
    import importlib

    try:
        importlib.import_module("splitopt.formulations")
    except ImportError:  # the formulations are not installed beside splitopt
        pass


def get(name: str) -> Formulation:
    """The formulation registered under ``name``."""
    if name not in REGISTRY:
        _load()
    if name not in REGISTRY:
        raise InputError("formulation", name, f"one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def names() -> list[str]:
    """The registered formulations' names, sorted."""
    _load()
    return sorted(REGISTRY)


def plan_result(plan: Plan, *, path: str, backend: str = "highs", build_s: float = 0.0,
                solve_s: float = 0.0, verification: Any = None,
                extras: Mapping[str, Any] | None = None) -> Result:
    """A plan found by a formulation's own method, as the one Result (its status and bound)."""
    return Result(plan.status, path=path, backend=backend, objective=plan.objective,
                  bound=plan.bound, plan=plan, build_s=build_s, solve_s=solve_s,
                  verification=verification, extras=dict(extras or {}))


def found(status: str, objective: float | None, bound: float | None, *, path: str,
          plan: Plan | None = None, build_s: float = 0.0, solve_s: float = 0.0,
          verification: Any = None, backend: str = "highs", **extras: Any) -> Result:
    """The one Result of a formulation's own exact method (what only it finds in ``extras``)."""
    return Result(status, path=path, backend=backend, objective=objective, bound=bound,
                  plan=plan, build_s=build_s, solve_s=solve_s, verification=verification,
                  extras=extras)


def with_extras(res: Result, **extras: Any) -> Result:
    """A copy of ``res`` with more extras."""
    return replace(res, extras={**res.extras, **extras})
