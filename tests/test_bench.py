"""The benchmark runner and report end to end on a tiny sweep (real solves, real files)."""

import json
from functools import partial

import pytest
from splitopt.benchmarks import registry
from splitopt.benchmarks.milp_routes import grid_milp, reprice, route_highspy, solve_in_process
from splitopt.benchmarks.report import build_report
from splitopt.benchmarks.runner import load_rows, run

from splitopt.errors import InputError


def _tiny_solve(n: int) -> dict:
    inst = grid_milp(n, n_cuts=4, levels=3)
    res = route_highspy(inst, 10.0)
    res["checked_objective"], res["feasible"] = reprice(inst, res.pop("x"))
    res.pop("trace")
    return res


def _tiny_cases(quick):
    return [registry.Case(f"tiny-{n}", "highspy", partial(_tiny_solve, n), n) for n in (3, 6)]


@pytest.fixture
def tiny_family():
    spec = registry.register(registry.BenchSpec("tiny", "test family", _tiny_cases, "highspy"))
    yield spec
    registry._REGISTRY.pop("tiny", None)


def test_run_resume_and_report(tmp_path, tiny_family):
    out = tmp_path / "res"
    run(["tiny"], out, quick=True, progress=False)
    rows = load_rows(out)
    assert {r["instance"] for r in rows} == {"tiny-3", "tiny-6"}
    assert all(r["status"] == "optimal" and r["feasible"] for r in rows)
    assert all(abs(r["objective"] - r["checked_objective"]) < 1e-9 * r["objective"] for r in rows)
    # a second run resumes: nothing new is appended
    run(["tiny"], out, quick=True, progress=False)
    assert len(load_rows(out)) == 2
    # an interrupted run (cut-off last line) re-runs only the missing case
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n" + lines[1][:10])
    run(["tiny"], out, quick=True, progress=False)
    assert sorted(r["instance"] for r in load_rows(out)) == ["tiny-3", "tiny-6"]
    md = build_report(out)
    text = md.read_text()
    assert "| tiny-6 | highspy | optimal" in text
    assert (out / "tiny_time.png").stat().st_size > 1000
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert json.loads((out / "machine.json").read_text())["libraries"]["highspy"]


def test_parallel_workers_give_same_rows(tmp_path, tiny_family):
    run(["tiny"], tmp_path / "a", quick=True, progress=False)
    run(["tiny"], tmp_path / "b", quick=True, workers=2, progress=False)
    a = {r["instance"]: r["objective"] for r in load_rows(tmp_path / "a")}
    b = {r["instance"]: r["objective"] for r in load_rows(tmp_path / "b")}
    assert a == b


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="FAMILY.*nope.*allowed: one of"):
        run(["nope"], tmp_path)


def test_route_in_own_process_is_rechecked():
    res = solve_in_process("highspy", 5, time_limit=10)
    assert res["status"] == "optimal" and res["feasible"]
    assert res["checked_objective"] == pytest.approx(res["objective"], rel=1e-9)


def test_every_family_lists_its_sweeps():
    """Each family module imports and lists both sweeps with unique rows (no case is run)."""
    for name in registry.FAMILIES:
        spec = registry.get([name])[0]
        for quick in (True, False):
            keys = [c.key for c in spec.cases(quick)]
            assert keys and len(keys) == len(set(keys)), (name, quick)


def test_generic_family_rows_run():
    from splitopt.benchmarks.bench_generic import build_row, energy_row

    build = build_row(10)
    assert build["ratio_median"] > 0 and build["nnz"] > 0
    row = energy_row(10, "generic-path", 10.0)
    assert row["status"] == "optimal" and row["gap"] <= 1e-4 and row["path"] == "lagrangian"
