"""``splitopt profile``: JSON and table output, the graph file, one-line errors."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("torch")

from splitopt.cli import main  # noqa: E402
from splitopt.graph import LayerGraph  # noqa: E402


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["splitopt", "profile", *args])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    return code, capsys.readouterr()


def test_profile_json_and_out_file(monkeypatch, capsys, tmp_path):
    out = tmp_path / "g.json"
    code, cap = run(monkeypatch, capsys, "digits_cnn", "--capture", "fx", "--out", str(out),
                    "--json")
    assert code == 0
    doc = json.loads(cap.out)
    graph = LayerGraph.load(out)
    assert doc["nodes"] == len(graph) and doc["capture"] == "fx"
    assert doc["param_bytes"] == 38_282 * 4
    assert doc["fwd_gflops_per_sample"] == pytest.approx(graph.fwd_flops.sum() / 1e9)


def test_profile_table(monkeypatch, capsys):
    code, cap = run(monkeypatch, capsys, "splitopt.profiler.toy:examples", "--capture", "fx")
    assert code == 2 and "an nn.Module or a (module, example_inputs) pair" in cap.err
    code, cap = run(monkeypatch, capsys, "digits_cnn", "--capture", "fx")
    assert code == 0 and "profile of digits_cnn" in cap.out and "capture" in cap.out


@pytest.mark.parametrize("model,pattern", [
    ("resnet19", r"^error: model name: got 'resnet19'; allowed: one of digits_cnn, resnet18"),
    ("no_such.pkg:make", r"^error: model: got 'no_such.pkg:make'; allowed: a zoo name .* or "
                         r"'package.module:factory'\. Module 'no_such.pkg' cannot be imported"),
    ("json:nope", r"^error: model: got 'json:nope'.*Module 'json' has no callable 'nope'\.$"),
])
def test_bad_model_one_line(monkeypatch, capsys, model, pattern):
    import re

    code, cap = run(monkeypatch, capsys, model, "--json")
    assert code == 2 and cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), cap.err
