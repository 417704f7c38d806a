"""Issue 16: no import circle crosses a package boundary and no private module is imported from
another package (the picture ``python tools/import_graph.py`` draws, docs/architecture.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from import_graph import module_graph, package  # noqa: E402


def _graph(monkeypatch) -> nx.DiGraph:
    monkeypatch.chdir(ROOT)  # the tool reads the working tree relative to the repository root
    g = module_graph(None)
    g.remove_edges_from([(a, b) for a, b in g.edges if b == "splitopt"])  # the root facade
    return g


def test_no_package_circle(monkeypatch):
    g = _graph(monkeypatch)
    pg = nx.DiGraph((package(a), package(b)) for a, b in g.edges if package(a) != package(b))
    circles = [sorted(c) for c in nx.strongly_connected_components(pg) if len(c) > 1]
    assert circles == [], circles


def test_solve_and_compile_reach_model_without_model_importing_them(monkeypatch):
    g = _graph(monkeypatch)
    assert not nx.has_path(g, "splitopt.model.problem", "splitopt.solving")
    assert not nx.has_path(g, "splitopt.model.problem", "splitopt.compile")
    assert nx.has_path(g, "splitopt.solving", "splitopt.model.problem")


def test_no_private_module_imported_from_another_package(monkeypatch):
    g = _graph(monkeypatch)
    private = sorted(f"{a} -> {b}" for a, b in g.edges
                     if b.rpartition(".")[2].startswith("_") and not b.endswith("__init__")
                     and b.rpartition(".")[0] != a.rpartition(".")[0]
                     and b.rpartition(".")[0] != a)
    assert private == [], private


def test_problem_solve_works_through_the_composition_root():
    """``Problem.solve()``/``compile()`` call what splitopt/__init__ registered."""
    import numpy as np

    from splitopt import Problem
    from splitopt.model.problem import ACTIONS
    from splitopt.testing import random_dag, random_scenario

    rng = np.random.default_rng(0)
    p = Problem(random_scenario(rng, random_dag(rng, 4), 2, serving="dedicated"))
    p.minimize(p.round_latency())
    assert set(ACTIONS) == {"solve", "compile"}
    assert p.solve().termination == "optimal"
    assert p.compile().n_cols > 0
