"""Plans: JSON round trip, and evaluate() against a hand computation with an FL-mode device."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _corrupt import corrupt, json_values
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import (
    Channel,
    Device,
    DevicePlan,
    GraphError,
    InputError,
    LayerGraph,
    Node,
    Plan,
    Scenario,
    ScenarioError,
    Server,
    Training,
    evaluate,
)
from splitopt.plan import uniform_plan
from splitopt.testing import random_dag, random_scenario


def three() -> LayerGraph:
    # x -> a -> y: the input, one layer, the loss
    nodes = [Node("x", 0, 0, out_bytes=100, kind="input"),
             Node("a", fwd_flops=1000, bwd_flops=2000, out_bytes=50, param_bytes=40),
             Node("y", fwd_flops=10, bwd_flops=20, out_bytes=4, kind="output")]
    return LayerGraph(nodes, [("x", "a"), ("a", "y")], ["x"], "y")


def two_device_scenario(schedule: str = "sequential") -> Scenario:
    devs = [Device(name="sl", flops=100.0, spectral_eff_up=2, spectral_eff_dn=4, power_compute_w=3,
                   power_tx_w=0.5),
            Device(name="fl", flops=200.0, spectral_eff_up=1, spectral_eff_dn=1, power_compute_w=2,
                   power_tx_w=1.0)]
    return Scenario(three(), devs, Server(flops=1000.0),
                    Channel(bandwidth_up_hz=400, bandwidth_dn_hz=400),
                    Training(batch_size=2, local_iters=3, optimizer_copies=1, labels="device",
                             schedule=schedule, aggregate=True))


def two_device_plan() -> Plan:
    return Plan((DevicePlan("sl", frozenset({"x", "a"}), 0.5),
                 DevicePlan("fl", frozenset(), 0.5, mode="fl")), rounds=5, method="hand")


def test_evaluate_hand_computed_fl_and_split_sequential():
    costs = evaluate(two_device_scenario(), two_device_plan())
    sl, fl = costs.per_device["sl"], costs.per_device["fl"]
    # split device: rates r = beta * B * s
    r_up, r_dn = 0.5 * 400 * 2, 0.5 * 400 * 4                    # 400, 800 bit/s
    t_dev, t_srv = 2 * 3000 / 100, 2 * 30 / 1000                # 60 s, 0.06 s
    t_up, t_dn = 2 * 8 * 50 / r_up, 2 * 8 * 50 / r_dn           # 2 s, 1 s
    t_agg = 8 * 40 * (1 / r_up + 1 / r_dn)                      # 1.2 s
    assert sl.iteration_s == pytest.approx(63.06, rel=1e-12)
    assert sl.device_compute_s == pytest.approx(3 * t_dev)
    assert sl.uplink_s == pytest.approx(3 * t_up)
    assert sl.server_compute_s == pytest.approx(3 * t_srv)
    assert sl.downlink_s == pytest.approx(3 * t_dn)
    assert sl.aggregation_s == pytest.approx(t_agg, rel=1e-12)
    assert sl.round_s == pytest.approx(3 * 63.06 + 1.2, rel=1e-12)              # 190.38 s
    assert sl.memory_bytes == pytest.approx((2 + 1) * 40 + 2 * (100 + 50))      # 420 B
    assert sl.energy_j == pytest.approx(3 * 180 + 0.5 * (3 * t_up + 320 / r_up))  # 543.4 J
    assert sl.comm_bytes == pytest.approx(3 * 2 * 2 * 50 + 2 * 40)             # 680 B
    # FL device: whole model local, 3 iterations x batch 2 x 3030 FLOPs at 200 FLOP/s, then W(V)
    r = 0.5 * 400 * 1
    assert fl.server_compute_s == 0 and fl.uplink_s == 0 and fl.downlink_s == 0
    assert fl.round_s == pytest.approx(3 * 2 * 3030 / 200 + 8 * 40 * 2 / r, rel=1e-12)  # 94.1 s
    assert fl.memory_bytes == pytest.approx(3 * 40 + 2 * (100 + 50 + 4))         # 428 B
    assert fl.energy_j == pytest.approx(2 * 90.9 + 1.0 * 320 / r)                 # 183.4 J
    # sequential schedule: split devices take turns, FL devices run beside them
    assert costs.round_latency_s == pytest.approx(max(190.38, 94.1), rel=1e-12)
    assert costs.rounds == 5 and costs.total_delay_s == pytest.approx(5 * 190.38, rel=1e-12)


def test_sequential_sums_split_devices_parallel_takes_max():
    sc = two_device_scenario()
    third = Device(name="sl2", flops=100.0, spectral_eff_up=2, spectral_eff_dn=4)
    plan = Plan((DevicePlan("sl", frozenset({"x", "a"}), 0.25),
                 DevicePlan("sl2", frozenset({"x", "a"}), 0.25),
                 DevicePlan("fl", frozenset(), 0.5, mode="fl")))
    seq = evaluate(sc.replace(devices=(*sc.devices, third)), plan)
    t = seq.per_device
    assert seq.round_latency_s == pytest.approx(max(t["sl"].round_s + t["sl2"].round_s,
                                                    t["fl"].round_s))
    par_sc = sc.replace(devices=(*sc.devices, third),
                        training=sc.training.model_copy(update={"schedule": "parallel"}))
    par = evaluate(par_sc, plan)
    assert par.round_latency_s == pytest.approx(max(r.round_s for r in par.per_device.values()))


def test_unselected_devices_and_server_shares():
    sc = two_device_scenario()
    plan = Plan((DevicePlan("sl", frozenset({"x", "a"}), 1.0, server_share=0.5),
                 DevicePlan("fl", frozenset(), 0.5, mode="fl", selected=False)))
    costs = evaluate(sc, plan)
    assert set(costs.per_device) == {"sl"}
    assert costs.per_device["sl"].server_compute_s == pytest.approx(3 * 2 * 30 / 1000 / 0.5)


def test_plan_errors():
    sc = two_device_scenario()
    with pytest.raises(ScenarioError, match="device: got 'ghost'"):
        evaluate(sc, Plan((DevicePlan("ghost", frozenset({"x"}), 0.5),)))
    with pytest.raises(InputError, match=r"plan devices: got \['sl'\]; allowed: each device at "
                                         r"most once"):
        evaluate(sc, Plan((DevicePlan("sl", frozenset({"x"}), 0.3),) * 2))
    with pytest.raises(InputError, match=r"plan bandwidth_shares: got 1\.2; allowed: a sum <= 1"):
        evaluate(sc, Plan((DevicePlan("sl", frozenset({"x"}), 0.6),
                           DevicePlan("fl", frozenset(), 0.6, mode="fl"))))
    with pytest.raises(InputError, match=r"plan server_shares: got 1\.5"):
        evaluate(sc, Plan((DevicePlan("sl", frozenset({"x"}), 0.5, server_share=0.9),
                           DevicePlan("fl", frozenset({"x"}), 0.5, server_share=0.6))))
    with pytest.raises(GraphError, match="predecessor-closed"):
        evaluate(sc, Plan((DevicePlan("sl", frozenset({"x", "y"}), 0.5),)))
    with pytest.raises(InputError, match=r"device 'sl'\.bandwidth_share: got 0; allowed: a number "
                                         r"in \(0, 1\]"):
        DevicePlan("sl", frozenset(), 0)
    with pytest.raises(InputError, match=r"bandwidth_share: got nan"):
        DevicePlan("sl", frozenset(), float("nan"))
    with pytest.raises(InputError, match=r"server_share: got True"):
        DevicePlan("sl", frozenset(), 0.5, server_share=True)
    with pytest.raises(InputError,
                       match=r"batch_size: got 2\.5; allowed: an integer in \[1, 1000000\]"):
        DevicePlan("sl", frozenset(), 0.5, batch_size=2.5)
    with pytest.raises(InputError, match=r"mode: got 'sfl'; allowed: 'split' or 'fl'"):
        DevicePlan("sl", frozenset(), 0.5, mode="sfl")  # type: ignore[arg-type]
    assert DevicePlan("sl", frozenset(), np.float32(0.5), batch_size=np.int64(4)).batch_size == 4


def test_plan_json_round_trip(tmp_path):
    sc = two_device_scenario()
    plan = Plan(two_device_plan().devices, rounds=5, status="optimal", objective=190.38,
                bound=190.0, method="hand", meta={"note": "x"})
    doc = plan.to_dict(sc)
    assert doc["format"] == "splitopt.plan" and doc["gap"] == pytest.approx(0.38 / 190.38)
    assert doc["devices"][0]["cut"] == ["a"] and doc["devices"][0]["device_side"] == ["a", "x"]
    assert doc["predicted"]["round_latency_s"] == pytest.approx(190.38)
    back = Plan.from_dict(json.loads(json.dumps(doc)))
    assert back == plan
    plan.save(tmp_path / "p.json", sc)
    assert Plan.load(tmp_path / "p.json") == plan
    # a priced plan round-trips to the unpriced plan: predictions are recomputed, never trusted
    priced = plan.priced(sc)
    assert priced.predicted is not None and Plan.from_dict(priced.to_dict()) == plan
    assert evaluate(sc, back) == priced.predicted


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 5))
def test_random_plans_round_trip(seed, k):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, int(rng.integers(1, 8)))
    sc = random_scenario(rng, g, k)
    sides = [g.chain_prefixes()[int(rng.integers(len(g.chain_prefixes())))] for _ in range(k)]
    shares = rng.dirichlet(np.ones(k))
    devs = tuple(DevicePlan(d.name, s, float(b), float(rng.uniform(0.1, 1)) if k == 1 else None,
                            int(rng.integers(1, 9)) if rng.random() < 0.5 else None)
                 for d, s, b in zip(sc.devices, sides, shares, strict=True))
    plan = Plan(devs, rounds=float(rng.integers(1, 50)), status="feasible",
                objective=float(rng.random()), bound=None, method="random")
    back = Plan.from_dict(json.loads(json.dumps(plan.to_dict(sc))))
    assert back == plan
    assert evaluate(sc, back) == evaluate(sc, plan)


def test_plan_document_errors(tmp_path):
    good = two_device_plan().to_dict()
    with pytest.raises(InputError, match="format: missing; allowed: 'splitopt.plan'"):
        Plan.from_dict({k: v for k, v in good.items() if k != "format"})
    with pytest.raises(InputError, match="devices: missing; allowed: a list of device plans"):
        Plan.from_dict({k: v for k, v in good.items() if k != "devices"})
    bad = json.loads(json.dumps(good))
    del bad["devices"][1]["bandwidth_share"]
    with pytest.raises(InputError, match=r"devices\[1\]\.bandwidth_share: missing; allowed: a "
                                         r"required field"):
        Plan.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["devices"][0]["device_side"] = "xa"
    with pytest.raises(InputError, match=r"devices\[0\]\.device_side: got 'xa'; allowed: a list"):
        Plan.from_dict(bad)
    bad["devices"][0] = 3
    with pytest.raises(InputError, match=r"devices\[0\]: got 3; allowed: a device plan object"):
        Plan.from_dict(bad)
    with pytest.raises(InputError, match="plan document: got 'list'"):
        Plan.from_dict([])  # type: ignore[arg-type]
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(InputError, match="plan file: got .*; allowed: valid JSON"):
        Plan.load(tmp_path / "p.json")
    with pytest.raises(InputError, match="plan file: .*allowed: an existing JSON file"):
        Plan.load(tmp_path / "absent.json")


def test_uniform_plan():
    sc = two_device_scenario("parallel")
    plan = uniform_plan(sc, {"x", "a"})  # a plain set is one side for every device
    assert [d.bandwidth_share for d in plan.devices] == [0.5, 0.5]
    assert all(d.device_side == {"x", "a"} for d in plan.devices)
    assert plan.predicted == evaluate(sc, plan) and plan.method == "uniform"
    per = uniform_plan(sc, [frozenset({"x"}), frozenset({"x", "a"})])
    assert per.devices[0].device_side == {"x"}
    with pytest.raises(InputError, match="device_sides: got '1 entries'; allowed: one set of node "
                                         "names, or a list of 2 sets"):
        uniform_plan(sc, [frozenset({"x"})])
    assert math.isfinite(plan.predicted.total_delay_s)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4), labels=st.sampled_from(["server",
                                                                                      "device"]),
       aggregate=st.booleans(), iters=st.integers(1, 4), measured=st.booleans())
def test_evaluate_agrees_with_round_terms(seed, k, labels, aggregate, iters, measured):
    """The scalar path (evaluate -> device_phases) equals the vectorised one (round_terms)."""
    from splitopt import CutTable, round_terms

    rng = np.random.default_rng(seed)
    g = random_dag(rng, int(rng.integers(1, 9)), n_inputs=int(rng.integers(1, 3)))
    if measured:  # measured times for one device class on some nodes, and for the server
        g = g.with_times("m", {n: (float(rng.exponential(1e-3)), float(rng.exponential(1e-3)))
                               for n in g.names if rng.random() < 0.5})
    sc = random_scenario(rng, g, k, classes=2, training=Training(
        batch_size=int(rng.integers(1, 33)), local_iters=iters, labels=labels,
        aggregate=aggregate, optimizer_copies=int(rng.integers(0, 3))))
    if measured:
        sc = sc.replace(devices=(sc.devices[0].model_copy(update={"device_class": "m"}),
                                 *sc.devices[1:]),
                        server=sc.server.model_copy(update={"device_class": "m"}))
    table = CutTable.chain(g, labels_on_device=labels == "device")
    batch = rng.integers(1, 17, size=k)
    beta, phi = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    pick = rng.integers(0, len(table), size=k)
    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, table, batch=batch)
    T = rt.round_time(beta, phi)
    sets = table.sets()
    plan = Plan(tuple(DevicePlan(d.name, sets[c], float(beta[i]), float(phi[i]), int(batch[i]),
                                 "fl" if sets[c] == set(g.names) else "split")
                      for i, (d, c) in enumerate(zip(sc.devices, pick, strict=True))))
    costs = evaluate(sc, plan)
    for i, d in enumerate(sc.devices):
        ph, c = costs.per_device[d.name], pick[i]
        assert ph.round_s == pytest.approx(T[i, c], rel=1e-9)
        assert ph.memory_bytes == pytest.approx(rt.mem[i, c], rel=1e-9)
        assert ph.energy_j == pytest.approx(rt.e_comp[i, c] + rt.e_tx[i, c] / beta[i], rel=1e-9)


def test_cut_table_rejects_invalid_sets():
    from splitopt import CutTable

    g = random_dag(np.random.default_rng(2), 5, n_inputs=2)
    ok = CutTable.from_sets(g, [g.pred_closure({"n2"}), frozenset(g.names)])
    assert len(ok) == 2
    with pytest.raises(GraphError, match=r"sets\[1\]: .*allowed: a predecessor-closed set"):
        CutTable.from_sets(g, [g.pred_closure({"n1"}), {"in0", "in1", "n3"}])
    with pytest.raises(GraphError, match=r"sets\[0\]: .*allowed: a set holding every input node"):
        CutTable.from_sets(g, [{"in0"}])
    with pytest.raises(GraphError, match="node name: got 'zz'"):
        CutTable.from_sets(g, [{"zz"}])


_JSON = json_values("x", "a", "y", "sl", "fl", "split")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_corrupted_plan_gives_input_error_or_prices(data):
    """A corrupted plan document is read and priced, or refused with one InputError."""
    sc = two_device_scenario()
    doc = json.loads(json.dumps(two_device_plan().to_dict()))
    corrupt(data, doc, _JSON)
    try:
        evaluate(sc, Plan.from_dict(doc))
    except InputError as err:
        assert err.field and err.allowed and "\n" not in str(err)
