"""`splitopt info` and `splitopt cost`: tables, --json; bad input gives one line and exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from splitopt import DevicePlan, LayerGraph, Plan, Scenario, evaluate
from splitopt.cli import app, main
from splitopt.testing import random_dag

SCENARIO = """
model: graph.json
devices:
  - {catalog: jetson-nano, count: 2, snr_db: 10}
  - {catalog: raspberry-pi-5, snr_db: 5}
server: {catalog: edge-a2}
channel: {bandwidth_up_hz: 2e6, bandwidth_dn_hz: 2e6}
training: {batch_size: 16, local_iters: 2, rounds: 10}
"""

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    g = random_dag(np.random.default_rng(5), 6)
    g.save(tmp_path / "graph.json")
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    sc = Scenario.load(tmp_path / "scenario.yaml")
    cuts = g.chain_prefixes()
    plan = Plan(tuple(DevicePlan(d.name, cuts[i + 1], 1 / 3) for i, d in enumerate(sc.devices)),
                rounds=10)
    plan.save(tmp_path / "plan.json", sc)
    return tmp_path, g, sc, plan


def test_info_json(files):
    tmp, g, _, _ = files
    res = runner.invoke(app, ["info", str(tmp / "graph.json"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["nodes"] == len(g) and doc["edges"] == len(g.edges)
    assert doc["inputs"] == list(g.inputs) and doc["output"] == g.output
    assert doc["train_flops_per_sample"] == pytest.approx(g.train_flops.sum())
    assert doc["param_bytes"] == pytest.approx(g.param_bytes.sum())
    assert doc["is_chain"] is False and doc["measured_classes"] == []


def test_info_table(files):
    tmp, g, _, _ = files
    res = runner.invoke(app, ["info", str(tmp / "graph.json")])
    assert res.exit_code == 0, res.output
    assert "nodes" in res.stdout and str(len(g)) in res.stdout and "train_flops" in res.stdout


def test_cost_json_matches_evaluate(files):
    tmp, _, sc, plan = files
    res = runner.invoke(app, ["cost", str(tmp / "scenario.yaml"), str(tmp / "plan.json"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    expected = evaluate(sc, plan).to_dict()
    assert doc["round_latency_s"] == pytest.approx(expected["round_latency_s"], rel=1e-12)
    assert doc["total_delay_s"] == pytest.approx(10 * expected["round_latency_s"], rel=1e-12)
    assert set(doc["per_device"]) == {"jetson-nano-0", "jetson-nano-1", "raspberry-pi-5"}
    for name, phases in expected["per_device"].items():
        for key, value in phases.items():
            assert doc["per_device"][name][key] == pytest.approx(value, rel=1e-12)


def test_cost_table(files):
    tmp, _, sc, plan = files
    res = runner.invoke(app, ["cost", str(tmp / "scenario.yaml"), str(tmp / "plan.json")],
                        env={"COLUMNS": "200"})  # rich shortens names to fit a narrow terminal
    assert res.exit_code == 0, res.output
    assert "jetson-nano-1" in res.stdout and "round latency" in res.stdout
    assert f"{evaluate(sc, plan).round_latency_s:.6g}" in res.stdout


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["splitopt", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr()


@pytest.mark.parametrize("case,pattern", [
    ("graph_missing", r"^error: graph file: got '.*nope\.json'; allowed: an existing JSON file\.$"),
    ("graph_cycle", r"^error: edges: got 'b -> a'; allowed: an acyclic graph"),
    ("graph_nan", r"^error: node 'a'\.fwd_flops: got nan; allowed: a number in \[0, 1e18\] "
                  r"\(FLOPs per sample\)\.$"),
    ("plan_bad_json", r"^error: plan file: got '.*'; allowed: valid JSON\."),
    ("scenario_zero_speed",
     r"^error: devices\[1\]\.flops: got 0; allowed: a number in \[1, 1e21\]"),
    ("scenario_catalog", r"^error: devices\[0\]\.catalog: got 'jetson-nan'; allowed: one of "),
    ("graph_binary", r"^error: graph file: got '.*g\.json'; allowed: an existing JSON file, "
                     r"readable as UTF-8 text\."),
    ("plan_is_folder", r"^error: plan file: got '.*'; allowed: an existing JSON file\.$"),
])
def test_bad_files_exit_2_with_one_line(files, monkeypatch, capsys, case, pattern):
    tmp = files[0]
    bad_graph = {"nodes": [{"name": n, "fwd_flops": 1, "out_bytes": 1, "param_bytes": 0}
                           for n in ("x", "a", "b", "y")],
                 "inputs": ["x"], "output": "y",
                 "edges": [["x", "a"], ["a", "b"], ["b", "a"], ["b", "y"]]}
    if case == "graph_missing":
        args = ["info", str(tmp / "nope.json")]
    elif case == "graph_cycle":
        (tmp / "g.json").write_text(json.dumps(bad_graph))
        args = ["info", str(tmp / "g.json")]
    elif case == "graph_nan":
        text = (tmp / "graph.json").read_text()
        doc = json.loads(text)
        doc["nodes"] = [dict(n, fwd_flops=float("nan")) if n["name"] == "n0" else n
                        for n in doc["nodes"]]
        (tmp / "g.json").write_text(json.dumps(doc).replace('"n0"', '"a"'))
        args = ["info", str(tmp / "g.json"), "--json"]
    elif case == "graph_binary":
        (tmp / "g.json").write_bytes(b"\xff\xfe\x00binary")
        args = ["info", str(tmp / "g.json")]
    elif case == "plan_is_folder":
        args = ["cost", str(tmp / "scenario.yaml"), str(tmp)]
    elif case == "plan_bad_json":
        (tmp / "p.json").write_text("{")
        args = ["cost", str(tmp / "scenario.yaml"), str(tmp / "p.json")]
    else:
        text = SCENARIO.replace("{catalog: raspberry-pi-5, snr_db: 5}",
                                "{name: slow, flops: 0, snr_db: 5}")
        if case == "scenario_catalog":
            text = SCENARIO.replace("catalog: jetson-nano,", "catalog: jetson-nan,")
        (tmp / "s.yaml").write_text(text)
        args = ["cost", str(tmp / "s.yaml"), str(tmp / "plan.json"), "--json"]
    code, out = _main(monkeypatch, capsys, *args)
    assert code == 2
    assert out.out == ""  # nothing half-printed on stdout (a --json consumer sees no junk)
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err
    assert re.search(pattern, lines[0]), lines[0]


def test_console_script_bad_file_one_line(tmp_path):
    """The real entry point in a fresh process: exit status 2, one line on stderr, no traceback."""
    (tmp_path / "g.json").write_text('{"nodes": [], "edges": [], "inputs": ["x"], "output": "y"}')
    proc = subprocess.run([sys.executable, "-c", "from splitopt.cli import main; main()", "info",
                           str(tmp_path / "g.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: inputs: got 'x'; allowed: names of nodes in the graph "
                                   "(the graph is empty).")
    assert proc.stdout == ""


def test_good_run_through_main(files, monkeypatch, capsys):
    tmp = files[0]
    code, out = _main(monkeypatch, capsys, "info", str(tmp / "graph.json"), "--json")
    assert code in (0, None) and json.loads(out.out)["nodes"] == len(LayerGraph.load(
        tmp / "graph.json"))
