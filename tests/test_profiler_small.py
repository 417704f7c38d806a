"""profile() on hand-made models: names, FLOPs against formulas, bytes, tied weights, errors."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from splitopt.errors import InputError, ProfileError  # noqa: E402
from splitopt.graph import LayerGraph  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402

F32 = 4


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def conv_flops(cin, cout, k, hout, wout, groups=1):
    return 2 * (cin // groups) * k * k * cout * hout * wout  # a MAC is 2 FLOPs


class Attention(nn.Module):
    """Single-head-per-split self-attention written with explicit matmuls."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


def test_conv_and_linear_flops_equal_formulas():
    model, inputs = toy.examples(batch=3)["branches"]
    g = profile(model, inputs)
    left = g.node("left")
    assert left.fwd_flops == conv_flops(3, 4, 3, 8, 8)
    assert left.bwd_flops == left.fwd_flops  # the data needs no gradient: weight gradient only
    mix = g.node("mix")
    assert mix.fwd_flops == conv_flops(8, 6, 3, 8, 8)
    assert mix.bwd_flops == 2 * mix.fwd_flops  # input and weight gradients
    assert g.node("right.0").fwd_flops == conv_flops(3, 4, 1, 8, 8)
    fc = g.node("fc")
    assert (fc.fwd_flops, fc.bwd_flops) == (2 * 6 * 5, 2 * 2 * 6 * 5)
    assert fc.param_bytes == (6 * 5 + 5) * F32
    assert g.node("cat").kind == "cat" and g.node("cat").out_bytes == 8 * 8 * 8 * F32
    assert g.meta["capture"] == "fx" and g.meta["batch_profiled"] == 3  # fx traced it all


@pytest.mark.parametrize("capture", ["export", "fx"])
def test_attention_matmul_flops(capture):
    d, t, heads = 8, 5, 2
    g = profile(Attention(d, heads), (torch.randn(2, t, d),), capture=capture)
    matmuls = [n for n in g.nodes if n.kind == "matmul"]
    assert [n.name for n in matmuls] == ["matmul", "matmul_1"]
    per_head = 2 * t * t * (d // heads)
    for n in matmuls:
        assert n.fwd_flops == heads * per_head
        assert n.bwd_flops == 2 * heads * per_head  # gradients of both operands
    assert g.node("qkv").fwd_flops == 2 * t * d * 3 * d
    assert g.node("proj").fwd_flops == 2 * t * d * d


def test_skip_tensor_is_one_output_with_several_consumers():
    model, inputs = toy.examples()["resblock"]
    g = profile(model, inputs)
    assert sorted(g.succs("x")) == ["add", "conv1"]
    assert g.node("x").out_bytes == 4 * 6 * 6 * F32
    assert g.node("x").kind == "input"
    assert g.names.count("relu") == 1 and "relu@1" in g  # one module called twice
    assert g.preds("relu@1") == ["add"]
    assert g.node("conv1").param_bytes == 4 * 4 * 9 * F32


def test_tensor_consumed_three_times():
    model, inputs = toy.examples()["three_uses"]
    g = profile(model, inputs)
    assert sorted(g.succs("inp")) == ["a", "add_1", "b.0"]  # a(h) + b(h) is "add"
    assert g.node("inp").out_bytes == 6 * F32
    assert sum(1 for u, _ in g.edges if u == "inp") == 3


def test_tied_weight_counted_once():
    model, inputs = toy.examples()["tied"]
    g = profile(model, inputs)
    unique = sum(p.numel() * p.element_size() for p in model.parameters())
    with_dupes = sum(v.numel() * v.element_size() for k, v in model.state_dict().items())
    assert unique < with_dupes
    assert g.param_bytes.sum() == unique
    assert g.node("wte").param_bytes == 11 * 8 * F32
    assert g.node("lm_head").param_bytes == 0


def test_two_inputs_are_two_input_nodes():
    model, inputs = toy.examples(batch=4)["two_inputs"]
    g = profile(model, inputs)
    assert g.inputs == ("image", "features")
    assert g.node("image").out_bytes == 2 * 4 * 4 * F32
    assert g.node("features").out_bytes == 5 * F32
    assert g.node("output").kind == "output" and g.node("output").out_bytes == 2 * F32


def test_per_sample_numbers_do_not_depend_on_batch():
    model, _ = toy.examples()["branches"]
    g1 = profile(model, (torch.randn(1, 3, 8, 8),))
    g5 = profile(model, (torch.randn(5, 3, 8, 8),))
    assert g1.names == g5.names
    for a, b in zip(g1.nodes, g5.nodes, strict=True):
        assert (a.fwd_flops, a.bwd_flops, a.out_bytes, a.param_bytes) == \
               pytest.approx((b.fwd_flops, b.bwd_flops, b.out_bytes, b.param_bytes))


@pytest.mark.parametrize("case", sorted(set(toy.examples()) - {"gated_inside"}))
def test_export_and_fx_agree(case):
    model, inputs = toy.examples()[case]
    ge, gf = profile(model, inputs, capture="export"), profile(model, inputs, capture="fx")
    assert ge.names == gf.names and set(ge.edges) == set(gf.edges)
    assert ge.fwd_flops.tolist() == gf.fwd_flops.tolist()
    assert ge.param_bytes.tolist() == gf.param_bytes.tolist()


def _same_graph(a, b):
    """Node for node the same graph: names (in order), edges, FLOPs and bytes."""
    assert a.names == b.names and set(a.edges) == set(b.edges)
    for attr in ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes"):
        assert getattr(a, attr).tolist() == getattr(b, attr).tolist(), attr
    assert a.meta.get("tied") == b.meta.get("tied")


@pytest.mark.parametrize("case", sorted(set(toy.examples()) - {"gated_inside"}) + ["gpt2"])
def test_default_capture_is_the_export_graph(case):
    # the default takes fx when fx traces every module, for speed: it must be the graph
    # torch.export gives, node for node (a small GPT-2 pins the GPT-2-XL benchmark's shape)
    from splitopt import zoo

    model, inputs = (zoo.build("gpt2", batch_size=2, seq_len=8, device="meta", n_layer=2,
                               n_embd=32, n_head=2, vocab_size=64, n_positions=16)
                     if case == "gpt2" else toy.examples()[case])
    default = profile(model, inputs)
    assert default.meta["capture"] == "fx" and default.meta["leaves_forced"] == []
    _same_graph(default, profile(model, inputs, capture="export"))


def test_default_capture_takes_export_when_fx_would_make_modules_opaque():
    class Gate(nn.Module):  # fx cannot trace its branch on a shape; torch.export can
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x) * 2 if x.shape[-1] > 2 else x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.gate = nn.Linear(4, 4), Gate()

        def forward(self, x):
            return self.gate(self.fc(x))

    model, x = Net(), torch.randn(2, 4)
    g = profile(model, (x,))
    assert g.meta["capture"] == "export" and "made ['gate'] opaque" in g.meta["capture_reason"]
    _same_graph(g, profile(model, (x,), capture="export"))


