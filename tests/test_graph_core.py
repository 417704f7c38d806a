"""LayerGraph structure on a hand-made ResNet-like graph: order, closure, boundary, blocks."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from splitopt import (
    Channel,
    CutTable,
    Device,
    GraphError,
    LayerGraph,
    Node,
    Server,
    Training,
    round_terms,
)
from splitopt.graph import block_key
from splitopt.testing import random_dag


def _basic_block(prefix: str, inp: str, down: bool = False) -> tuple[list[Node], list[tuple]]:
    """conv1 -> bn1 -> relu -> conv2 -> bn2 -> add(skip) -> relu_1, as torchvision's BasicBlock."""
    p = prefix
    nodes = [Node(f"{p}.conv1", 1e6, 2e6, 400, 1000, "Conv2d"),
             Node(f"{p}.bn1", 1e3, 2e3, 400, 8),
             Node(f"{p}.relu", 1e2, 1e2, 400, 0, "ReLU"),
             Node(f"{p}.conv2", 2e6, 4e6, 400, 2000, "Conv2d"), Node(f"{p}.bn2", 1e3, 2e3, 400, 8),
             Node(f"{p}.add", 1e2, 1e2, 400, 0, "add"),
             Node(f"{p}.relu_1", 1e2, 1e2, 400, 0, "ReLU")]
    chain = [n.name for n in nodes]
    edges = [(inp, chain[0])] + list(itertools.pairwise(chain[:-2])) + [(chain[4], chain[5]),
                                                                      (chain[5], chain[6])]
    if down:  # the skip path is a 1x1 conv + bn: two more nodes inside the block
        nodes += [Node(f"{p}.downsample.0", 5e5, 1e6, 400, 500, "Conv2d"),
                  Node(f"{p}.downsample.1", 1e3, 2e3, 400, 8)]
        edges += [(inp, f"{p}.downsample.0"), (f"{p}.downsample.0", f"{p}.downsample.1"),
                  (f"{p}.downsample.1", f"{p}.add")]
    else:
        edges.append((inp, f"{p}.add"))
    return nodes, edges


def resnet_like() -> LayerGraph:
    """x -> stem -> layer1.0 -> layer1.1 -> layer2.0 (downsample) -> avgpool -> fc -> loss."""
    nodes = [Node("x", 0, 0, 600, 0, "input"), Node("conv1", 3e6, 6e6, 800, 3000, "Conv2d"),
             Node("bn1", 1e3, 2e3, 800, 16), Node("relu", 1e2, 1e2, 800, 0, "ReLU"),
             Node("maxpool", 1e3, 1e3, 400, 0, "MaxPool2d")]
    edges = [("x", "conv1"), ("conv1", "bn1"), ("bn1", "relu"), ("relu", "maxpool")]
    prev = "maxpool"
    for prefix, down in (("layer1.0", False), ("layer1.1", False), ("layer2.0", True)):
        ns, es = _basic_block(prefix, prev, down)
        nodes, edges, prev = nodes + ns, edges + es, f"{prefix}.relu_1"
    nodes += [Node("avgpool", 1e2, 1e2, 64, 0, "AdaptiveAvgPool2d"),
              Node("fc", 1e4, 2e4, 40, 2600, "Linear"), Node("loss", 50, 50, 4, 0, "output")]
    edges += [(prev, "avgpool"), ("avgpool", "fc"), ("fc", "loss")]
    return LayerGraph(nodes, edges, ["x"], "loss", name="resnet_like")


@pytest.fixture(scope="module")
def g() -> LayerGraph:
    return resnet_like()


def _nx(graph: LayerGraph) -> nx.DiGraph:
    d = nx.DiGraph()
    d.add_nodes_from(graph.names)
    d.add_edges_from(graph.edges)
    return d


def test_topological_order(g):
    pos = {n: i for i, n in enumerate(g.names)}
    assert all(pos[u] < pos[w] for u, w in g.edges)
    assert g.names[0] == "x" and g.names[-1] == "loss"
    # the order does not depend on the order edges are listed, and a shuffled node list still
    # yields a valid topological order
    rng = np.random.default_rng(1)
    nodes = list(g.nodes)
    rng.shuffle(nodes)
    h = LayerGraph(nodes, list(reversed(g.edges)), g.inputs, g.output)
    pos = {n: i for i, n in enumerate(h.names)}
    assert all(pos[u] < pos[w] for u, w in h.edges)
    assert sorted(h.names) == sorted(g.names)
    assert LayerGraph(g.nodes, list(reversed(g.edges)), g.inputs, g.output).names == g.names


