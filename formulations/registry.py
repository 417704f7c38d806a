"""The seven formulations under one contract (:class:`splitopt.formulation.Formulation`).

Each is registered by name, so ``splitopt solve --problem NAME scenario.yaml`` runs every one:

| name | public builder | exact method behind ``solve`` |
|---|---|---|
| ``edgesplit``, ``sfl``, ``sfl-server`` | yes | :func:`splitopt.solving.solve` |
| ``energy-delay`` | yes (:mod:`splitopt.model.dvfs`) | ``solving.solve``; front: ``pareto_front`` |
| ``hsfl`` | yes (:mod:`splitopt.model.delay`) | ``solving.solve``: ``delay-to-target`` path |
| ``smartsplit`` | yes (:mod:`splitopt.model.recompute`) | :func:`splitopt.solving.solve` |
| ``multitier`` | yes (:mod:`splitopt.model.relays`) | :func:`splitopt.solving.solve` |
| ``synergy`` | yes (:mod:`splitopt.model.assign`) | :func:`splitopt.solving.solve` |

Where a paper needs more than the scenario says (tiers, accelerators), ``solve`` reads the
scenario in a documented way (see :func:`tiers_of`, :func:`accelerators_of`) and the module's
own functions take the full inputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from splitopt.errors import InfeasibleError
from splitopt.formulation import (
    Formulation,
    found,
    plan_result,
    register,
    with_extras,
)
from splitopt.scenario import Scenario
from splitopt.system import link_of

# ---------------------------------------------------------------- EdgeSplit, SFL, HSFL (builder)


def _class_formulation(cls: Any, name: str) -> Formulation:
    def solve(scenario: Scenario, *, backend: str | None = None,
              time_limit: float | None = None) -> Any:
        from splitopt.formulations.edgesplit import verification

        t0 = time.perf_counter()
        form = cls()
        plan = form.solve(scenario, time_limit=time_limit, backend=backend)
        return plan_result(plan, path=str(plan.meta.get("path", plan.method)),
                           solve_s=time.perf_counter() - t0,
                           verification=verification(form.scenario_for(scenario), plan,
                                                     memory=form.memory))

    return Formulation(name, cls.paper, solve,
                       lambda sc: {"alternating": plan_result(cls().baseline(sc),
                                                              path="alternating")},
                       problem=lambda sc: cls().problem(sc))


def hsfl_solve(scenario: Scenario, *, backend: str | None = None,
               time_limit: float | None = None) -> Any:
    """HSFL's exact optimum through the builder (``HSFL().solve_builder``).

    The plan's rounds are the surrogate's.
    """
    from splitopt.formulations.hsfl import HSFL

    return HSFL().solve_builder(scenario, time_limit=time_limit, backend=backend)


def _hsfl() -> Formulation:
    from splitopt.formulations.hsfl import HSFL

    return Formulation("hsfl", HSFL.paper, hsfl_solve,
                       lambda sc: {"bcd-rounding": plan_result(HSFL().baseline(sc),
                                                               path="bcd-rounding")},
                       problem=lambda sc: HSFL().problem(sc),
                       # the CLI's answer: the builder's with the plan's rounds set to h(P)
                       cli_runs_solve=True)


# ---------------------------------------------------------------- energy-delay (builder)
#: the epsilon of ``splitopt solve --problem energy-delay``: least energy within this factor of
#: the least round latency
DELAY_SLACK = 1.25


#: DVFS levels of the registered formulation (``splitopt solve --problem energy-delay``): the
#: full clock; pass ``levels=`` to :func:`energy_delay_problem` / :func:`energy_delay_solve`
LEVELS = (1.0,)


def _least(scenario: Scenario, which: str, levels: Sequence[float] = LEVELS) -> float:
    """The least round latency or energy of the scenario's builder Problem (an exact solve)."""
    from splitopt.model import Problem

    p = Problem(scenario, dvfs=levels)
    p.minimize(p.round_latency() if which == "latency" else p.total_energy())
    res = p.solve()
    if res.objective is None:
        raise InfeasibleError(f"energy-delay: no plan ({res.termination}: {res.message})")
    return float(res.objective)


def energy_delay_problem(scenario: Scenario, slack: float = DELAY_SLACK, *,
                         levels: Sequence[float] = LEVELS) -> Any:
    """Least round energy with the round latency <= ``slack`` x its least (the builder's own).

    One epsilon point of :mod:`splitopt.formulations.energy_delay`: options (cut, DVFS level),
    ``Problem(scenario, dvfs=levels)``; the least latency is solved exactly first, on the same
    options. :func:`energy_delay_front` gives the whole front.
    """
    from splitopt.model import Problem

    p = Problem(scenario, dvfs=levels)
    p.add(p.round_latency() <= slack * _least(scenario, "latency", levels), name="epsilon")
    p.minimize(p.total_energy())
    return p


