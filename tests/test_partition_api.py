"""partition(): the Plan contract, the phase breakdown, measured times, and clear errors."""

import numpy as np
import pytest

import splitopt
from splitopt import (
    Device,
    GraphError,
    InputError,
    LayerGraph,
    Link,
    Node,
    Server,
    Training,
    device_phases,
    iteration_delay,
)
from splitopt.partitioning import METHODS, partition
from splitopt.partitioning.problem import graph_arrays, train_seconds
from splitopt.partitioning.synthetic import resnet_like
from splitopt.testing import random_dag

DEV = Device(name="phone", flops=2e9, spectral_eff_up=2, spectral_eff_dn=3, power_compute_w=3,
             power_tx_w=0.4, workspace_bytes=1e6, device_class="phone")
SRV = Server(flops=5e13)
LINK = Link(2e7, 5e7)


@pytest.fixture(scope="module")
def small():
    return random_dag(np.random.default_rng(0), 12, n_inputs=2)


def test_plan_contract(small):
    p = splitopt.partition(small, DEV, SRV, LINK, batch=4)
    assert p.method == "maxflow" and p.status == "optimal"
    assert p.objective == p.bound == pytest.approx(p.meta["phases"]["iteration_s"], rel=1e-12)
    (dp,) = p.devices
    assert dp.device == "phone" and dp.bandwidth_share == 1.0 and dp.batch_size == 4
    assert p.meta["boundary"] == small.boundary(dp.device_side)
    assert p.meta["device_side_size"] == len(dp.device_side)


@pytest.mark.parametrize("labels", ["server", "device"])
def test_phases_equal_the_reference_breakdown(labels):
    rng = np.random.default_rng(4)
    for _ in range(15):
        g = random_dag(rng, int(rng.integers(1, 10)), n_inputs=2)
        dev = Device(name="d", flops=float(10 ** rng.uniform(8, 13)), spectral_eff_up=2,
                     spectral_eff_dn=1, power_compute_w=2, power_tx_w=0.3, workspace_bytes=10)
        b = int(rng.integers(1, 9))
        p = partition(g, dev, SRV, LINK, batch=b, labels=labels)
        ref = device_phases(g, p.devices[0].device_side, dev, SRV, LINK,
                            Training(batch_size=b, local_iters=1, aggregate=False), batch=b)
        for key, val in ref.to_dict().items():
            assert p.meta["phases"][key] == pytest.approx(val, rel=1e-12, abs=1e-300), key


def test_labels_on_device_may_keep_everything_local():
    g = LayerGraph([Node("x", out_bytes=1e9, kind="input"), Node("a", fwd_flops=1.0, out_bytes=1e9),
                    Node("y", fwd_flops=1.0, kind="output")], [("x", "a"), ("a", "y")], ["x"], "y")
    fast = Device(name="d", flops=1e12, spectral_eff_up=1, spectral_eff_dn=1)
    local = partition(g, fast, SRV, Link(1e3, 1e3), labels="device")
    assert local.devices[0].device_side == frozenset(g.names)
    vanilla = partition(g, fast, SRV, Link(1e3, 1e3))
    assert "y" not in vanilla.devices[0].device_side
    assert vanilla.objective > local.objective


def test_measured_times_replace_flops_node_by_node():
    g = resnet_like(200, seed=3)
    times = {n: (1e-3 * (i % 7), 2e-3) for i, n in enumerate(g.names[::3])}
    gm = g.with_times("phone", times)
    np.testing.assert_array_equal(train_seconds(gm, "phone", DEV.flops),
                                  gm.train_seconds("phone", DEV.flops))
    p = partition(gm, DEV, SRV, LINK)
    assert p.objective == pytest.approx(
        iteration_delay(gm, p.devices[0].device_side, DEV, SRV, LINK), rel=1e-9)
    assert p.objective != pytest.approx(partition(g, DEV, SRV, LINK).objective, rel=1e-6)


def test_measured_times_of_partly_measured_blocks():
    # a contracted block whose members are partly measured carries unmeasured FLOPs
    g = resnet_like(200, seed=1)
    gm = g.with_times("phone", {n: (1e-4, 2e-4) for n in g.names[1::2]}).contract()
    assert any(t.unmeasured_fwd_flops > 0 for n in gm.nodes for t in n.times.values())
    np.testing.assert_allclose(train_seconds(gm, "phone", DEV.flops),
                               gm.train_seconds("phone", DEV.flops), rtol=1e-15)
    p = partition(gm, DEV, SRV, LINK)
    assert p.objective == pytest.approx(
        iteration_delay(gm, p.devices[0].device_side, DEV, SRV, LINK), rel=1e-9)


def test_graph_arrays_are_cached_and_match_the_graph(small):
    ar = graph_arrays(small)
    assert graph_arrays(small) is ar
    pairs = {(small.names[u], small.names[w]) for u, w in zip(ar.src, ar.dst, strict=True)}
    assert pairs == set(small.edges)


def test_inputs_are_not_mutated(small):
    before = small.to_json()
    for m in METHODS:
        partition(small, DEV, SRV, LINK, method=m)
    assert small.to_json() == before