def test_pred_closure_and_is_pred_closed(g):
    closure = g.pred_closure({"layer1.0.add"})
    assert closure == {"x", "conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1",
                       "layer1.0.relu", "layer1.0.conv2", "layer1.0.bn2", "layer1.0.add"}
    assert g.is_pred_closed(closure)
    assert not g.is_pred_closed(closure - {"maxpool"})
    assert not g.is_pred_closed({"x", "conv1", "layer1.0.add"})
    assert g.is_pred_closed({"x"}) and g.is_pred_closed(set())


def test_pred_closure_matches_networkx_ancestors():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        h = random_dag(rng, int(rng.integers(1, 12)), n_inputs=int(rng.integers(1, 3)))
        d = _nx(h)
        pick = set(rng.choice(h.names, size=min(2, len(h)), replace=False).tolist())
        expected = set(pick).union(*(nx.ancestors(d, n) for n in pick))
        assert h.pred_closure(pick) == expected
        assert h.is_pred_closed(expected)


def test_boundary_multi_consumer_tensor_crosses_once(g):
    s = g.pred_closure({"maxpool"})
    # maxpool feeds layer1.0.conv1 and the skip into layer1.0.add: one tensor, sent once
    assert sorted(g.succs("maxpool")) == ["layer1.0.add", "layer1.0.conv1"]
    assert g.boundary(s) == ["maxpool"]
    table = CutTable.from_sets(g, [s])
    assert table.boundary_bytes[0] == g.node("maxpool").out_bytes
    # a cut inside the block: the skip tensor (maxpool) and the main path (bn1) both cross
    s2 = g.pred_closure({"layer1.0.bn1"})
    assert g.boundary(s2) == ["maxpool", "layer1.0.bn1"]
    assert CutTable.from_sets(g, [s2]).boundary_bytes[0] == 400 + 400


def test_boundary_mask_matches_boundary():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        h = random_dag(rng, 10, n_inputs=2)
        sets = [h.pred_closure(set(rng.choice(h.names, 3).tolist())) for _ in range(5)]
        masks = np.stack([h.mask(s) for s in sets])
        got = h.boundary_mask(masks)
        for c, s in enumerate(sets):
            assert h.names_of(got[c]) == set(h.boundary(s))
            assert (h.boundary_mask(masks[c]) == got[c]).all()  # one set: its own fast path


def test_chain_prefixes(g):
    prefixes = g.chain_prefixes()
    assert len(prefixes) == len(g) - 1
    for i, s in enumerate(prefixes):
        assert s == set(g.names[: i + 1])
        assert g.check_split(s) == s
    chain = random_dag(np.random.default_rng(0), 5, chain=True)
    assert chain.is_chain and not g.is_chain
    assert [len(s) for s in chain.chain_prefixes()] == [1, 2, 3, 4, 5, 6]


def test_chain_prefixes_wait_for_every_input():
    h = random_dag(np.random.default_rng(3), 6, n_inputs=3)
    for s in h.chain_prefixes():
        assert set(h.inputs) <= s and h.is_pred_closed(s) and h.output not in s


def test_block_key_examples():
    assert block_key("layer1.0.conv1") == "layer1.0"
    assert block_key("layer2.0.downsample.0") == "layer2.0"
    assert block_key("layer1.0") == "layer1.0"
    assert block_key("transformer.h.5.attn.c_attn") == "transformer.h.5"
    assert block_key("encoder.layers.encoder_layer_3.mlp.0") == "encoder.layers.encoder_layer_3"
    assert block_key("features.3.conv.0.0") == "features.3"
    assert block_key("conv1") is None and block_key("fc") is None and block_key("layer1") is None


def test_blocks(g):
    blocks = g.blocks()
    assert list(blocks) == ["layer1.0", "layer1.1", "layer2.0"]
    assert blocks["layer1.0"] == [f"layer1.0.{m}" for m in
                                  ("conv1", "bn1", "relu", "conv2", "bn2", "add", "relu_1")]
    assert "layer2.0.downsample.0" in blocks["layer2.0"] and len(blocks["layer2.0"]) == 9


