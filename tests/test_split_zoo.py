"""split_model on every zoo model (small configurations): same outputs, gradients and state."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from splitopt import zoo  # noqa: E402
from splitopt.execute.split import Splitter  # noqa: E402
from splitopt.graph import block_key  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def zoo_cuts(graph):
    """Half-way along the topological order, and inside a block (residual where there is one)."""
    prefixes = graph.chain_prefixes()
    picks = [prefixes[len(prefixes) // 2]]
    blocks = graph.blocks()
    if blocks:
        members = blocks[sorted(blocks)[len(blocks) // 2]]
        picks.append(graph.pred_closure([members[len(members) // 2]]))
    return picks


def flat_loss(out):
    flat = out if isinstance(out, (tuple, list)) else (out,)
    return sum((t.float() ** 2).mean() for t in flat if t.is_floating_point())


# vgg16 keeps its 138M-parameter classifier at any image size (minutes on 2 shared cores);
# digits_cnn covers the same plain conv-pool-linear chain quickly.
SLOW = {"vgg16"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in zoo.names()])
def test_zoo_split_equals_model(name):
    model, inputs = zoo.build(name, batch_size=2, **toy.ZOO_TINY.get(name, {}))
    graph = profile(model, inputs, capture="fx")
    splitter = Splitter(model, inputs, graph)
    cuts = zoo_cuts(graph)
    inside = [s for s in cuts if any(block_key(n) for n in graph.boundary(s))]
    assert inside or name in ("digits_cnn", "vgg16"), "no cut inside a block"
    for s in cuts:
        ref = copy.deepcopy(model)
        sp = splitter.split(s)
        torch.manual_seed(5)  # dropout draws the same masks in both
        want = ref(*inputs)
        flat_loss(want).backward()
        torch.manual_seed(5)
        sent = sp.device(*inputs)
        recv = [t.detach().requires_grad_(t.requires_grad) for t in sent]
        got = sp.server(*recv)
        flat_loss(got).backward()
        back = [(a, b.grad) for a, b in zip(sent, recv, strict=True) if b.grad is not None]
        torch.autograd.backward([a for a, _ in back], [g for _, g in back])
        torch.testing.assert_close(got, want)
        grads = dict(ref.named_parameters())
        for k, p in model.named_parameters():
            torch.testing.assert_close(p.grad, grads[k].grad, msg=f"{name}: gradient of {k}")
        torch.testing.assert_close(model.state_dict(), ref.state_dict())
        keys = set(sp.device.state_dict()) | set(sp.server.state_dict())
        assert keys <= set(model.state_dict())
        model.zero_grad()


def test_resnet_skip_crosses_inside_a_block():
    model, inputs = zoo.build("resnet18", batch_size=2, **toy.ZOO_TINY["resnet18"])
    graph = profile(model, inputs, capture="fx")
    sp = Splitter(model, inputs, graph).split(graph.pred_closure(["layer1.0.bn2"]))
    assert sp.boundary == ["maxpool", "layer1.0.bn2"]
    torch.testing.assert_close(sp(*inputs), model(*inputs), rtol=0, atol=0)


def test_chain_cut_as_torch_pipelining_split_spec():
    from torch.distributed.pipelining import SplitPoint, pipeline

    from splitopt.errors import InputError
    from splitopt.execute.split import to_pipe_split_spec

    model, inputs = zoo.build("resnet18", batch_size=2, **toy.ZOO_TINY["resnet18"])
    model.eval()
    graph = profile(model, inputs, capture="fx")
    before = set(graph.names[: graph.names.index("layer2.0.downsample.0")])
    spec = to_pipe_split_spec(model, graph, before)
    assert spec == {"layer2": SplitPoint.BEGINNING}
    pipe = pipeline(model, mb_args=inputs, split_spec=spec)
    assert pipe.num_stages == 2
    s0, s1 = pipe.get_stage_module(0), pipe.get_stage_module(1)
    torch.testing.assert_close(s1(s0(*inputs)), model(*inputs))
    own = dict(model.named_parameters())
    names0 = {k for k, _ in s0.named_parameters()}
    assert names0 and all(s0.get_parameter(k) is own[k] for k in names0)
    assert {k for k, _ in s1.named_parameters()} == set(own) - names0
    inside = graph.pred_closure(["layer1.0.bn2"])  # the skip tensor crosses too
    with pytest.raises(InputError, match="one tensor crosses"):
        to_pipe_split_spec(model, graph, inside)
