"""The front door of the solving area (issues 11 §4 and 12): public names callable twice, no
solver banner on stdout, errors that name what they mean, API misuse refused with the project's
own error, time limits honoured."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

import splitopt
from splitopt import InfeasibleError, InputError, Problem
from splitopt.model.expr import total
from splitopt.testing import random_dag, random_scenario

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_solving_guard import issue11_scenario  # noqa: E402


def _calls(sc):
    """One valid call per public name of splitopt (classes are constructed)."""
    import torch

    g, dev, srv, ch = sc.graph, sc.devices[0], sc.server, sc.channel
    link = splitopt.link_of(dev, ch, 0.5)
    dp = splitopt.DevicePlan(dev.name, {"x"}, 0.5)
    plan = splitopt.Plan((dp, splitopt.DevicePlan("d1", {"x"}, 0.5)))
    tr = splitopt.Training()
    node = splitopt.Node("a", 1e9, None, 4.0, 0.0, "op")

    def problem():
        p = splitopt.Problem(sc)
        p.minimize(p.round_latency())
        return p

    return {
        "Channel": lambda: splitopt.Channel(bandwidth_up_hz=1e6, bandwidth_dn_hz=1e6),
        "CutTable": lambda: splitopt.CutTable.chain(g),
        "Device": lambda: splitopt.Device(name="e", flops=1e9, spectral_eff_up=1,
                                          spectral_eff_dn=1),
        "DevicePlan": lambda: splitopt.DevicePlan("d0", {"x"}, 1.0),
        "GraphError": lambda: splitopt.GraphError("f", 1, "2"),
        "InfeasibleError": lambda: splitopt.InfeasibleError("none"),
        "InputError": lambda: splitopt.InputError("f", 1, "2"),
        "LayerGraph": lambda: splitopt.LayerGraph(list(g.nodes), list(g.edges), g.inputs,
                                                  g.output),
        "Link": lambda: splitopt.Link(1e6, 1e6),
        "Node": lambda: splitopt.Node("a", 1e9, None, 4.0, 0.0, "op"),
        "NodeTime": lambda: splitopt.NodeTime(1e-3, 2e-3),
        "Plan": lambda: splitopt.Plan((dp,)),
        "PlanCosts": lambda: splitopt.PlanCosts({}, 0.0, 1.0, 0.0),
        "ProfileError": lambda: splitopt.ProfileError("x"),
        "Scenario": lambda: splitopt.Scenario(g, list(sc.devices), srv, ch, sc.training),
        "ScenarioError": lambda: splitopt.ScenarioError("f", 1, "2"),
        "Server": lambda: splitopt.Server(flops=1e12),
        "SolverError": lambda: splitopt.SolverError("x"),
        "SplitoptError": lambda: splitopt.SplitoptError("x"),
        "Training": lambda: splitopt.Training(),
        "catalog_device": lambda: splitopt.catalog_device("jetson-nano", snr_db=20.0),
        "catalog_server": lambda: splitopt.catalog_server("edge-a2"),
        "device_phases": lambda: splitopt.device_phases(g, {"x"}, dev, srv, link, tr),
        "evaluate": lambda: splitopt.evaluate(sc, plan),
        "iteration_delay": lambda: splitopt.iteration_delay(g, {"x"}, dev, srv, link),
        "link_of": lambda: splitopt.link_of(dev, ch, 0.5),
        "partition": lambda: splitopt.partition(g, dev, srv, link),
        "partition_scenario": lambda: splitopt.partition_scenario(sc),
        "profile": lambda: splitopt.profile(torch.nn.Linear(3, 2), (torch.zeros(1, 3),)),
        "round_terms": lambda: splitopt.round_terms(sc.devices, srv, ch, tr,
                                                    splitopt.CutTable.chain(g)),
        "Problem": lambda: splitopt.Problem(sc),
        "maximum": lambda: splitopt.maximum([node and 1.0, 2.0]),
        "solve": lambda: splitopt.solve(problem()),
        "Planner": lambda: splitopt.Planner(problem()).solve(),
    }


def test_every_public_name_works_twice():
    """`splitopt.solve` once worked a single time (the submodule shadowed the function)."""
    pytest.importorskip("torch")
    calls = _calls(issue11_scenario())
    assert set(calls) == set(splitopt.__all__), set(splitopt.__all__) ^ set(calls)
    for name in splitopt.__all__:
        first, second = calls[name](), calls[name]()
        assert type(first) is type(second), name
    assert callable(splitopt.solve) and not isinstance(splitopt.solve, type(sys))


BANNER = "Running HiGHS"
SCRIPT = """
import math, numpy as np
from splitopt.formulations import energy_delay as ed
from splitopt.testing import random_dag, random_scenario
from splitopt import Problem
rng = np.random.default_rng(0)
sc = random_scenario(rng, random_dag(rng, 4, chain=True), 3)
{body}
"""


@pytest.mark.parametrize("body", [
    "print(ed.min_energy(ed.instance(sc), math.inf).energy_j)",
    "p = Problem(sc, server_share=False); p.minimize(p.total_energy()); print(p.solve().objective)",
    "p = Problem(sc, server_share=False); p.minimize(p.round_latency()); "
    "print(p.solve(path='generic', backend='cvxpy').objective)",
], ids=["energy-delay", "builder", "cvxpy"])
def test_highs_banner_never_reaches_stdout(body):
    if "cvxpy" in body:
        pytest.importorskip("cvxpy")
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(body=body)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert BANNER not in out and float(out.strip().splitlines()[-1]) > 0


def test_solve_json_has_no_banner_and_carries_the_verification():
    from pathlib import Path

    from splitopt.scenario import default_scenario_path

    exe = Path(sys.executable).with_name("splitopt")
    run = subprocess.run([str(exe), "solve", str(default_scenario_path()), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout)  # nothing else on stdout
    assert doc["verification"]["passed"] is True and doc["termination"] == "optimal"


# ------------------------------------------------------------------ error texts
def _infeasible(build) -> str:
    p = Problem(issue11_scenario(), batch=[8, 16])
    build(p)
    p.minimize(p.round_latency())
    with pytest.raises(InfeasibleError) as err:
        p.solve()
    return str(err.value)


def test_a_device_row_is_named_and_has_its_unit():
    msg = _infeasible(lambda p: p.add(p.round_time(0) <= 1e-3, name="deadline:d0"))
    assert "device d0 (deadline:d0): no option meets round time <= 0.001 s" in msg
    assert "  " not in msg
    msg = _infeasible(lambda p: p.add(p.round_time(0) <= 1e-3))
    assert "(an unnamed constraint)" in msg and "round time" in msg and "  " not in msg


def test_a_ge_row_reads_as_written():
    msg = _infeasible(lambda p: p.add(total(p.batch[k] for k in range(2)) >= 1000,
                                      name="samples"))
    assert ("constraint 'samples': the largest possible value over all devices' options is 32, "
            "below the limit 1000") in msg
    msg = _infeasible(lambda p: p.add(p.batch[0] >= 64, name="big"))
    assert "no cut reaches batch size >= 64 samples; the largest is 16 samples" in msg


def test_a_share_bound_conflict_says_so():
    msg = _infeasible(lambda p: [p.bandwidth.bound(k, 0.6, 1.0) for k in range(2)])
    assert "the least bandwidth shares set by bound/fix sum to 1.2 > 1" in msg
    assert "[]" not in msg


# ------------------------------------------------------------------ API misuse
@pytest.mark.parametrize("kwargs", [dict(batch=1.5), dict(batch=math.nan), dict(batch=10**30),
                                    dict(batch=True), dict(batch=[True, 2]), dict(batch="8"),
                                    dict(cuts="x"), dict(cuts=5), dict(modes="yes"),
                                    dict(server_share=1)],
                         ids=lambda k: repr(k))
def test_problem_misuse_gets_an_input_error(kwargs):
    with pytest.raises(InputError) as err:
        Problem(issue11_scenario(), **kwargs)
    assert err.value.field == next(iter(kwargs))


@pytest.mark.parametrize("call", ["add(None)", "add([None])", "add(3)",
                                  "solve(time_limit='10')", "solve(time_limit=True)",
                                  "solve(time_limit=math.nan)", "solve(gap='x')",
                                  "solve(gap=-1)", "solve(path=None)", "solve(log='yes')"])
def test_call_misuse_gets_an_input_error(call):
    p = Problem(issue11_scenario())
    p.minimize(p.round_latency())
    with pytest.raises(InputError):
        eval(f"p.{call}", {"p": p, "math": math})


def test_solve_of_no_problem_is_an_input_error():
    with pytest.raises(InputError, match="a splitopt Problem"):
        splitopt.solve(None)


# ------------------------------------------------------------------ time limits
def test_the_generic_path_honours_its_time_limit():
    """Within 10% (it was 13-21% over): HiGHS is stopped early enough to answer its cancel, and
    decoding, pricing and the guard fit in the limit."""
    rng = np.random.default_rng(0)
    sc = random_scenario(rng, random_dag(rng, 49, chain=True), 100)
    p = Problem(sc, server_share=True)
    p.minimize(p.round_latency())
    p.solve(path="generic", time_limit=0.3)  # imports and caches out of the measurement
    t0 = time.perf_counter()
    r = p.solve(path="generic", time_limit=2.0)
    wall = time.perf_counter() - t0
    assert r.termination == "time_limit" and r.plan is not None
    assert wall <= 2.0 * 1.1, wall
