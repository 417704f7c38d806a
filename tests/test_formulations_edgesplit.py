"""EdgeSplit and SFL: exact solves equal brute force; the alternating baseline is never worse."""

import numpy as np
import pytest
from splitopt.formulations._oracle import brute_minmax, closed_sets, grid_minmax
from splitopt.formulations.edgesplit import EdgeSplit
from splitopt.formulations.sfl import SFL, SFLSharedServer

from splitopt.backends import get_backend
from splitopt.errors import InfeasibleError, InputError
from splitopt.plan import evaluate
from splitopt.solving.bisection import bisect_minmax
from splitopt.solving.resource import server_minmax
from splitopt.solving.shares import fixed_minmax
from splitopt.system import Training
from splitopt.testing import random_dag, random_scenario


def _instance(seed, *, chain=True, n=3, nodes=5):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, nodes, chain=chain)
    tr = Training(batch_size=int(rng.integers(1, 32)), local_iters=int(rng.integers(1, 3)),
                  rounds=int(rng.integers(1, 5)))
    return random_scenario(rng, g, n, training=tr)


def _oracle(form, sc):
    """Brute force over every choice of cuts, with the exact shares for each."""
    scen = form.scenario_for(sc)
    table = form.table(scen)
    t = form.terms(scen, table)
    feas = np.ones(t.mem.shape, dtype=bool)
    serving = scen.server.serving
    if serving == "sequential":  # in turn, whole band and server each: a sum
        best = float((t.a_dev + t.a_srv + t.d).min(axis=1).sum())
    else:
        best, _ = brute_minmax(t.a_dev, t.a_srv, t.d, feas, server_share=serving == "shared")
    return best * scen.training.rounds


def _serving(sc, serving):
    return sc.replace(server=sc.server.model_copy(update={"serving": serving}))


FORMS = [EdgeSplit(), EdgeSplit(server_share=False), SFL(), SFL(server_share=False),
         SFLSharedServer()]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"{f.name}-{f.server_share}")
def test_exact_equals_brute_force_chain(seed, form):
    sc = _instance(seed)
    plan = form.solve(sc)
    want = _oracle(form, sc)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(want, rel=1e-8)
    assert plan.bound <= want * (1 + 1e-9)
    # the plan's number is the reference model's price of the plan
    assert evaluate(form.scenario_for(sc), plan).total_delay_s == pytest.approx(plan.objective)
    base = form.baseline(sc)
    assert base.objective >= plan.objective * (1 - 1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cls", [EdgeSplit, SFL])
def test_sequential_server_is_exact_and_prices_as_a_sum(seed, cls):
    sc = _serving(_instance(300 + seed), "sequential")
    plan = cls().solve(sc)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(_oracle(cls(), sc), rel=1e-9)
    costs = evaluate(cls().scenario_for(sc), plan)
    assert costs.total_delay_s == pytest.approx(plan.objective, rel=1e-9)
    assert costs.round_latency_s == pytest.approx(sum(p.round_s for p in costs.per_device.values()))
    assert all(d.bandwidth_share == 1.0 for d in plan.devices)  # each has the band in its turn
    assert cls().baseline(sc).objective == pytest.approx(plan.objective)
    with pytest.raises(InputError, match="server.serving"):
        cls().problem(sc)


def test_the_default_server_is_shared_and_plans_carry_the_shares():
    sc = _instance(7)
    assert sc.server.serving == "shared"
    plan = EdgeSplit().solve(sc)
    phi = [d.server_share for d in plan.devices]
    assert all(p is not None and 0 < p < 1 for p in phi) and sum(phi) <= 1 + 1e-9
    dedicated = EdgeSplit(server_share=False).solve(sc)
    assert dedicated.objective <= plan.objective * (1 + 1e-9)  # more server: never slower
    assert all(d.server_share in (None, 1.0) for d in dedicated.devices)
    assert EdgeSplit(server_share=False).scenario_for(sc).server.serving == "dedicated"


@pytest.mark.parametrize("seed", range(4))
def test_exact_over_all_closed_sets_of_a_dag(seed):
    sc = _instance(100 + seed, chain=False, nodes=6)
    sets = closed_sets(sc.graph)
    form = EdgeSplit(candidates=sets)
    plan = form.solve(sc)
    assert plan.objective == pytest.approx(_oracle(form, sc), rel=1e-8)
    assert form.baseline(sc).objective >= plan.objective * (1 - 1e-9)


def _random_rows(seed: int, devices: tuple[int, int], options: tuple[int, int]):
    """(n, m, a, s, d, allowed): random min-max rows with a server term, every option allowed."""
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(*devices)), int(rng.integers(*options))
    a = rng.uniform(0, 2, (n, m))
    d = rng.uniform(0, 1, (n, m)) * 10 ** rng.uniform(-2, 1)
    s = rng.uniform(0, 1, (n, m))
    return n, m, a, s, d, np.ones((n, m), dtype=bool)


