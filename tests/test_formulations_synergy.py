"""Synergy multi-model mapping: the MILP equals brute force; baselines are never better."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# ------------------------------------------------------------- the public builder (issue 16)
def _fleet(rng: np.random.Generator, n_accels: int):
    from splitopt.system import Training
    from splitopt.testing import random_scenario

    return random_scenario(rng, random_dag(rng, 3, chain=True), n_accels,
                           training=Training(batch_size=4), serving="dedicated")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), models=st.integers(1, 2), accels=st.integers(1, 3),
       objective=st.sampled_from(sy.OBJECTIVES))
def test_builder_equals_own_milp_and_brute_force(seed, models, accels, objective):
    """Synergy stated on the builder (model.assign) = the hand-built MILP = brute force."""
    rng = np.random.default_rng(seed)
    inst = _instance(seed % 1000, models=models, accels=accels,
                     mem_frac=float(rng.uniform(0.2, 0.9)))
    sc = _fleet(rng, accels)
    try:
        exact = sy.brute_force(inst, objective)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            sy.solve_builder(inst, sc, objective=objective)
        return
    got = sy.solve_builder(inst, sc, objective=objective)
    own = sy.solve(inst, objective=objective)
    assert got.termination == "optimal" and got.verification.passed
    assert got.objective == pytest.approx(exact.objective, rel=1e-7)
    assert got.objective == pytest.approx(own.objective, rel=1e-7)
    assert got.bound <= got.objective * (1 + 1e-9)
    b, lat, ok = sy.evaluate(inst, got.mapping)  # the mapping re-priced independently
    assert ok and (b if objective == "throughput" else lat) == pytest.approx(got.objective)


def test_registered_synergy_is_a_builder_problem():
    from splitopt.formulations.registry import accelerators_of as sy_accels

    from splitopt import formulation
    from splitopt.model import Problem

    sc = _fleet(np.random.default_rng(4), 3)
    f = formulation.get("synergy")
    p = f.build(sc)
    assert isinstance(p, Problem) and not f.builder_lacks
    res = f.solve(sc)
    assert res.termination == "optimal" and res.path == "outer-approximation"
    p, _, unit = sy.problem(sy.instance([("m", sc.graph)], sy_accels(sc)), sc)
    assert p.solve().objective * unit == pytest.approx(res.objective, rel=1e-7)


def test_segment_assignment_rows():
    from splitopt.model.assign import SegmentAssignment

    sc = _fleet(np.random.default_rng(1), 2)
    from splitopt.model import Problem

    p = Problem(sc)
    seg = SegmentAssignment(p, [3, 2], 2)
    assert seg.n_arcs == (6 + 3) * 2  # segments [i, j) of 3 and 2 layers, times 2 slots
    with pytest.raises(InputError, match="lengths"):
        SegmentAssignment(p, [0], 2, name="bad")
    with pytest.raises(InputError, match="arc coefficients"):
        seg.linear([1.0])
    ones = np.zeros(seg.n_arcs)
    ones[(seg.model == 0) & (seg.start == 0) & (seg.end == 3) & (seg.slot == 1)] = 1
    ones[(seg.model == 1) & (seg.start == 0) & (seg.end == 1) & (seg.slot == 0)] = 1
    ones[(seg.model == 1) & (seg.start == 1) & (seg.end == 2) & (seg.slot == 1)] = 1
    assert seg.chosen(ones) == (((0, 3, 1),), ((0, 1, 0), (1, 2, 1)))