def test_contract_sums_and_prices_block_cuts_exactly(g):
    c = g.contract()
    assert len(c) == len(g) - 7 - 7 - 9 + 3
    for key, members in g.blocks().items():
        node = c.node(key)
        assert node.kind == "block"
        assert node.fwd_flops == pytest.approx(sum(g.node(m).fwd_flops for m in members))
        assert node.bwd_flops == pytest.approx(sum(g.node(m).bwd_flops for m in members))
        assert node.param_bytes == pytest.approx(sum(g.node(m).param_bytes for m in members))
        assert node.out_bytes == g.node(f"{key}.relu_1").out_bytes  # one tensor leaves the block
        assert c.expand({key}) == set(members)
    assert ("layer1.0", "layer1.1") in c.edges and ("maxpool", "layer1.0") in c.edges
    # every cut of the contracted graph maps back to a cut of the original with equal costs
    cuts_c = c.chain_prefixes()
    cuts_g = [c.expand(s) for s in cuts_c]
    tc, tg = CutTable.from_sets(c, cuts_c), CutTable.from_sets(g, cuts_g)
    for s in cuts_g:
        g.check_split(s)
    np.testing.assert_allclose(tc.boundary_bytes, tg.boundary_bytes, rtol=1e-12)
    np.testing.assert_allclose(tc.param_bytes, tg.param_bytes, rtol=1e-12)
    dev = Device(name="d", flops=1e9, spectral_eff_up=2, spectral_eff_dn=3, power_compute_w=5,
                 power_tx_w=0.3)
    args = ([dev], Server(flops=1e11), Channel(bandwidth_up_hz=1e6, bandwidth_dn_hz=2e6),
            Training(batch_size=8, local_iters=2))
    rc, rg = round_terms(*args, tc), round_terms(*args, tg)
    np.testing.assert_allclose(rc.round_time(0.5, 0.5), rg.round_time(0.5, 0.5), rtol=1e-12)
    # memory keeps every member's activation although only the exit tensor is sent
    np.testing.assert_allclose(rc.mem, rg.mem, rtol=1e-12)
    np.testing.assert_allclose(rc.e_comp + rc.e_tx, rg.e_comp + rg.e_tx, rtol=1e-12)
    assert c.node("layer1.0").act_bytes == 7 * 400


def test_contract_keeps_unmeasured_flops_of_partly_measured_blocks(g):
    # measured times only for the convolutions (like leaf-module profiles); adds/relus unmeasured
    times = {n: (1e-4, 2e-4) for n in g.names if n.endswith(("conv1", "conv2"))}
    h = g.with_times("srv", times)
    c = h.contract()
    t = c.node("layer1.0").times["srv"]
    assert t.fwd_s == pytest.approx(2e-4) and t.bwd_s == pytest.approx(4e-4)
    rest = [m for m in g.blocks()["layer1.0"] if not m.endswith(("conv1", "conv2"))]
    assert t.unmeasured_fwd_flops == pytest.approx(sum(g.node(m).fwd_flops for m in rest))
    srv = Server(flops=1e9, device_class="srv")
    sets_c = c.chain_prefixes()
    tc = CutTable.from_sets(c, sets_c)
    tg = CutTable.from_sets(h, [c.expand(s) for s in sets_c])
    np.testing.assert_allclose(tc.srv_seconds(srv), tg.srv_seconds(srv), rtol=1e-12)
    np.testing.assert_allclose(c.fwd_seconds("srv", 1e9).sum(), h.fwd_seconds("srv", 1e9).sum(),
                               rtol=1e-12)
    # and it survives JSON
    assert LayerGraph.from_json(c.to_json()) == c


def test_contract_twice_composes_members(g):
    c = g.contract()
    cc = c.contract({"layer1": ["layer1.0", "layer1.1"]})
    assert cc.expand({"layer1"}) == set(g.blocks()["layer1.0"] + g.blocks()["layer1.1"])
    assert cc.expand({"layer2.0"}) == set(g.blocks()["layer2.0"])
    assert cc.expand({"fc"}) == {"fc"}
    assert cc.node("layer1").fwd_flops == pytest.approx(
        c.node("layer1.0").fwd_flops + c.node("layer1.1").fwd_flops)


def test_contract_rejects_bad_groups(g):
    with pytest.raises(GraphError, match="groups.*convex"):
        g.contract({"bad": ["layer1.0.conv1", "layer1.0.relu_1"]})  # path leaves and re-enters
    with pytest.raises(GraphError, match="groups.*input or output"):
        g.contract({"bad": ["x", "conv1"]})
    with pytest.raises(GraphError, match="at most one group"):
        g.contract({"a": ["conv1", "bn1"], "b": ["bn1", "relu"]})
    with pytest.raises(GraphError, match="groups: got 'fc'.*not names of nodes outside"):
        g.contract({"fc": ["conv1", "bn1"]})
    with pytest.raises(GraphError, match="node name: got 'nope'"):
        g.contract({"a": ["nope"]})


def test_contract_does_not_mutate(g):
    before = g.to_json()
    g.contract()
    g.with_times("h100", {"conv1": (1.0, 2.0)})
    assert g.to_json() == before and "members" not in g.meta


