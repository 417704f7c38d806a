"""The builder, its option table, the re-pricers and the guard price weights tied across the cut.

GPT-2's ``transformer.wte`` / ``lm_head`` share one weight: a cut between them sends its gradient
each way once per iteration (``CutTable.tied_bytes``, tests/test_execute_tied.py measures it).
An exact solve over cuts that separate them must be ``optimal`` and verified (the guard re-prices
with ``evaluate()``, which adds the term), equal to the best plan found by enumeration, and the
fast pricers (option table, ``reprice``) must agree with ``evaluate()`` on such plans.
"""

import numpy as np
import pytest

from splitopt import Device, Link, Server, Training, zoo
from splitopt.costs import CutTable, device_phases
from splitopt.execute.examples import digits_scenario
from splitopt.graph import LayerGraph, Node
from splitopt.model import Problem
from splitopt.model.options import build_options
from splitopt.plan import DevicePlan, Plan, evaluate
from splitopt.pricing import DevicePlans, price_options
from splitopt.profiler import profile, toy
from splitopt.solving.reprice import SCALAR_UP_TO, reprice

GPT = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 8,
       "seq_len": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def graph():
    with toy.one_thread():
        model, ex = zoo.build("gpt2", batch_size=1, device="meta", **GPT)
        return profile(model, ex)


def test_an_exact_plan_over_tied_cuts_is_optimal_verified_and_the_enumerated_best(graph):
    # the chain prefixes with wte on the device and lm_head on the server (all but 3)
    sc = digits_scenario(1, graph=graph, batch_size=4, local_iters=3, bandwidth_hz=1e5)
    every = CutTable.chain(graph)
    table = CutTable(graph, every.masks[every.tied_bytes > 0])
    assert len(table) == len(every) - 3 and set(table.tied_bytes) == {50 * 16 * 4}
    p = Problem(sc, cuts=table, server_share=False)
    p.minimize(p.round_latency())
    res = p.solve()
    assert res.termination == "optimal" and res.verification.passed
    best = min(evaluate(sc, Plan((DevicePlan("dev0", s, 1.0),))).round_latency_s
               for s in table.sets())
    assert res.objective == pytest.approx(best, rel=1e-9)
    side = res.plan.devices[0].device_side
    ph = evaluate(sc, res.plan).per_device["dev0"]
    # planned bytes: activations and gradients per sample, the tied gradient each way per
    # iteration (3 x 3,200 B each way in all), the device part up and down (aggregation)
    chosen = CutTable.from_sets(graph, [side])
    bnd, w = float(chosen.boundary_bytes[0]), float(chosen.param_bytes[0])
    assert ph.comm_bytes == pytest.approx(3 * 2 * (4 * bnd + 3200) + 2 * w, rel=1e-12)
    assert res.plan.predicted.per_device["dev0"].comm_bytes == pytest.approx(ph.comm_bytes)


