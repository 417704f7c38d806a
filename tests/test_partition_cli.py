"""``splitopt partition``: output, JSON, and one-line errors for bad input."""

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from splitopt import LayerGraph, Node
from splitopt.cli import app, main
from splitopt.testing import random_dag

SCENARIO = """
model: unused.json
devices:
  - {{catalog: jetson-nano, count: 2, snr_db: 12}}
  - {{name: pi, catalog: raspberry-pi-4, snr_db: 6{extra}}}
server: {{catalog: edge-a2}}
channel: {{bandwidth_up_hz: {band}, bandwidth_dn_hz: 2.0e6}}
training: {{batch_size: 8}}
"""


@pytest.fixture
def files(tmp_path):
    random_dag(np.random.default_rng(0), 12).save(tmp_path / "g.json")
    random_dag(np.random.default_rng(1), 60).save(tmp_path / "big.json")
    LayerGraph([Node("x", kind="input"), Node("a"), Node("b"), Node("y", kind="output")],
               [("x", "a"), ("b", "y")], ["x"], "y").save(tmp_path / "nopath.json")
    (tmp_path / "sc.yaml").write_text(SCENARIO.format(extra="", band="2.0e6"))
    (tmp_path / "zero_speed.yaml").write_text(SCENARIO.format(extra=", flops: 0", band="2.0e6"))
    (tmp_path / "zero_band.yaml").write_text(SCENARIO.format(extra="", band="0"))
    return tmp_path


def test_table_output_names_the_split_and_baselines(files):
    res = CliRunner().invoke(app, ["partition", str(files / "g.json"), "--scenario",
                                   str(files / "sc.yaml"), "--device", "pi"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("on pi (bandwidth share 0.3333)", "device side (", "boundary tensors",
                 "iteration_s", "device-only", "server-only", "best chain cut", "reduction_%"):
        assert text in res.stdout


def test_json_output_is_the_plan_with_baselines(files):
    res = CliRunner().invoke(app, ["partition", str(files / "big.json"), "--scenario",
                                   str(files / "sc.yaml"), "--json", "--batch", "4",
                                   "--method", "blockwise", "--share", "0.5"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "optimal" and doc["method"] == "blockwise"
    assert doc["devices"][0]["device"] == "jetson-nano-0"
    assert doc["devices"][0]["bandwidth_share"] == 0.5 and doc["devices"][0]["batch_size"] == 4
    names = [b["name"] for b in doc["baselines"]]
    assert names == ["device-only", "server-only", "best chain cut"]
    assert all(b["iteration_s"] >= doc["objective"] * (1 - 1e-12) for b in doc["baselines"])


def test_big_graph_prints_a_count(files):
    res = CliRunner().invoke(app, ["partition", str(files / "big.json"), "--scenario",
                                   str(files / "sc.yaml"), "--device", "jetson-nano-1",
                                   "--method", "milp"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "device side: " in res.stdout and "of 62 nodes" in res.stdout


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["splitopt", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr()


@pytest.mark.parametrize("graph,scenario,extra,pattern", [
    ("g.json", "sc.yaml", ["--device", "phone"],
     r"^error: device: got 'phone'; allowed: one of \['jetson-nano-0', 'jetson-nano-1', 'pi'\]"),
    ("big.json", "sc.yaml", ["--method", "brute"],
     r"^error: graph: got '62 nodes \(60 free\)'; allowed: at most 20 nodes .*method='maxflow'"),
    ("nopath.json", "sc.yaml", [], r"^error: graph: got .*allowed: a graph with a path from an "
                                   r"input to the output 'y'"),
    ("g.json", "zero_speed.yaml", [], r"^error: devices\[1\]\.flops: got 0; allowed: a number "),
    ("g.json", "zero_band.yaml", [], r"^error: channel\.bandwidth_up_hz: got 0; allowed: a number"),
    ("g.json", "sc.yaml", ["--share", "0"], r"^error: --share: got 0\.0; allowed: a number in"),
    ("g.json", "sc.yaml", ["--method", "fast"], r"^error: method: got 'fast'; allowed: one of"),
    ("missing.json", "sc.yaml", [],
     r"^error: model: got '.*missing.json'; allowed: an existing graph"),
])
def test_bad_input_is_one_line(files, monkeypatch, capsys, graph, scenario, extra, pattern):
    code, out = _main(monkeypatch, capsys, "partition", str(files / graph), "--scenario",
                      str(files / scenario), *extra)
    assert code == 2
    assert len(out.err.strip().splitlines()) == 1, out.err
    assert __import__("re").search(pattern, out.err.strip()), out.err