def test_meta_model_gives_the_same_graph_without_weights():
    model, inputs = toy.examples()["tied"]
    with torch.device("meta"):
        meta_model = toy.TiedLM()
    assert all(p.is_meta for p in meta_model.parameters())
    g_meta, g_cpu = profile(meta_model, inputs), profile(model, inputs)
    assert g_meta.names == g_cpu.names
    assert g_meta.fwd_flops.tolist() == g_cpu.fwd_flops.tolist()
    assert g_meta.param_bytes.tolist() == g_cpu.param_bytes.tolist()


def test_profile_leaves_the_model_untouched_and_round_trips():
    model, inputs = toy.examples()["resblock"]
    before = copy.deepcopy(model.state_dict())
    g = profile(model, inputs, measure=True)
    torch.testing.assert_close(model.state_dict(), before)
    assert all(p.grad is None for p in model.parameters())
    assert LayerGraph.from_json(g.to_json()) == g
    timed = [n for n in g.nodes if "cpu" in n.times]
    assert {n.name for n in timed} == set(g.names) - {"x", "output"}
    assert all(n.times["cpu"].fwd_s > 0 for n in timed)


def test_untraceable_submodule_becomes_one_node():
    model, inputs = toy.examples()["gated_inside"]
    g = profile(model, inputs)
    assert g.meta["capture"] == "fx"
    assert "torch.export failed" in g.meta["capture_reason"]
    assert g.meta["leaves_forced"] == ["gate"]
    assert "gate" in g and g.node("gate").fwd_flops == 2 * 4 * 4
    assert g.node("gate").param_bytes == (16 + 4) * F32


def test_untraceable_model_raises_profile_error():
    # each route's own reason, not a guess at the fix
    with pytest.raises(ProfileError, match="cannot capture GatedTop: torch.export failed: .*; "
                       "then torch.fx failed in the top-level forward: "):
        profile(toy.GatedTop(), (torch.randn(2, 4),))


def test_bad_arguments():
    with pytest.raises(InputError, match="capture.*'auto', 'export', 'fx'"):
        profile(toy.ThreeUses(), (torch.randn(2, 6),), capture="jit")
    with pytest.raises(InputError, match="example_inputs.*at least one tensor"):
        profile(toy.ThreeUses(), ())
    with pytest.raises(InputError, match="module.*torch.nn.Module"):
        profile(lambda x: x, (torch.randn(2, 6),))
    with torch.device("meta"):
        m = toy.ThreeUses()
    with pytest.raises(ProfileError, match="measure=True needs real weights"):
        profile(m, (torch.randn(2, 6),), measure=True)