def energy_delay_front(scenario: Scenario, n_points: int = 5, *,
                       levels: Sequence[float] = LEVELS, **solve: Any) -> list[Any]:
    """The exact (energy, delay) front of the builder Problem with DVFS ``levels``.

    :func:`splitopt.solving.pareto.pareto_front`: each point a verified optimum, ``x_value`` the
    energy, ``y_value`` the round latency. The module's own epsilon loop
    (``energy_delay.pareto_front``) is kept as an independent oracle in the tests.
    """
    from splitopt.model import Problem
    from splitopt.solving.pareto import pareto_front

    p = Problem(scenario, dvfs=levels)
    return pareto_front(p, p.total_energy(), p.round_latency(), n_points, **solve)


def energy_delay_solve(scenario: Scenario, *, backend: str | None = None,
                       time_limit: float | None = None, levels: Sequence[float] = LEVELS,
                       n_points: int = 5, slack: float = DELAY_SLACK) -> Any:
    """The least energy within ``slack`` x the least delay, and the front in ``extras["front"]``."""
    from splitopt.solving import solve as solve_problem

    opts: dict[str, Any] = {"backend": backend, "time_limit": time_limit}
    res = solve_problem(energy_delay_problem(scenario, slack, levels=levels), **opts)
    return with_extras(res, front=energy_delay_front(scenario, n_points, levels=levels, **opts),
                       levels=tuple(float(x) for x in levels))


#: weights of the weighted-sum baseline (the paper's kind of scalarisation)
WEIGHTS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _energy_delay_baselines(scenario: Scenario, slack: float = DELAY_SLACK, *,
                            levels: Sequence[float] = LEVELS) -> dict[str, Any]:
    """Weighted sums w T/T0 + (1-w) E/E0 on the same Problem (the paper's scalarisation).

    The least energy of those points that meet the delay; ``infeasible`` when none does (a
    weighted sum may miss the epsilon).
    """
    from splitopt.model import Problem
    from splitopt.solving.pareto import value_at

    t0, e0 = _least(scenario, "latency", levels), _least(scenario, "energy", levels)
    best = None
    for w in WEIGHTS:
        p = Problem(scenario, dvfs=levels)
        lat, energy = p.round_latency(), p.total_energy()
        p.minimize(lat * (w / t0) + energy * ((1 - w) / e0))
        res = p.solve()
        if res.plan is None or value_at(p, lat, res) > slack * t0 * (1 + 1e-9):
            continue
        e = value_at(p, energy, res)
        if best is None or e < best.objective:
            best = found("feasible", e, None, path="weighted-sum", plan=res.plan,
                         verification=res.verification, weight=w,
                         delay_s=value_at(p, lat, res))
    return {"weighted-sum": best if best is not None else
            found("infeasible", None, None, path="weighted-sum")}


# ---------------------------------------------------------------- SmartSplit (builder)
def smartsplit_problem(scenario: Scenario) -> Any:
    """SmartSplit on the public builder (keep/recompute columns, selection, coverage rows).

    ``smartsplit.problem(smartsplit.instance(scenario))``: budgets = device memory, beta = 1/N.
    """
    from splitopt.formulations import smartsplit as ss

    return ss.problem(ss.instance(scenario))


def _smartsplit_solve(scenario: Scenario, *, backend: str | None = None,
                      time_limit: float | None = None) -> Any:
    from splitopt.formulations import smartsplit as ss

    return ss.solve_builder(ss.instance(scenario), time_limit=time_limit, backend=backend)


def _smartsplit_baselines(scenario: Scenario) -> dict[str, Any]:
    from splitopt.formulations import smartsplit as ss

    inst = ss.instance(scenario)
    return {"greedy": ss.greedy(inst), "own-milp": ss.solve(inst),
            "no-recompute": ss.solve_builder(ss.instance(scenario, recompute=False))}


# ---------------------------------------------------------------- multi-tier (own DP / MILP)
def tiers_of(scenario: Scenario) -> tuple[list[Any], list[Any]]:
    """The scenario read as a path: its devices in order (device -> edge ...), then the server.

    Link k joins tier k to tier k+1 at device k's rates with the whole channel.
    """
    from splitopt.formulations.multitier import Tier

    devs = scenario.devices
    tiers = [Tier(d.name, d.flops, d.memory_bytes, d.device_class) for d in devs]
    tiers.append(Tier(scenario.server.name, scenario.server.flops,
                      device_class=scenario.server.device_class))
    return tiers, [link_of(d, scenario.channel, 1.0) for d in devs]


