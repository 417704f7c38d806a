"""A real local Ray (``ray.init(num_cpus=2)``) runs split solving and a benchmark sweep, and gives
the same answers as local processes.

One test function owns the Ray instance so that the suite starts Ray once, whichever pytest-xdist
worker runs it. The local-process runs come first: joblib's reusable loky pool fails to start in a
process where Ray is running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from splitopt.benchmarks.runner import load_rows, run
from test_bench import tiny_family  # noqa: F401  (the fixture registering a tiny family)
from test_parallel_split import _knapsack

from splitopt.parallel import solve_program, solve_split, split_by_binaries

ray = pytest.importorskip("ray")


def _answers(out: Path) -> dict:
    return {r["instance"]: (r["status"], r["objective"]) for r in load_rows(out)}


def test_split_solving_and_bench_sweep_on_local_ray(tmp_path, tiny_family):  # noqa: F811
    prog, _ = _knapsack(6)
    parts = split_by_binaries([0, 1])
    on_processes = solve_split(prog, parts, workers=2, engine="processes", progress=False)
    run(["tiny"], tmp_path / "local", quick=True, workers=2, progress=False)

    # the tiny family's cases live in tests/: Ray's workers import them from there
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent)}})
    try:
        on_ray = solve_split(prog, parts, workers=2, engine="ray", progress=False)
        run(["tiny"], tmp_path / "ray", quick=True, ray="local", workers=2, progress=False)
    finally:
        ray.shutdown()

    assert on_ray.status == on_processes.status == "optimal"
    assert on_ray.objective == pytest.approx(on_processes.objective, rel=1e-9)
    assert on_ray.objective == pytest.approx(solve_program(prog).objective, rel=1e-9)
    assert len(on_ray.parts) == len(on_processes.parts) == 4
    assert _answers(tmp_path / "ray") == _answers(tmp_path / "local")
    assert len(_answers(tmp_path / "ray")) == 2
