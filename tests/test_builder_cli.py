"""``splitopt solve`` end to end: names, user problem files, JSON, --out and --force."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from splitopt.cli import app
from splitopt.testing import random_dag, random_scenario


@pytest.fixture
def scenario_file(tmp_path):
    rng = np.random.default_rng(5)
    sc = random_scenario(rng, random_dag(rng, 6, chain=True), 4)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(sc.to_dict()))
    return path


def test_solve_named_problem_json(scenario_file):
    res = CliRunner().invoke(app, ["solve", str(scenario_file), "--problem", "minmax", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    # the default problem follows the scenario's server: shared (the default) plans server shares
    assert doc["termination"] == "optimal" and doc["path"] == "server-share"
    assert doc["plan"]["predicted"]["round_latency_s"] == pytest.approx(doc["objective"], rel=1e-9)
    assert len(doc["plan"]["devices"]) == 4
    assert sum(d["server_share"] for d in doc["plan"]["devices"]) <= 1 + 1e-9


def test_solve_named_problem_on_a_dedicated_server(scenario_file):
    doc = yaml.safe_load(scenario_file.read_text())
    doc["server"]["serving"] = "dedicated"
    scenario_file.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["solve", str(scenario_file), "--problem", "minmax", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["path"] == "bisection"


def test_solve_user_problem_file_and_out(scenario_file, tmp_path):
    user = tmp_path / "problem.py"
    user.write_text("from splitopt import Problem\n\n"
                    "def build(scenario):\n"
                    "    p = Problem(scenario, server_share=True)\n"
                    "    p.minimize(p.round_latency())\n"
                    "    return p\n")
    out = tmp_path / "plan.json"
    args = ["solve", str(scenario_file), "--problem", str(user), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "server-share" in res.output and out.is_file()
    plan = json.loads(out.read_text())
    assert plan["format"] == "splitopt.plan"
    before = out.read_text()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--force" in str(again.exception)
    assert out.read_text() == before  # nothing the user had is lost
    forced = CliRunner().invoke(app, args + ["--force", "--backend", "cvxpy"])
    assert forced.exit_code == 0, forced.output


def test_solve_bad_problem_name(scenario_file):
    res = CliRunner().invoke(app, ["solve", str(scenario_file), "--problem", "no-such"])
    assert res.exit_code != 0
    assert "minmax" in str(res.exception)


def test_solve_user_file_without_build(scenario_file, tmp_path):
    user = tmp_path / "bad.py"
    user.write_text("x = 1\n")
    res = CliRunner().invoke(app, ["solve", str(scenario_file), "--problem", str(user)])
    assert res.exit_code != 0 and "build(scenario)" in str(res.exception)
