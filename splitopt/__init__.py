"""splitopt: compose, solve exactly and execute split-learning planning problems.

Heavy dependencies (torch, cvxpy, pyomo, highspy) are imported lazily, where they are used.
This module is the composition root: it tells ``Problem.solve()``/``Problem.compile()`` what to
call (``model.problem.ACTIONS``), so ``model/`` imports neither ``solving/`` nor ``compile/``
(both read Problems; the arrows run one way) and ``import splitopt`` stays light.
"""

from __future__ import annotations

from typing import Any

from splitopt.costs import CutTable, device_phases, iteration_delay, round_terms
from splitopt.errors import (
    GraphError,
    InfeasibleError,
    InputError,
    ProfileError,
    ScenarioError,
    SolverError,
    SplitoptError,
)
from splitopt.graph import LayerGraph, Node, NodeTime
from splitopt.model import Problem, maximum
from splitopt.model.problem import ACTIONS
from splitopt.plan import DevicePlan, Plan, PlanCosts, evaluate
from splitopt.scenario import Scenario, catalog_device, catalog_server
from splitopt.system import Channel, Device, Link, Server, Training, link_of

__version__ = "0.1.0"

__all__ = [
    "Channel", "CutTable", "Device", "DevicePlan", "GraphError", "InfeasibleError", "InputError",
    "LayerGraph", "Link", "Node", "NodeTime", "Plan", "PlanCosts", "ProfileError", "Scenario",
    "ScenarioError", "Server", "SolverError", "SplitoptError", "Training", "catalog_device",
    "catalog_server", "device_phases", "evaluate", "iteration_delay", "link_of", "partition",
    "partition_scenario", "profile", "round_terms", "Problem", "maximum", "solve", "Planner",
]


def profile(module: Any, example_inputs: Any, **kwargs: Any) -> LayerGraph:
    """Profile a torch module into a LayerGraph (see :func:`splitopt.profiler.profile`)."""
    from splitopt.profiler import profile as _profile

    return _profile(module, example_inputs, **kwargs)


def partition(graph: LayerGraph, device: Device, server: Server, link: Link, **kwargs: Any) -> Plan:
    """Optimal device-side set of one device (see :func:`splitopt.partitioning.partition`)."""
    from splitopt.partitioning import partition as _partition

    return _partition(graph, device, server, link, **kwargs)


def partition_scenario(scenario: Scenario, shares: Any = None, **kwargs: Any) -> Plan:
    """Partition every device of a scenario (:func:`splitopt.partitioning.partition_scenario`)."""
    from splitopt.partitioning import partition_scenario as _partition_scenario

    return _partition_scenario(scenario, shares, **kwargs)


def solve(problem: Problem, **kwargs: Any) -> Any:
    """Solve a builder Problem exactly (see :func:`splitopt.solving.solve`); returns a Result."""
    from splitopt.solving import solve as _solve

    return _solve(problem, **kwargs)


def _compile(problem: Problem, **kwargs: Any) -> Any:
    from splitopt.compile import compile_problem

    return compile_problem(problem, **kwargs)


ACTIONS.update(solve=solve, compile=_compile)  # what Problem.solve() and .compile() call


def __getattr__(name: str) -> Any:
    """``splitopt.Planner`` (issue 14), imported on first use: it pulls in the solvers."""
    if name == "Planner":
        from splitopt.planner import Planner

        return Planner
    raise AttributeError(f"module 'splitopt' has no attribute {name!r}")
