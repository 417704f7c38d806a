"""The extensions benchmark family registers itself and its cases return the runner's row fields."""

from __future__ import annotations

from splitopt.benchmarks.registry import get


def test_family_registers_and_a_case_runs():
    (spec,) = get(["extensions"])
    cases = spec.cases(True)
    keys = {c.key for c in cases}
    assert spec.baseline == "exact" and len(keys) == len(cases)
    instances = {c.instance for c in cases}
    assert all(any(c.instance == i and c.method == "exact" for c in cases) for i in instances)
    case = next(c for c in cases if c.key == "multitier-chain/exact")
    row = case.run()
    assert row["status"] == "optimal" and row["objective"] == row["bound"]
    assert {"objective", "bound", "gap", "status", "build_s", "solve_s"} <= set(row)
    smart = next(c for c in cases if c.key == "smartsplit-participation-8dev/no-recompute").run()
    assert smart["objective"] == -smart["participants"] and smart["recomputing"] == 0