# ---------------------------------------------------------------- bad input
def test_unknown_method(small):
    with pytest.raises(InputError, match="method.*one of.*maxflow"):
        partition(small, DEV, SRV, LINK, method="fastest")


def test_no_path_from_input_to_output():
    g = LayerGraph([Node("x", kind="input"), Node("a"), Node("b"), Node("y", kind="output")],
                   [("x", "a"), ("b", "y")], ["x"], "y")
    with pytest.raises(GraphError, match="path from an input to the output 'y'"):
        partition(g, DEV, SRV, LINK)


def test_zero_speed_and_rate(small):
    bad_dev = Device.model_construct(**{**DEV.model_dump(), "flops": 0.0})
    with pytest.raises(InputError, match=r"device.flops: got 0.0; allowed: a finite number > 0"):
        partition(small, bad_dev, SRV, LINK)
    with pytest.raises(InputError, match="server.flops"):
        partition(small, DEV, Server.model_construct(name="s", flops=0.0, device_class=None), LINK)
    with pytest.raises(InputError, match="link.up_bps"):
        Link(0.0, 1.0)


def test_bad_batch_labels_and_types(small):
    with pytest.raises(InputError, match="batch.*integer >= 1"):
        partition(small, DEV, SRV, LINK, batch=0)
    with pytest.raises(InputError, match="labels.*'server'"):
        partition(small, DEV, SRV, LINK, labels="client")
    with pytest.raises(InputError, match="graph.*LayerGraph"):
        partition({"nodes": []}, DEV, SRV, LINK)


def test_inputs_after_the_output():
    # an input that feeds a dead branch, ordered after the output: no topological prefix exists
    g = LayerGraph([Node("x", kind="input", out_bytes=10), Node("a", fwd_flops=5e9, out_bytes=3),
                    Node("y", kind="output"), Node("z", kind="input", out_bytes=7),
                    Node("b", fwd_flops=1e9)], [("x", "a"), ("a", "y"), ("z", "b")],
                   ["x", "z"], "y")
    assert g.names.index("z") > g.names.index("y")
    best = partition(g, DEV, SRV, LINK, method="brute").objective
    for m in ("maxflow", "blockwise", "milp"):
        assert partition(g, DEV, SRV, LINK, method=m).objective == pytest.approx(best, rel=1e-9)
    with pytest.raises(InputError, match="every input comes before the output.*'maxflow'"):
        partition(g, DEV, SRV, LINK, method="chain")


def test_brute_refuses_large_graphs():
    g = random_dag(np.random.default_rng(1), 30)
    with pytest.raises(InputError, match=r"at most 20 nodes .* Use method='maxflow'"):
        partition(g, DEV, SRV, LINK, method="brute")


def test_benchmark_baseline_cut_is_optimal():
    # the networkx route of benchmarks/partition.py cuts the same graph to the same optimum
    from splitopt.benchmarks.partition import networkx_cut

    from splitopt.partitioning.problem import iteration_problem
    from splitopt.partitioning.synthetic import branching_dag

    rng = np.random.default_rng(6)
    for flops in (1e8, 1e11, 1e14):  # both directions of the mirrored solve
        g = branching_dag(rng, 10, n_inputs=2)
        dev = Device(name="d", flops=flops, spectral_eff_up=1, spectral_eff_dn=1)
        prob = iteration_problem(g, dev, SRV, LINK)
        best = partition(g, dev, SRV, LINK, method="brute").objective
        assert prob.price(networkx_cut(prob)) == pytest.approx(best, rel=1e-9)


def test_connectivity_matches_a_plain_search():
    """graph_arrays().connected, with and without sources besides the inputs."""
    rng = np.random.default_rng(8)
    for _ in range(200):
        n = int(rng.integers(3, 12))
        names = [f"v{i}" for i in range(n)]
        extra = rng.random(n) < 0.3  # nodes that may be left without a predecessor
        edges = [(names[int(rng.integers(0, w))], names[w]) for w in range(1, n - 1)
                 if not extra[w] and rng.random() < 0.9]
        edges += [(names[u], names[-1]) for u in range(1, n - 1) if rng.random() < 0.3]
        nodes = [Node(names[0], kind="input")] + [Node(x) for x in names[1:]]
        g = LayerGraph(nodes, sorted(set(edges)), [names[0]], names[-1])
        seen, stack = {names[0]}, [names[0]]
        while stack:
            for w in g.succs(stack.pop()):
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        assert graph_arrays(g).connected == (names[-1] in seen)


@pytest.mark.parametrize("cold", [False, True])
def test_breakdown_benchmark_runs_the_partition_stages(cold, capsys):
    from splitopt.benchmarks.partition_breakdown import breakdown

    breakdown(60, 5, cold, 1)
    out = capsys.readouterr().out
    assert "guard (names -> split test, re-price)" in out and "raw: add arcs + solve" in out
    assert ("cold: s-t structure" in out) == cold and "sum splitopt / sum raw" in out
