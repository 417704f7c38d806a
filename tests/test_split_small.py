"""split_model on hand-made DAGs: equivalence of outputs, gradients and state, at many cuts."""

from __future__ import annotations

import copy
import random

import pytest

torch = pytest.importorskip("torch")

from splitopt.errors import InputError, ProfileError, SplitoptError  # noqa: E402
from splitopt.execute.split import Splitter, split_model  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402
from splitopt.profiler.toy import examples  # noqa: E402

CASES = examples()


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def cuts(graph, n_random=6, seed=0):
    """Chain prefixes, the closure of every single node, and closures of random node pairs."""
    inner = [n for n in graph.names if n != graph.output]
    sets = {frozenset(s) for s in graph.chain_prefixes()}
    sets |= {graph.pred_closure([n, *graph.inputs]) for n in inner}
    rng = random.Random(seed)
    for _ in range(n_random):
        sets.add(graph.pred_closure([*rng.sample(inner, 2), *graph.inputs]))
    return sorted((s for s in sets if graph.output not in s), key=lambda s: (len(s), sorted(s)))


def loss_of(out):
    return (out.float() ** 2).mean()


def assert_equivalent(model, inputs, device_side, graph, *, detach=False, splitter=None):
    ref = copy.deepcopy(model)
    if splitter is not None:
        sp = splitter.split(device_side)
    else:
        sp = split_model(model, inputs, device_side, graph)
    torch.manual_seed(3)
    ref_out = ref(*inputs)
    loss_of(ref_out).backward()
    torch.manual_seed(3)
    sent = sp.device(*inputs)
    assert isinstance(sent, tuple) and len(sent) == len(sp.boundary)
    if detach:  # what a split-learning trainer does: cut autograd at the boundary
        recv = [t.detach().requires_grad_(t.requires_grad) for t in sent]
        out = sp.server(*recv)
        loss_of(out).backward()
        pairs = [(s, r.grad) for s, r in zip(sent, recv, strict=True)
                 if r.requires_grad and r.grad is not None]
        if pairs:
            torch.autograd.backward([s for s, _ in pairs], [g for _, g in pairs])
    else:
        out = sp.server(*sent)
        loss_of(out).backward()
    torch.testing.assert_close(out, ref_out)
    grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, msg=f"gradient of {name}")
    torch.testing.assert_close(model.state_dict(), ref.state_dict())
    return sp


@pytest.mark.parametrize(("case", "capture"), [(c, "fx") for c in sorted(CASES)] + [
    ("resblock", "export"), ("tied", "export"), ("two_inputs", "export"),
    ("gated_inside", "export")])
def test_every_cut_computes_the_model(case, capture):
    model, inputs = CASES[case]
    graph = profile(model, inputs)
    m = copy.deepcopy(model)
    if case == "gated_inside" and capture == "export":
        with pytest.raises(ProfileError, match="torch.export could not capture"):
            Splitter(m, inputs, graph, capture=capture)
        return
    splitter = Splitter(m, inputs, graph, capture=capture)
    assert splitter.cap.capture == capture
    for i, s in enumerate(cuts(graph, n_random=3)):
        m.zero_grad()
        sp = assert_equivalent(m, inputs, s, graph, detach=bool(i % 2), splitter=splitter)
        assert {b.split(":")[0] for b in sp.boundary} == set(graph.boundary(s))