def test_without_the_tied_term_the_builder_would_pick_a_different_cut(graph):
    # the same problem on the graph with meta["tied"] removed chooses a cut that, priced as it
    # runs (with the tied traffic), is worse: the term changes the answer. A slow server: the
    # device computes up to ln_f (512 B per sample cross, and the tied gradients) or all but the
    # loss (the 1,600 B logits cross, nothing tied)
    sc = digits_scenario(1, graph=graph, batch_size=1, local_iters=3, bandwidth_hz=1e5)
    sc = sc.replace(server=sc.server.model_copy(update={"flops": 1e6}),
                    training=sc.training.model_copy(update={"aggregate": False}))
    blind_graph = LayerGraph(graph.nodes, graph.edges, graph.inputs, graph.output,
                             meta={k: v for k, v in graph.meta.items() if k != "tied"})
    blind = Problem(sc.replace(graph=blind_graph), server_share=False)
    blind.minimize(blind.round_latency())
    aware = Problem(sc, server_share=False)
    aware.minimize(aware.round_latency())
    a, b = aware.solve(), blind.solve()
    assert a.termination == b.termination == "optimal"
    chosen = [r.plan.devices[0].device_side for r in (a, b)]
    assert CutTable.from_sets(graph, chosen).tied_bytes.tolist() == [0.0, 3200.0]
    plan_b = Plan((DevicePlan("dev0", chosen[1], 1.0),))
    assert evaluate(sc, plan_b).round_latency_s > a.objective * (1 + 1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_option_table_and_reprice_equal_evaluate_on_tied_cuts(graph, seed):
    rng = np.random.default_rng(seed)
    n = SCALAR_UP_TO + 8  # the guard re-prices this fleet with reprice(), not evaluate()
    sc = digits_scenario(n, graph=graph, batch_size=4, local_iters=3,
                         snr_db=list(rng.uniform(0, 30, n)))
    sc = sc.replace(training=sc.training.model_copy(update={"aggregate": bool(seed % 2)}),
                    devices=tuple(d.model_copy(update={"power_compute_w": 2.0,
                                                       "power_tx_w": float(rng.uniform(0.1, 3))})
                                  for d in sc.devices))
    table = CutTable.chain(graph)
    options = build_options(sc, table, [2, 8], False)
    option = rng.integers(0, options.n_options, n)
    beta = rng.dirichlet(np.ones(n)) * 0.999
    phi = rng.dirichlet(np.ones(n)) * 0.999
    names = [d.name for d in sc.devices]
    plan = Plan(DevicePlans(table, options).build(names, option, beta, phi),
                rounds=sc.training.rounds)
    ref = evaluate(sc, plan)
    fast = price_options(sc, options, names, option, beta, phi, float(sc.training.rounds))
    again = reprice(sc, plan)
    assert fast.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
    assert again.round_latency_s == pytest.approx(ref.round_latency_s, rel=1e-12)
    for name, ph in ref.per_device.items():
        assert ph.energy_j > 0
        assert fast.per_device[name].to_dict() == pytest.approx(ph.to_dict(), rel=1e-12)
        for key in ("round_s", "memory_bytes", "energy_j", "comm_bytes"):
            assert again.values[key][again.row[name]] == pytest.approx(getattr(ph, key),
                                                                       rel=1e-12)


def test_device_phases_of_a_tied_cut_by_hand():
    # x -> a -> y and x -> c -> y; a and c share a 100 B weight (a uses it first). S = {x, c}:
    # c's copy is on the device (held: counted in W(S)), a's on the server (crossing)
    g = LayerGraph([Node("x", 0, 0, 10, 0, "input"), Node("a", 100, None, 20, 100, "op"),
                    Node("c", 100, None, 30, 0, "op"), Node("y", 0, None, 4, 0, "output")],
                   [("x", "a"), ("x", "c"), ("a", "y"), ("c", "y")], ["x"], "y",
                   meta={"tied": [["a", "c", 100.0]]})
    s = {"x", "c"}
    t = CutTable.from_sets(g, [s])
    assert t.tied_bytes.tolist() == [100.0] and t.param_bytes.tolist() == [100.0]
    dev = Device(name="d", flops=100, spectral_eff_up=1, spectral_eff_dn=1, power_compute_w=2,
                 power_tx_w=3)
    ph = device_phases(g, s, dev, Server(flops=1e21), Link(800, 1600),
                       Training(batch_size=2, local_iters=3, aggregate=True, optimizer_copies=1))
    per_iter = 2 * (10 + 30) + 100  # x feeds a, c feeds y (per sample); the tied gradient
    assert ph.uplink_s == pytest.approx(3 * 8 * per_iter / 800)  # 5.4 s
    assert ph.downlink_s == pytest.approx(3 * 8 * per_iter / 1600)  # 2.7 s
    assert ph.comm_bytes == 3 * 2 * per_iter + 2 * 100  # + W(S) up and down: the held copy
    assert ph.aggregation_s == pytest.approx(8 * 100 * (1 / 800 + 1 / 1600))
    assert ph.memory_bytes == (2 + 1) * 100 + 2 * (10 + 30)
    # compute: 2 W x 3 x 2 x 300 FLOPs / 100; transmit: 3 W x (uplink + the held copy up)
    assert ph.energy_j == pytest.approx(2 * 3 * 2 * 300 / 100 + 3 * (5.4 + 8 * 100 / 800))
