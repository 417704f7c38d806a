"""docs/tutorial.md runs as written: its torch-free blocks on a hand-made graph, then its CLI steps.

Blocks after ``<!-- test: core -->`` are executed in order in one namespace, with ``graph`` set to a
hand-made LayerGraph that has the profiled CNN's shape and names; blocks after
``<!-- test: file NAME -->`` are written to NAME. So the page cannot drift from the API.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitopt import LayerGraph, Node, Plan, Scenario, evaluate
from splitopt.cli import app

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
_BLOCK = re.compile(r"<!-- test: (core|file [\w.]+) -->\n```\w*\n(.*?)```", re.S)


def cnn_graph() -> LayerGraph:
    """The tutorial's CNN as the profiler describes it (per-sample FLOPs and bytes, float32)."""
    spec = [("0", "Conv2d", 18432, 18432, 4096, 640), ("1", "ReLU", 0, 0, 4096, 0),
            ("2", "Conv2d", 589824, 1179648, 8192, 18560), ("3", "ReLU", 0, 0, 8192, 0),
            ("4", "MaxPool2d", 0, 0, 2048, 0), ("5", "Flatten", 0, 0, 2048, 0),
            ("6", "Linear", 65536, 131072, 256, 131328), ("7", "ReLU", 0, 0, 256, 0),
            ("8", "Linear", 1280, 2560, 40, 2600)]
    nodes = [Node("input", 0, 0, 256, 0, "input")]
    nodes += [Node(n, f, b, o, p, k) for n, k, f, b, o, p in spec]
    nodes.append(Node("output", 0, 0, 40, 0, "output"))
    names = [n.name for n in nodes]
    edges = list(zip(names, names[1:], strict=False))
    return LayerGraph(nodes, edges, ["input"], "output", name="Sequential")


def blocks() -> list[tuple[str, str]]:
    found = _BLOCK.findall(TUTORIAL.read_text())
    assert len(found) >= 5, "the tutorial lost its tested blocks"
    return found


def run_tutorial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Execute the tutorial's tested blocks in ``tmp_path``; return their namespace."""
    monkeypatch.chdir(tmp_path)
    ns: dict = {"graph": cnn_graph()}
    for kind, code in blocks():
        if kind == "core":
            exec(compile(code, str(TUTORIAL), "exec"), ns)  # noqa: S102 - our own docs
        else:
            Path(kind.split()[1]).write_text(code)
    return ns


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    ns = run_tutorial(tmp_path, monkeypatch)
    out = capsys.readouterr().out
    scenario, plan = ns["scenario"], ns["best_plan"]
    # the numbers printed in the tutorial's comments
    assert "14400000000.0" in out and "[[0, 1], [2]]" in out and "['1']" in out
    assert "round latency 6.8 s, 20 rounds: 136 s" in out
    assert "best uniform cut after node ['input']: 0.425 s per round" in out
    text = TUTORIAL.read_text()
    assert all(line in text for line in out.splitlines() if line.startswith(("nano", "pi:")))
    costs = ns["costs"]
    assert costs.round_latency_s == max(p.round_s for p in costs.per_device.values())
    # the chosen cut really is the best uniform cut that fits memory (brute force over evaluate)
    feasible = []
    for s in ns["table"].sets():
        c = evaluate(scenario, ns["uniform_plan"](scenario, s))
        if all(c.per_device[d.name].memory_bytes <= d.memory_bytes for d in scenario.devices):
            feasible.append(c.round_latency_s)
    assert plan.predicted.round_latency_s == pytest.approx(min(feasible), rel=1e-12)
    # the files the tutorial wrote describe the same scenario and plan
    assert Scenario.load("scenario.yaml") == scenario
    assert Plan.load("plan.json") == Plan.from_dict(plan.to_dict())
    assert LayerGraph.load("graph.json") == ns["graph"]


def test_tutorial_cli_steps(tmp_path, monkeypatch):
    ns = run_tutorial(tmp_path, monkeypatch)
    runner = CliRunner()
    info = runner.invoke(app, ["info", "graph.json", "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["nodes"] == 11
    cost = runner.invoke(app, ["cost", "scenario.yaml", "plan.json", "--json"])
    assert cost.exit_code == 0, cost.output
    doc = json.loads(cost.stdout)
    assert doc["round_latency_s"] == pytest.approx(ns["best_plan"].predicted.round_latency_s,
                                                   rel=1e-12)


def test_hand_made_graph_matches_the_profiler():
    """The stand-in graph above is what splitopt.profile really returns for the tutorial's CNN."""
    pytest.importorskip("torch")
    code = next(c for c in re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)
                if "splitopt.profile(" in c)
    ns: dict = {}
    exec(compile(code, str(TUTORIAL), "exec"), ns)  # noqa: S102 - our own docs
    profiled, hand = ns["graph"], cnn_graph()
    assert isinstance(profiled, LayerGraph)
    assert profiled.names == hand.names and set(profiled.edges) == set(hand.edges)
    assert profiled.nodes == hand.nodes