def _multitier_result(s: Any, c: Any) -> Any:
    from splitopt.formulations.multitier import cuts

    return with_extras(s, cuts=cuts(s.tiers, c.n_tiers) if c.graph.is_chain else None)


def _multitier_costs(scenario: Scenario) -> Any:
    from splitopt.formulations import multitier as mt

    tiers, links = tiers_of(scenario)
    return mt.costs(scenario.graph, tiers, links, batch=scenario.training.batch_size)


def multitier_problem(scenario: Scenario) -> Any:
    """Multi-tier on the public builder: the first device, the others as relays, the server."""
    from splitopt.formulations import multitier as mt

    return mt.problem(scenario)


def _multitier_solve(scenario: Scenario, *, backend: str | None = None,
                     time_limit: float | None = None) -> Any:
    from splitopt.formulations import multitier as mt

    return mt.solve_builder(scenario, backend=backend, time_limit=time_limit)


def _multitier_baselines(scenario: Scenario) -> dict[str, Any]:
    """The paper's baselines, and the module's own exact DP / MILP (``own-exact``).

    ``own-exact`` may also place the whole model on the device, which the builder prices as FL
    mode (with aggregation) and so leaves out of its multi-tier Problem.
    """
    from splitopt.formulations import multitier as mt

    c = _multitier_costs(scenario)
    out = {f.__name__.replace("_", "-"): _multitier_result(f(c), c)
           for f in (mt.device_only, mt.two_tier, mt.greedy)}
    out["own-exact"] = _multitier_result(mt.solve(c), c)
    return out


# ---------------------------------------------------------------- Synergy (builder)
def accelerators_of(scenario: Scenario) -> list[Any]:
    """The scenario's devices as accelerators (an equal share of the channel each)."""
    from splitopt.formulations.synergy import Accelerator

    n = scenario.n_devices
    return [Accelerator(d.name, d.flops, d.memory_bytes,
                        link_of(d, scenario.channel, 1.0 / n).up_bps, d.device_class)
            for d in scenario.devices]


def _synergy_instance(scenario: Scenario) -> Any:
    from splitopt.formulations import synergy as sy

    return sy.instance([(scenario.graph.name or "model", scenario.graph)],
                       accelerators_of(scenario))


def synergy_problem(scenario: Scenario) -> Any:
    """Synergy on the public builder (the scenario's graph on its devices as accelerators).

    Its objective is in units of the slowest arc's seconds (see ``synergy.problem``).
    """
    from splitopt.formulations import synergy as sy

    return sy.problem(_synergy_instance(scenario), scenario)[0]


def _synergy_solve(scenario: Scenario, *, backend: str | None = None,
                   time_limit: float | None = None) -> Any:
    from splitopt.formulations import synergy as sy

    return sy.solve_builder(_synergy_instance(scenario), scenario, time_limit=time_limit,
                            backend=backend)


def _synergy_baselines(scenario: Scenario) -> dict[str, Any]:
    from splitopt.formulations import synergy as sy

    inst = _synergy_instance(scenario)
    return {"greedy": sy.greedy(inst), "whole-models": sy.whole_models(inst)}


def register_all() -> None:
    """Register the seven formulations (idempotent)."""
    from splitopt.formulations.edgesplit import EdgeSplit
    from splitopt.formulations.sfl import SFL, SFLSharedServer

    for cls, name in ((EdgeSplit, "edgesplit"), (SFL, "sfl"), (SFLSharedServer, "sfl-server")):
        register(_class_formulation(cls, name))
    register(_hsfl())
    register(Formulation("energy-delay", "arXiv:2209.02428", energy_delay_solve,
                         _energy_delay_baselines, problem=energy_delay_problem))
    register(Formulation("smartsplit", "arXiv:2410.11577", _smartsplit_solve,
                         _smartsplit_baselines, problem=smartsplit_problem))
    # the CLI runs multi-tier's solve: the builder's optimum, or the whole model on the device
    # when that is faster (a placement the builder prices as FL mode)
    register(Formulation("multitier", "arXiv:2111.08206", _multitier_solve,
                         _multitier_baselines, problem=multitier_problem, cli_runs_solve=True))
    # the CLI runs Synergy's solve (the builder's, plus the mapping re-priced in extras) rather
    # than the bare Problem, whose per-device plan says nothing of the mapping
    register(Formulation("synergy", "arXiv:2401.08637", _synergy_solve, _synergy_baselines,
                         problem=synergy_problem, cli_runs_solve=True))