@pytest.mark.parametrize("seed", range(10))
def test_kernels_against_grid_and_brute(seed):
    n, m, a, s, d, allowed = _random_rows(seed, (1, 4), (1, 4))
    got = bisect_minmax(a, d, np.zeros((n, m)), allowed)
    want, _ = brute_minmax(a, np.zeros_like(a), d, allowed)
    assert got.objective == pytest.approx(want, rel=1e-10) and got.bound <= want
    rows = np.arange(n)
    fixed = fixed_minmax(a[rows, got.options], d[rows, got.options])[0]
    grid = grid_minmax(a[rows, got.options], d[rows, got.options], steps=600)
    assert fixed <= grid * (1 + 1e-12) and grid <= fixed * (1 + 2e-2)
    want_s, _ = brute_minmax(a, s, d, allowed, server_share=True)
    # branch and bound alone; the MILP alone (no nodes); with neither only the bound is promised
    for backend, budget in ((None, 200), (get_backend("highs"), 0), (None, 0)):
        shared = server_minmax(a, d, s, allowed, backend, budget=budget)
        assert shared.bound <= want_s * (1 + 1e-9) <= shared.objective * (1 + 2e-9)
        assert shared.beta.sum() <= 1 + 1e-9 and shared.phi.sum() <= 1 + 1e-9
        if shared.termination == "optimal":
            assert shared.objective == pytest.approx(want_s, rel=1e-8)
        else:  # budget spent without a backend: said so, gap open
            assert budget == 0 and backend is None and "undecided" in shared.message
    assert server_minmax(a, d, s, allowed, None).termination == "optimal"


def test_memory_excludes_cuts_and_explains_infeasibility():
    sc = _instance(3)
    form = EdgeSplit()
    t = form.terms(sc)
    # the smallest memory need of device 0 is just allowed; nothing else of its row is
    cap = float(t.mem[0].min())
    devs = list(sc.devices)
    devs[0] = devs[0].model_copy(update={"memory_bytes": cap})
    tight = sc.replace(devices=devs)
    plan = form.solve(tight)
    assert plan.predicted.per_device[devs[0].name].memory_bytes <= cap
    assert form.baseline(tight).objective >= plan.objective * (1 - 1e-9)
    devs[0] = devs[0].model_copy(update={"memory_bytes": cap * 0.5})
    with pytest.raises(InfeasibleError, match=devs[0].name):
        form.baseline(sc.replace(devices=devs))


def test_bad_input():
    sc = _instance(0)
    with pytest.raises(InputError, match="candidates"):
        EdgeSplit(candidates="bogus").solve(sc)
    with pytest.raises(InputError, match="scenario"):
        EdgeSplit().solve("scenario.yaml")


def test_scenario_is_not_mutated():
    sc = _instance(1)
    before = sc.to_dict()
    EdgeSplit().solve(sc)
    assert sc.to_dict() == before
    assert EdgeSplit().scenario_for(sc).training.aggregate is False


def test_sfl_prices_the_aggregation():
    sc = _instance(5)
    plan = SFL().solve(sc)
    agg = [p.aggregation_s for p in plan.predicted.per_device.values()]
    assert SFL().scenario_for(sc).training.aggregate and min(agg) > 0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cls", [EdgeSplit, SFL])
def test_hull_candidates_reach_the_optimum_over_all_closed_sets(seed, cls):
    """Only lower-hull sets of (A(S), D(S)) can be optimal for min-max bandwidth (no memory)."""
    sc = _serving(_instance(200 + seed, chain=False, nodes=7, n=3), "dedicated")
    hull_plan = cls().solve(sc)
    assert hull_plan.meta["candidates"] <= len(closed_sets(sc.graph))
    assert hull_plan.meta["exact_over"].startswith("every split")
    full = cls(candidates=closed_sets(sc.graph))
    assert hull_plan.objective == pytest.approx(_oracle(full, sc), rel=1e-9)


@pytest.mark.parametrize("seed", [7, 9, 11, 30, 52, 69])
def test_shared_kernel_fallbacks_against_brute(seed):
    """Instances the linearised Lagrangian test leaves open: the branch and bound alone and the
    MILP alone each reach the brute-force optimum; with neither the bound stays proven."""
    n, m, a, s, d, allowed = _random_rows(seed, (2, 5), (2, 4))
    want, _ = brute_minmax(a, s, d, allowed, server_share=True)
    open_ = server_minmax(a, d, s, allowed, None, budget=0)
    assert open_.termination == "time_limit" and "undecided" in open_.message  # fallbacks needed
    assert open_.bound <= want * (1 + 1e-9) <= open_.objective * (1 + 2e-9)
    for backend, budget in ((None, 200), (get_backend("highs"), 0)):
        out = server_minmax(a, d, s, allowed, backend, budget=budget)
        assert out.termination == "optimal" and not out.message
        assert out.objective == pytest.approx(want, rel=1e-8) and out.bound <= want * (1 + 1e-9)
