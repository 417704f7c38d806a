"""Bytes priced == bytes sent: the graph's comm bytes of a cut equal what the split model sends.

Each LayerGraph node is left by one data value (multi-output groups get one view node per output
tensor, splitopt/profiler/outputs.py), so ``sum(out_bytes(u) for u in boundary(S))`` must equal
the bytes of the tensors the device part returns, for every model and every cut. Both capture
routes must also give the same node names and edges (a graph from one route names cuts for the
other).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from splitopt import Device, Link, Server, Training, zoo  # noqa: E402
from splitopt.costs import CutTable, device_phases  # noqa: E402
from splitopt.execute.split import Splitter, split_model  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402
from splitopt.profiler.capture import capture  # noqa: E402
from splitopt.profiler.outputs import multi_output_groups  # noqa: E402

DEVICE = Device(name="d", flops=1e10, spectral_eff_up=1, spectral_eff_dn=1)
SERVER = Server(name="s", flops=1e12)


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def random_cuts(graph, n, seed):
    """``n`` random predecessor-closed device-side sets (inputs in, output out)."""
    rng = np.random.default_rng(seed)
    names = [m for m in graph.names if m != graph.output and m not in graph.inputs]
    cuts = []
    while len(cuts) < n:
        picks = rng.choice(names, size=int(rng.integers(0, min(len(names), 6) + 1)),
                           replace=False)
        s = graph.pred_closure([*graph.inputs, *picks])
        if graph.output not in s:
            cuts.append(s)
    return cuts


def comm_bytes_per_sample(graph, s):
    """What the cost model charges one sample for the cut ``s`` each way (costs.CutTable)."""
    table = CutTable.from_sets(graph, [s])
    one_way, tied = float(table.boundary_bytes[0]), float(table.tied_bytes[0])
    ph = device_phases(graph, s, DEVICE, SERVER, Link(1e6, 1e6),
                       Training(batch_size=1, local_iters=1, aggregate=False))
    # activations up, gradients down; a weight tied across the cut (GPT-2's wte / lm_head):
    # its gradient each way per iteration (tests/test_execute_tied.py sends it)
    assert ph.comm_bytes == pytest.approx(2 * (one_way + tied), rel=1e-12)
    return one_way


def sent_bytes(sp, inputs):
    """Bytes of the data tensors the device part returns (scalars are listed apart)."""
    with torch.no_grad():
        out = sp.device(*inputs)
    data = out[:len(sp.boundary)]
    assert len(out) == len(sp.boundary) + len(sp.scalars)
    assert all(t.dim() <= 1 for t in out[len(sp.boundary):])  # sizes, not activations
    return sum(t.numel() * t.element_size() for t in data)


# the deepest CNNs take 10-15 s each on 2 shared cores; resnet18 (residual), gpt2 and bert
# (attention, views), vit and digits_cnn cover the same behaviour in the fast run
SLOW = {"resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16"}
ZOO = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in zoo.names()]


@pytest.mark.parametrize("name", ZOO)
def test_bytes_sent_equal_comm_bytes_on_random_cuts(name):
    batch = 2
    model, inputs = zoo.build(name, batch_size=batch, device="meta",
                              **toy.ZOO_TINY.get(name, {}))
    graph = profile(model, inputs)  # torch.export, as a user gets it
    splitter = Splitter(model, inputs, graph)  # prefers torch.fx parts when the names agree
    for s in random_cuts(graph, 8, seed=len(name)):
        sp = splitter.split(s)
        priced = batch * comm_bytes_per_sample(graph, s)
        assert sent_bytes(sp, inputs) == pytest.approx(priced, rel=1e-12), sorted(s)
        assert {b.split("[")[0].split("#")[0] for b in sp.boundary} == set(graph.boundary(s))


@pytest.mark.parametrize("name", ZOO)
def test_fx_and_export_give_the_same_graph(name):
    model, inputs = zoo.build(name, batch_size=2, device="meta", **toy.ZOO_TINY.get(name, {}))
    fx_graph, ex_graph = profile(model, inputs, capture="fx"), profile(model, inputs,
                                                                       capture="export")
    assert fx_graph.names == ex_graph.names
    assert set(fx_graph.edges) == set(ex_graph.edges)
    np.testing.assert_allclose(fx_graph.out_bytes, ex_graph.out_bytes)
    for route in ("fx", "export"):  # every node is left by one value: node pricing is exact
        cap = capture(model, inputs, route)
        assert multi_output_groups(cap.gm, cap.group, cap.values) == []


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        out = self.a(x)
        out += x  # fx: add; torch.export: add_
        y = self.b(out)
        y.mul_(2)
        return torch.relu(y) + out


def test_in_place_ops_are_named_alike_by_both_routes():
    model, x = InPlace(), torch.randn(2, 4)
    fx_graph, ex_graph = profile(model, x, capture="fx"), profile(model, x, capture="export")
    assert fx_graph.names == ex_graph.names
    assert "add" in fx_graph.names and "mul" in fx_graph.names
    s = fx_graph.pred_closure(["add"])
    for route in ("fx", "export"):  # a cut named from either graph works on either route
        sp = split_model(model, x, s, ex_graph, capture=route)
        torch.testing.assert_close(sp(x), model(x))


class GLU(nn.Module):
    """``fc`` leaves two halves; the cut sends one half and the gate, never the whole output."""

    def __init__(self, d=4):
        super().__init__()
        self.fc, self.head = nn.Linear(d, 2 * d), nn.Linear(d, 3)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, dim=-1)
        return self.head(a * torch.sigmoid(b))


def test_glu_prices_only_the_half_that_crosses():
    model, x = GLU(), torch.randn(5, 4)
    for route in ("fx", "export"):
        graph = profile(model, x, capture=route)
        assert {"fc:0", "fc:1"} <= set(graph.names)
        assert graph.node("fc:0").out_bytes == 16 and graph.node("fc:0").act_bytes == 0
        # b's gate and the half `a` on the device, a * gate on the server
        s = graph.pred_closure(["sigmoid", "fc:0"])
        assert sorted(graph.boundary(s)) == ["fc:0", "sigmoid"]
        priced = float(graph.out_bytes[graph.mask(graph.boundary(s))].sum())
        assert priced == 32  # 16 B of `a` + 16 B of the gate (was 48: both halves + the gate)
        sp = split_model(model, x, s, graph, capture=route)
        assert sent_bytes(sp, (x,)) == 5 * priced
        torch.testing.assert_close(sp(x), model(x))


def test_gpt2_attention_cut_sends_only_v_and_the_probabilities():
    model, inputs = zoo.build("gpt2", batch_size=1, **toy.ZOO_TINY["gpt2"])
    graph = profile(model, inputs)
    att = "transformer.h.0.attn"
    views = [n for n in graph.names if n.startswith(f"{att}.c_attn:")]
    assert len(views) == 3  # q, k, v
    v = next(n for n in views if f"{att}.matmul_1" in graph.succs(n))  # probs @ v
    s = graph.pred_closure([f"{att}.softmax", v])
    crossing = set(graph.boundary(s))
    assert v in crossing and not crossing & (set(views) - {v})
    assert f"{att}.c_attn" not in crossing
    sp = Splitter(model, inputs, graph).split(s)
    priced = float(graph.out_bytes[graph.mask(graph.boundary(s))].sum())
    assert sent_bytes(sp, inputs) == priced


def test_bytes_sent_equal_comm_bytes_on_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    model, ids = transformers.GPT2LMHeadModel(cfg), torch.randint(0, 50, (2, 8))
    graph = profile(model, (ids,))
    splitter = Splitter(model, (ids,), graph)
    for s in random_cuts(graph, 12, seed=7):
        priced = 2 * comm_bytes_per_sample(graph, s)
        assert sent_bytes(splitter.split(s), (ids,)) == pytest.approx(priced, rel=1e-12)


def test_a_cut_named_by_a_graph_written_before_view_nodes_still_splits():
    # such a graph priced `fc` as both halves (merging the view nodes back gives it); its cut
    # splits, and as the half `a` stays with its consumer on the server, fc's whole output (the
    # list of halves) crosses with the gate: what the old graph priced
    model, x = GLU(), torch.randn(5, 4)
    old = profile(model, x).contract({"fc": ["fc", "fc:0", "fc:1"]})
    assert "fc:0" not in old and old.node("fc").out_bytes == 32
    s = old.pred_closure(["sigmoid"])
    sp = split_model(model, x, s, old)
    assert sp.device_side == s | {"fc:1"}
    priced = float(old.out_bytes[old.mask(old.boundary(s))].sum())
    assert sp.boundary == ["fc[0]", "fc[1]", "sigmoid"]
    assert sent_bytes(sp, (x,)) == 5 * priced == 5 * 48
    torch.testing.assert_close(sp(x), model(x))