@pytest.mark.parametrize("case", sorted(CASES))
def test_parts_keep_original_names_and_objects(case):
    model, inputs = CASES[case]
    graph = profile(model, inputs)
    s = cuts(graph)[len(cuts(graph)) // 2]
    sp = split_model(model, inputs, s, graph)
    keys = set(model.state_dict())
    dev, srv = set(sp.device.state_dict()), set(sp.server.state_dict())
    assert dev <= keys and srv <= keys
    own = dict(model.named_parameters())
    for part in sp.parts():
        for name, p in part.named_parameters():
            assert p is own.get(name) or any(p is q for q in own.values())
    shared = set(sp.shared)
    assert not (dev & srv) - shared - {k for k in keys if k not in own}


def test_tied_weight_across_the_cut_is_shared_and_gradients_add_up():
    model, inputs = CASES["tied"]
    graph = profile(model, inputs)
    s = graph.pred_closure(["mlp.2", *graph.inputs])
    sp = assert_equivalent(copy.deepcopy(model), inputs, s, graph)
    assert sp.shared == ["wte.weight"] or sp.shared == ["lm_head.weight"]


def test_skip_and_several_tensors_cross():
    model, inputs = CASES["resblock"]
    graph = profile(model, inputs)
    s = graph.pred_closure(["bn2"])  # inside the block: the skip input crosses too
    sp = assert_equivalent(copy.deepcopy(model), inputs, s, graph, detach=True)
    assert sp.boundary == ["x", "bn2"]


def test_two_inputs_and_server_side_branch():
    model, inputs = CASES["two_inputs"]
    graph = profile(model, inputs)
    s = graph.pred_closure(["img.2", *graph.inputs])
    sp = assert_equivalent(copy.deepcopy(model), inputs, s, graph, detach=True)
    assert set(sp.boundary) == {"img.2", "features"}


def test_batch_norm_eval_mode_and_fx_capture():
    model, inputs = CASES["resblock"]
    graph = profile(model, inputs, capture="fx")
    assert graph.meta["capture"] == "fx"
    m = copy.deepcopy(model).eval()
    assert_equivalent(m, inputs, graph.pred_closure(["relu"]), graph, detach=True)


def test_bad_device_sets():
    model, inputs = CASES["branches"]
    graph = profile(model, inputs)
    with pytest.raises(InputError, match="device_side.*nope"):
        split_model(model, inputs, {"x", "nope"}, graph)
    with pytest.raises(InputError, match="predecessor-closed"):
        split_model(model, inputs, {"x", "mix"}, graph)
    with pytest.raises(InputError, match="without the output"):
        split_model(model, inputs, set(graph.names), graph)
    with pytest.raises(InputError, match="every input"):
        split_model(model, inputs, {"left"}, graph)
    with pytest.raises(InputError, match="not one string"):
        split_model(model, inputs, "x", graph)


def test_export_parts_refuse_other_mode_and_shapes():
    model, inputs = CASES["resblock"]
    graph = profile(model, inputs)
    sp = split_model(model, inputs, graph.pred_closure(["relu"]), graph, capture="export")
    assert sp.capture == "export"
    sp(*inputs)
    with pytest.raises(SplitoptError, match="captured by torch.export for input shapes"):
        sp(torch.randn(3, 4, 6, 6))
    sp.device.eval()
    with pytest.raises(SplitoptError, match="device part was captured .* training mode"):
        sp(*inputs)


def test_fx_parts_follow_train_eval_and_batch_size():
    model, inputs = CASES["resblock"]
    graph = profile(model, inputs)
    sp = split_model(model, inputs, graph.pred_closure(["bn2"]), graph)
    assert sp.capture == "fx"
    x = torch.randn(5, 4, 6, 6)
    model.eval(), sp.device.eval(), sp.server.eval()
    try:
        torch.testing.assert_close(sp(x), model(x))
    finally:
        model.train()


def test_parts_pickle_and_profile_model_cache():
    import pickle

    from splitopt.profiler import profile_model

    model, inputs = CASES["resblock"]
    graph = profile(model, inputs)
    sp = split_model(model, inputs, graph.pred_closure(["relu"]), graph)
    dev, srv = pickle.loads(pickle.dumps((sp.device, sp.server)))
    torch.testing.assert_close(srv(*dev(*inputs)), sp(*inputs))
    a = profile_model("digits_cnn", capture="fx")
    assert profile_model("digits_cnn", capture="fx") is a
