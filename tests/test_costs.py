"""The reference cost model against hand-computed numbers."""

import math

import numpy as np
import pytest

from splitopt import (
    Channel,
    CutTable,
    Device,
    DevicePlan,
    InputError,
    LayerGraph,
    Link,
    Node,
    Plan,
    Scenario,
    Server,
    Training,
    evaluate,
    iteration_delay,
    round_terms,
)
from splitopt.costs import combine_rounds


@pytest.fixture
def three():
    # x -> a -> y : input, one layer, the loss
    nodes = [Node("x", 0, 0, out_bytes=100, kind="input"),
             Node("a", fwd_flops=1000, bwd_flops=2000, out_bytes=50, param_bytes=40),
             Node("y", fwd_flops=10, bwd_flops=20, out_bytes=4, kind="output")]
    return LayerGraph(nodes, [("x", "a"), ("a", "y")], ["x"], "y")


def test_iteration_delay_hand_computed(three):
    dev = Device(name="d", flops=100.0, spectral_eff_up=1, spectral_eff_dn=1)
    srv = Server(flops=1000.0)
    link = Link(up_bps=800.0, dn_bps=1600.0)
    # S = {x, a}: device 3000/100 = 30 s, server 30/1000 = 0.03 s, boundary a: 50 B = 400 bit
    expected = 3000 / 100 + 30 / 1000 + 400 / 800 + 400 / 1600
    assert iteration_delay(three, {"x", "a"}, dev, srv, link) == pytest.approx(expected, rel=1e-12)
    # batch multiplies everything
    got = iteration_delay(three, {"x", "a"}, dev, srv, link, batch=4)
    assert got == pytest.approx(4 * expected)
    # S = {x}: the input crosses: 100 B
    exp_x = 3030 / 1000 + 800 / 800 + 800 / 1600
    assert iteration_delay(three, {"x"}, dev, srv, link) == pytest.approx(exp_x, rel=1e-12)


def test_round_memory_energy_hand_computed(three):
    dev = Device(name="d", flops=100.0, spectral_eff_up=2, spectral_eff_dn=4, power_compute_w=3,
                 power_tx_w=0.5, workspace_bytes=7)
    sc = Scenario(three, [dev], Server(flops=1000.0),
                  Channel(bandwidth_up_hz=400, bandwidth_dn_hz=400),
                  Training(batch_size=2, local_iters=3, optimizer_copies=1, aggregate=True))
    plan = Plan((DevicePlan("d", frozenset({"x", "a"}), 1.0),))
    ph = evaluate(sc, plan).per_device["d"]
    r_up, r_dn = 400 * 2, 400 * 4
    t_iter = 2 * 30 + 2 * 0.03 + 2 * 400 / r_up + 2 * 400 / r_dn
    t_agg = 8 * 40 * (1 / r_up + 1 / r_dn)
    assert ph.round_s == pytest.approx(3 * t_iter + t_agg, rel=1e-12)
    assert ph.memory_bytes == pytest.approx(3 * 40 + 2 * (100 + 50) + 7)
    assert ph.energy_j == pytest.approx(3 * (3 * 60) + 0.5 * (3 * 800 / r_up + 320 / r_up))
    # the vectorised terms agree with the scalar path
    rt = round_terms(sc.devices, sc.server, sc.channel, sc.training, CutTable.chain(three))
    assert rt.round_time(1.0)[0, 1] == pytest.approx(ph.round_s, rel=1e-12)
    assert rt.mem[0, 1] == pytest.approx(ph.memory_bytes)
    assert (rt.e_comp + rt.e_tx)[0, 1] == pytest.approx(ph.energy_j, rel=1e-12)


def test_fl_mode_pays_whole_model(three):
    dev = Device(name="d", flops=100.0, spectral_eff_up=1, spectral_eff_dn=1)
    sc = Scenario(three, [dev], Server(flops=1e9),
                  Channel(bandwidth_up_hz=100, bandwidth_dn_hz=100),
                  Training(batch_size=1, aggregate=False, labels="device"))
    ph = evaluate(sc, Plan((DevicePlan("d", frozenset(), 1.0, mode="fl"),))).per_device["d"]
    assert ph.round_s == pytest.approx(3030 / 100 + 8 * 40 * (2 / 100), rel=1e-12)


def test_round_combination():
    assert combine_rounds([1, 2, 3], ["split"] * 3, "parallel") == 3
    assert combine_rounds([1, 2, 3], ["split"] * 3, "sequential") == 6
    assert combine_rounds([5, 2, 2], ["fl", "split", "split"], "sequential") == 5
    assert combine_rounds([1, 2, 2], ["fl", "split", "split"], "sequential") == 4


def test_shares_over_one_rejected(three):
    dev = [Device(name=f"d{i}", flops=1.0, spectral_eff_up=1, spectral_eff_dn=1) for i in range(2)]
    sc = Scenario(three, dev, Server(flops=1.0), Channel(bandwidth_up_hz=1, bandwidth_dn_hz=1))
    plan = Plan(tuple(DevicePlan(f"d{i}", frozenset({"x"}), 0.6) for i in range(2)))
    with pytest.raises(InputError, match="bandwidth_shares.*sum <= 1"):
        evaluate(sc, plan)


def test_zero_speed_device_rejected():
    with pytest.raises(ValueError, match="flops"):
        Device(name="d", flops=0.0, spectral_eff_up=1, spectral_eff_dn=1)


def test_measured_times_replace_flops(three):
    g = three.with_times("fast", {"a": (0.5, 1.0)})
    dev = Device(name="d", flops=100.0, spectral_eff_up=1, spectral_eff_dn=1, device_class="fast")
    t = CutTable.chain(g).dev_seconds(dev)
    assert t[1] == pytest.approx(1.5)
    assert math.isclose(CutTable.chain(three).dev_seconds(dev)[1], 30.0)
    assert np.all(np.isfinite(t))
