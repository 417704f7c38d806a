"""Built-in problems by name, for ``splitopt solve --problem NAME``.

Extensible with :func:`register`.

A problem builder takes a Scenario and returns a Problem with its objective set. Other modules
(e.g. the formulations) add theirs with ``@register("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from splitopt.errors import InputError
from splitopt.model.problem import Problem
from splitopt.scenario import Scenario

Builder = Callable[[Scenario], Problem]

PROBLEMS: dict[str, Builder] = {}
#: problems ``splitopt solve`` hands to their own solve: name -> fn(scenario, *, backend,
#: time_limit) -> Result (a formulation with ``cli_runs_solve``, or one the builder cannot state)
ROUTES: dict[str, Callable[..., Any]] = {}


def register(name: str, fn: Builder | None = None) -> Any:
    """Register a problem builder under ``name`` (use as ``@register("name")`` or directly)."""
    def deco(f: Builder) -> Builder:
        PROBLEMS[name] = f
        return f
    return deco(fn) if fn is not None else deco


def register_route(name: str, fn: Callable[..., Any]) -> None:
    """Register a problem that is solved by its own exact route (``splitopt solve`` calls it)."""
    ROUTES[name] = fn


def route(name: str) -> Callable[..., Any] | None:
    """The own route registered under ``name``, or None for a builder problem."""
    if name not in PROBLEMS and name not in ROUTES:
        _load_plugins()
    return ROUTES.get(name)


def get(name: str) -> Builder:
    """The builder registered under ``name``."""
    if name not in PROBLEMS:
        _load_plugins()
    if name not in PROBLEMS:
        raise InputError("problem", name, f"one of {sorted(PROBLEMS)} or a path to a .py file "
                         "defining build(scenario)",
                         f"{name!r} is solved by its own route: splitopt solve --problem {name}."
                         if name in ROUTES else None)
    return PROBLEMS[name]


def _load_plugins() -> None:
    """Import the formulations package, whose modules register their problems (if installed)."""
    import importlib

    try:
        importlib.import_module("splitopt.formulations")
    except ImportError:
        pass


def add_memory_limits(p: Problem) -> None:
    """Each device's training memory within its ``memory_bytes`` (where finite)."""
    for d in p.scenario.devices:
        if math.isfinite(d.memory_bytes):
            p.add(p.memory(d.name) <= d.memory_bytes, name=f"memory:{d.name}")


def _within_memory(scenario: Scenario, objective: str, server_share: bool | None = None) -> Problem:
    # server_share=None follows the scenario's server.serving (shares exactly when it is shared),
    # so the plan written is one the executors run on that same scenario
    p = Problem(scenario, server_share=server_share)
    add_memory_limits(p)
    p.minimize(p.round_latency() if objective == "latency" else p.total_energy())
    return p


@register("minmax")
def minmax(scenario: Scenario) -> Problem:
    """Minimise the round latency over cuts and bandwidth (and server shares on a shared server)."""
    return _within_memory(scenario, "latency")


@register("minmax-server")
def minmax_server(scenario: Scenario) -> Problem:
    """Minimise the round latency over cuts, bandwidth and server shares, within device memory."""
    return _within_memory(scenario, "latency", server_share=True)


@register("energy")
def energy(scenario: Scenario) -> Problem:
    """Minimise the fleet's energy per round over cuts and shares, within memory."""
    return _within_memory(scenario, "energy")
