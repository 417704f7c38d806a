"""Solving split across workers: the combined result equals the single-process optimum."""

from __future__ import annotations

import numpy as np
import pytest

from splitopt.backends import Result
from splitopt.errors import InputError
from splitopt.parallel import (
    MilpBuilder,
    Subproblem,
    auto_split,
    combine,
    solve_program,
    solve_split,
    split_by_binaries,
    split_by_choice,
)


def _knapsack(seed: int, n: int = 14):
    """A random multi-dimensional knapsack (maximise value as min of -value) with one-hot groups."""
    rng = np.random.default_rng(seed)
    m = MilpBuilder()
    x = m.add_vars(n, ub=1, integer=True, name="x")
    for r in range(3):
        m.add_terms(x, rng.uniform(1, 10, n), ub=float(rng.uniform(10, 30)), name=f"cap{r}")
    groups = [list(map(int, x[i:i + 3])) for i in range(0, 9, 3)]
    for gi, grp in enumerate(groups):
        m.add_terms(grp, np.ones(3), ub=1, name=f"onehot{gi}")
    m.minimize({int(j): -float(v) for j, v in zip(x, rng.uniform(1, 10, n), strict=True)})
    return m.program(), groups


def _brute(prog) -> float:
    n = prog.n_cols
    best = np.inf
    for bits in range(2 ** n):
        x = np.array([(bits >> i) & 1 for i in range(n)], dtype=float)
        ax = prog.A @ x
        if np.all(ax <= prog.row_ub + 1e-9) and np.all(ax >= prog.row_lb - 1e-9):
            best = min(best, float(prog.c @ x))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_split_equals_whole_and_brute_force(seed):
    prog, groups = _knapsack(seed, n=12)
    whole = solve_program(prog)
    assert whole.objective == pytest.approx(_brute(prog))
    subs = split_by_choice([[c] for c in groups[0]], parts=2)
    subs += [Subproblem("none", tuple((c, 0.0, 0.0) for c in groups[0]))]
    res = solve_split(prog, subs, workers=1, progress=False)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(whole.objective)
    assert res.bound == pytest.approx(min(p.bound for p in res.parts if p.bound is not None))
    assert len(res.parts) == 3


def test_two_processes_and_auto_split():
    prog, _ = _knapsack(5)
    whole = solve_program(prog)
    res = solve_split(prog, workers=2, engine="processes", progress=False)
    assert res.status == "optimal" and len(res.parts) == 4 and res.verification.passed
    assert res.objective == pytest.approx(whole.objective)
    assert res.bound == pytest.approx(whole.objective)
    assert res.per_second > 0


def test_dask_cluster_by_address():
    distributed = pytest.importorskip("dask.distributed")
    prog, _ = _knapsack(6)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        res = solve_split(prog, split_by_binaries([0, 1]), workers=2, engine="dask",
                          address=cluster.scheduler_address, progress=False)
    assert res.objective == pytest.approx(solve_program(prog).objective)
    assert len(res.parts) == 4


@pytest.mark.slow
def test_dask_local_cluster_started_for_the_solve():
    pytest.importorskip("dask.distributed")
    prog, _ = _knapsack(6)
    res = solve_split(prog, split_by_binaries([0, 1]), workers=2, engine="dask", progress=False)
    assert res.objective == pytest.approx(solve_program(prog).objective)


def test_ray_missing_is_a_clear_error():
    try:
        import ray  # noqa: F401
    except ImportError:
        prog, _ = _knapsack(0)
        with pytest.raises(InputError, match="pip install ray"):
            solve_split(prog, workers=2, engine="ray", progress=False)
    else:
        pytest.skip("ray is installed")


def test_combine_bounds_and_statuses():
    x = np.zeros(1)
    parts = [Result("optimal", objective=5.0, bound=5.0, solve_s=0.1, x=x),
             Result("infeasible", solve_s=0.1),
             Result("time_limit", objective=7.0, bound=3.0, solve_s=0.1, x=x)]
    res = combine(parts)
    assert res.objective == 5.0 and res.bound == 3.0 and res.status == "time_limit"
    assert combine(parts[:2]).status == "optimal" and combine(parts[:2]).bound == 5.0
    assert combine(parts[1:2]).status == "infeasible"


def test_partitions_cover_without_overlap():
    subs = split_by_choice([[0], [1], [2], [3], [4]], parts=2, none_col=9)
    fixed_zero = [{j for j, lo, hi in s.bounds if hi == 0} for s in subs]
    assert len(subs) == 3
    for opt in range(5):  # every option is allowed in exactly one selected part
        assert sum(opt not in z and 9 not in z for z in fixed_zero) == 1


def test_bad_arguments():
    prog, _ = _knapsack(0)
    with pytest.raises(InputError, match="workers"):
        solve_split(prog, workers=0)
    with pytest.raises(InputError, match="engine"):
        solve_split(prog, engine="mpi")
    with pytest.raises(InputError, match="time_limit"):
        solve_program(prog, time_limit=-1)
    assert auto_split(prog, 2)
