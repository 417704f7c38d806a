"""Synergy multi-model mapping: the MILP equals brute force; baselines are never better."""

from __future__ import annotations

import numpy as np
import pytest
from splitopt.formulations import synergy as sy

from splitopt.errors import InfeasibleError, InputError
from splitopt.testing import random_dag


def _instance(seed: int, *, models: int = 2, accels: int = 3, mem_frac: float = 0.6):
    rng = np.random.default_rng(seed)
    ms = [(f"m{i}", random_dag(rng, int(rng.integers(2, 4)), chain=i % 2 == 0, skip_prob=0.6))
          for i in range(models)]
    total = sum(g.param_bytes.sum() + 2 * g.out_bytes.max() for _, g in ms)
    acs = [sy.Accelerator(f"a{a}", float(10 ** rng.uniform(8, 10)),
                          float(total * rng.uniform(mem_frac, 1.2)), float(10 ** rng.uniform(6, 8)))
           for a in range(accels)]
    return sy.instance(ms, acs, weights=rng.uniform(0.5, 2, models))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("objective", sy.OBJECTIVES)
def test_milp_equals_brute_force(seed, objective):
    inst = _instance(seed, mem_frac=0.2 + 0.1 * (seed % 4))
    try:
        exact = sy.brute_force(inst, objective)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            sy.solve(inst, objective=objective)
        return
    got = sy.solve(inst, objective=objective)
    attr = "bottleneck_s" if objective == "throughput" else "latency_s"
    assert getattr(got, attr) == pytest.approx(getattr(exact, attr), rel=1e-7)
    assert got.status == "optimal" and got.verification.passed
    assert got.bound <= getattr(got, attr) * (1 + 1e-9)
    for base in (sy.greedy, sy.whole_models):
        try:
            b = base(inst)
        except InfeasibleError:
            continue
        assert getattr(b, attr) >= getattr(exact, attr) * (1 - 1e-9)


def test_splitting_beats_whole_models_when_memory_is_tight():
    inst = _instance(3, models=2, accels=3, mem_frac=0.6)
    got = sy.solve(inst)
    assert got.throughput >= sy.whole_models(inst).throughput * (1 - 1e-9)
    assert got.bottleneck_s == pytest.approx(sy.evaluate(inst, got.mapping)[0])


def test_bad_input():
    with pytest.raises(InputError, match="memory_bytes"):
        sy.Accelerator("a", 1e9, 0, 1e6)
    inst = _instance(0)
    with pytest.raises(InputError, match="objective"):
        sy.solve(inst, objective="energy")
    with pytest.raises(InputError, match="weights"):
        sy.instance([("m", random_dag(np.random.default_rng(0), 2))],
                    [sy.Accelerator("a", 1e9, 1e9, 1e6)], weights=[1, 2])
    with pytest.raises(InfeasibleError, match="no mapping"):
        sy.solve(sy.instance([("m", random_dag(np.random.default_rng(0), 3))],
                             [sy.Accelerator("a", 1e9, 1.0, 1e6)]))
