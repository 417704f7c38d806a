"""Issue 16 steps 4-5: seven formulations under one contract, one Result, exact Pareto fronts."""

import json

import numpy as np
import pytest
import yaml
from splitopt.formulations import energy_delay as ed
from splitopt.formulations.registry import energy_delay_problem
from typer.testing import CliRunner

from splitopt import InputError, formulation
from splitopt.backends import Result
from splitopt.cli import app
from splitopt.model import Problem
from splitopt.solving.pareto import pareto_front, value_at
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario

SEVEN = {"edgesplit", "sfl", "sfl-server", "hsfl", "energy-delay", "smartsplit", "multitier",
         "synergy"}


def _scenario(seed: int, n_dev: int = 3, n_layers: int = 5):
    rng = np.random.default_rng(seed)
    return random_scenario(rng, random_dag(rng, n_layers, chain=True), n_dev,
                           training=Training(batch_size=4), serving="dedicated")


def test_every_paper_is_registered_under_one_contract():
    assert SEVEN <= set(formulation.names())
    for name in SEVEN:
        f = formulation.get(name)
        assert isinstance(f, formulation.Formulation) and f.paper.startswith("arXiv:")
        assert f.problem is not None and not f.builder_lacks  # every paper on the builder
    for name in ("smartsplit", "multitier"):  # the builder states them (issue 16 step 5)
        assert isinstance(formulation.get(name).build(_scenario(0)), Problem)
    with pytest.raises(InputError, match="formulation"):
        formulation.get("no-such-paper")


@pytest.mark.parametrize("name", sorted(SEVEN))
def test_each_formulation_solves_and_beats_or_ties_its_baselines(name):
    sc = _scenario(5)
    f = formulation.get(name)
    res = f.solve(sc, time_limit=60)
    assert isinstance(res, Result) and res.termination == "optimal"
    assert res.verification is not None and res.verification.passed
    assert res.bound is not None and res.bound <= res.objective * (1 + 1e-6)
    for base in f.baselines(sc).values():
        assert isinstance(base, Result)
        if base.objective is not None:  # a baseline is never better than the proven optimum
            assert base.objective >= res.objective * (1 - 1e-6)


@pytest.mark.parametrize("name", ["smartsplit", "multitier", "synergy", "energy-delay"])
def test_cli_solves_the_four_extension_papers(tmp_path, name):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(_scenario(5).to_dict()))
    out = CliRunner().invoke(app, ["solve", str(path), "--problem", name, "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["termination"] == "optimal" and doc["verification"]["passed"]
    assert doc["objective"] == pytest.approx(formulation.get(name).solve(_scenario(5)).objective,
                                             rel=1e-6)


@pytest.mark.parametrize("name", ["smartsplit", "multitier", "synergy", "energy-delay"])
def test_cli_solves_them_on_the_default_scenario(name):
    """The packaged scenario (a shared server): energy-delay's epsilon is the builder's own."""
    from splitopt.scenario import default_scenario_path

    out = CliRunner().invoke(app, ["solve", str(default_scenario_path()), "--problem", name,
                                   "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["termination"] == "optimal" and doc["verification"]["passed"]


@pytest.mark.parametrize("seed", range(3))
def test_pareto_front_of_the_builder_matches_energy_delay_exact_points(seed):
    sc = _scenario(seed)
    p = Problem(sc)
    energy, delay = p.total_energy(), p.round_latency()
    n_rows = len(p.constraints)
    front = pareto_front(p, energy, delay, n_points=4)
    assert len(p.constraints) == n_rows and p.objective is None  # the Problem is as given
    q = ed.instance(sc)
    ys = [r.extras["y_value"] for r in front]
    xs = [r.extras["x_value"] for r in front]
    assert ys == sorted(ys) and xs == sorted(xs, reverse=True)  # a front: y up, x down
    assert ys[0] == pytest.approx(ed.min_delay(q), rel=1e-6)
    for r in front:
        assert r.termination == "optimal" and r.verification.passed
        minimised = "x_value" if r.extras["epsilon"] is not None else "y_value"  # end B
        assert r.extras[minimised] == pytest.approx(r.objective, rel=1e-9)
        assert r.extras["y_value"] == pytest.approx(value_at(p, delay, r), rel=1e-12)
        exact = ed.min_energy(q, r.extras["y_value"] * (1 + 1e-9))
        assert r.extras["x_value"] == pytest.approx(exact.energy_j, rel=1e-6)


def test_energy_delay_builder_point_is_the_modules_exact_point():
    sc = _scenario(11)
    q = ed.instance(sc)
    res = energy_delay_problem(sc).solve()
    exact = ed.min_energy(q, 1.25 * ed.min_delay(q))
    assert res.objective == pytest.approx(exact.energy_j, rel=1e-6)


def test_pareto_front_rejects_bad_input():
    p = Problem(_scenario(1))
    with pytest.raises(InputError, match="n_points"):
        pareto_front(p, p.total_energy(), p.round_latency(), n_points=1)
