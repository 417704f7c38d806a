"""``splitopt solve``: build a problem over a scenario, solve it exactly, print or save the plan."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import typer

from splitopt import limits
from splitopt.cli._common import check_out_path, emit_json, table
from splitopt.errors import InputError
from splitopt.io import atomic_write
from splitopt.scenario import Scenario


def load_problem(spec: str, scenario: Scenario) -> Any:
    """A Problem from a registered name or from a .py file defining ``build(scenario)``."""
    from splitopt.model.problem import Problem
    from splitopt.model.problems import get

    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise InputError("--problem", spec, "an existing .py file or a registered name")
        mod_spec = importlib.util.spec_from_file_location(f"_splitopt_user_{path.stem}", path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        build = getattr(module, "build", None)
        if not callable(build):
            raise InputError("--problem", spec, "a file defining build(scenario) -> Problem")
        problem = build(scenario)
    else:
        problem = get(spec)(scenario)
    if not isinstance(problem, Problem):
        raise InputError("--problem", spec, "a builder returning a splitopt Problem",
                         f"It returned {type(problem).__name__}.")
    return problem


def solve_cmd(scenario: Path = typer.Argument(..., help="scenario YAML/JSON"),
              problem: str = typer.Option("minmax", "--problem", "-p",
                                          help="a registered problem name or a problem.py file"),
              backend: str = typer.Option(None, "--backend", "-b", help="highs, cvxpy or pyomo"),
              time_limit: float = typer.Option(None, "--time-limit", help="seconds (wall clock)"),
              path: str = typer.Option("auto", "--path", help="auto or a named exact path"),
              json_out: bool = typer.Option(False, "--json", help="print JSON"),
              out: Path = typer.Option(None, "--out", "-o", help="write the plan JSON here"),
              force: bool = typer.Option(False, "--force", help="overwrite --out")) -> None:
    """Solve a planning problem exactly and print (or save) the plan with its bound and gap."""
    check_out_path(out, force)
    if time_limit is not None:  # typer reads "nan", "inf" and "-1" as floats
        limits.check("--time-limit", time_limit, limits.TIME_LIMIT)
    sc = Scenario.load(scenario)
    from splitopt.model.problems import route
    from splitopt.solving import solve

    own = route(problem)  # a formulation the builder cannot state (e.g. hsfl) runs its own
    res = (own(sc, backend=backend, time_limit=time_limit) if own is not None
           else solve(load_problem(problem, sc), backend=backend, time_limit=time_limit,
                      path=path, progress=not json_out))
    doc = res.to_dict()
    doc["plan"] = res.plan.to_dict(sc) if res.plan is not None else None
    if out is not None and res.plan is not None:
        atomic_write(out, json.dumps(doc["plan"], indent=1))
    if json_out:
        emit_json(doc)
        return
    _show(res, out, sc)


def _show(res: Any, out: Path | None, sc: Scenario) -> None:
    plan = res.plan
    if plan is not None and plan.predicted is not None:
        rows = []
        for d in plan.devices:
            ph = plan.predicted.per_device.get(d.device)
            cut = "whole model" if d.mode == "fl" else ",".join(sc.graph.boundary(d.device_side))
            rows.append((d.device, d.mode if d.selected else "off", cut,
                         d.bandwidth_share, d.server_share, d.batch_size or "",
                         ph.round_s if ph else "", ph.memory_bytes / 1e6 if ph else ""))
        table("plan", ["device", "mode", "cut after", "beta", "phi", "batch", "round_s",
                       "mem_MB"], rows)
    gap = "n/a" if res.gap is None else f"{res.gap:.2e}"
    print(f"{res.termination} via {res.path} ({res.backend}): objective {res.objective:.6g}, "
          f"bound {res.bound:.6g}, gap {gap}; build {res.build_s:.3f} s, solve {res.solve_s:.3f} s"
          if res.objective is not None else f"{res.termination}: no plan found")
    check = getattr(res, "verification", None)  # the verified-answer guard (issue 11)
    if check is not None:
        print(check.summary())
    if out is not None and plan is not None:
        print(f"plan written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``solve`` to the app."""
    app.command("solve")(solve_cmd)