def test_with_times_reports_unmatched(g):
    h = g.with_times("h100", {"conv1": (1e-3, 2e-3), "no.such.layer": (1.0, 1.0)})
    assert h.node("conv1").times["h100"].fwd_s == 1e-3
    assert h.meta["unmatched_times"] == {"h100": ["no.such.layer"]}
    assert h.device_classes() == {"h100"}
    secs = h.train_seconds("h100", 1e9)
    assert secs[h.index["conv1"]] == pytest.approx(3e-3)
    assert secs[h.index["bn1"]] == pytest.approx(3e3 / 1e9)


def test_check_split_rules(g):
    with pytest.raises(GraphError, match="every input"):
        g.check_split({"conv1"})
    with pytest.raises(GraphError, match="predecessor-closed"):
        g.check_split({"x", "bn1"})
    with pytest.raises(GraphError, match="without the output"):
        g.check_split(g.names)
    assert g.check_split(g.names, labels_on_device=True) == set(g.names)


def test_vectorised_seconds_equal_node_by_node():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        times = {f"n{i}": (1e-3 * i, 2e-3 * i) for i in range(0, 15, 3)}
        g = random_dag(rng, 15).with_times("a", times)
        g = g.contract({"blk": ["n1", "n2", "n3"]})  # partly measured: unmeasured FLOPs kept
        for cls in ("a", "b", None):
            f = float(10 ** rng.uniform(6, 12))
            tr, fw = g.train_seconds(cls, f), g.fwd_seconds(cls, f)
            for i, n in enumerate(g.nodes):
                t = n.times.get(cls) if cls else None
                assert tr[i] == (t.train_seconds(f) if t else n.train_flops / f)
                assert fw[i] == (t.fwd_seconds(f) if t else n.fwd_flops / f)


def test_arrays_follow_the_order_of_a_shuffled_graph():
    # the arrays are stacked from the nodes' rows when the graph is built, then reordered with it
    for seed in range(10):
        rng = np.random.default_rng(seed)
        g = random_dag(rng, 12).with_times("a", {f"n{i}": (1e-3, 2e-3) for i in range(0, 12, 4)})
        nodes = list(g.nodes)
        rng.shuffle(nodes)
        h = LayerGraph(nodes, list(g.edges), g.inputs, g.output)
        for attr in ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes"):
            assert getattr(h, attr).tolist() == [getattr(n, attr) for n in h.nodes], attr
        assert h.timed_indices.tolist() == [i for i, n in enumerate(h.nodes) if n.times]
        assert h.names == [n.name for n in h.nodes] == list(h.index)
        assert h.names_of(np.arange(len(h)) % 2 == 0) == {n.name for n in h.nodes[::2]}
    old = Node("y", 3.0, kind="output")  # as unpickled from before nodes carried their row
    del old.__dict__["_row"]
    g = LayerGraph([Node("x", kind="input"), old], [("x", "y")], ["x"], "y")
    assert g.fwd_flops.tolist() == [0.0, 3.0] and g.bwd_flops.tolist() == [0.0, 6.0]


def test_graph_is_immutable(g):
    with pytest.raises(AttributeError, match="immutable; cannot set 'name'"):
        g.name = "other"
    with pytest.raises(AttributeError, match="immutable"):
        g.nodes = ()
    assert isinstance(g.nodes, tuple) and isinstance(g.edges, tuple)
    assert g.fwd_flops is g.fwd_flops  # cached arrays still work
    import copy
    import pickle

    assert copy.deepcopy(g) == g and pickle.loads(pickle.dumps(g)) == g


def test_block_key_fits_the_profiler_naming_rule():
    # docs/profiler.md: repeated calls are FQN@k, functional ops <FQN>.<op>_k, inputs by argument
    assert block_key("layer1.0.relu@1") == "layer1.0"
    assert block_key("layer1.0.add") == "layer1.0"
    assert block_key("encoder.layers.encoder_layer_0.add_1") == "encoder.layers.encoder_layer_0"
    assert block_key("transformer.h.0.attn.matmul_1") == "transformer.h.0"
    assert block_key("input_ids") is None and block_key("relu@1") is None


def test_names_of_sparse_and_dense_masks_on_fresh_and_used_graphs():
    rng = np.random.default_rng(2)
    g = random_dag(rng, 60)
    for density in (0.01, 0.05, 0.5, 1.0, 0.0):
        masks = [rng.random(len(g)) < density for _ in range(5)]
        for fresh in (True, False):  # before and after the cached name array exists
            h = LayerGraph(g.nodes, g.edges, g.inputs, g.output) if fresh else g
            for m in masks:
                assert h.names_of(m) == {n.name for n, x in zip(h.nodes, m) if x}
        g.names_of(np.ones(len(g), bool))  # builds the array for the next round
