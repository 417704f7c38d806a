"""profile() on the zoo: FLOPs against formulas, tied GPT-2 weights, skip tensors, H100 times."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from splitopt import zoo  # noqa: E402
from splitopt.errors import InputError  # noqa: E402
from splitopt.profiler import attach_profile, profile, profile_model, toy  # noqa: E402
from splitopt.profiler.attach import profiles_path  # noqa: E402

F32 = 4


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def layer_flops(mod: nn.Module, out_elems_per_sample: float) -> float:
    """Analytic forward FLOPs per sample (2 per multiply-accumulate; bias adds not counted)."""
    if isinstance(mod, nn.Conv2d):
        cin = mod.in_channels // mod.groups
        return 2.0 * cin * mod.kernel_size[0] * mod.kernel_size[1] * out_elems_per_sample
    return 2.0 * mod.in_features * out_elems_per_sample


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_every_conv_and_linear_node_equals_its_formula(name):
    model, inputs = zoo.build(name, device="meta")  # full size, no weights allocated
    graph = profile(model, inputs, capture="fx")
    checked = 0
    for node in graph.nodes:
        if node.kind not in ("Conv2d", "Linear"):
            continue
        mod = model.get_submodule(node.name)
        out_elems = node.out_bytes / F32
        assert node.fwd_flops == layer_flops(mod, out_elems), node.name
        first = graph.preds(node.name) == list(graph.inputs)
        assert node.bwd_flops == (1 if first else 2) * node.fwd_flops, node.name
        checked += 1
    assert checked >= 20
    if name == "resnet18":  # torchvision reports 1.81 GMACs
        assert graph.fwd_flops.sum() == pytest.approx(2 * 1.814e9, rel=2e-3)


def test_gpt2_tied_weight_counted_once_and_attention_matmuls():
    cfg = toy.ZOO_TINY["gpt2"]
    model, inputs = zoo.build("gpt2", device="meta", **cfg)
    graph = profile(model, inputs)
    unique = sum(p.numel() for p in model.parameters()) * F32
    assert graph.param_bytes.sum() == unique
    assert graph.node("lm_head").param_bytes == 0
    assert graph.node("transformer.wte").param_bytes == cfg["vocab_size"] * cfg["n_embd"] * F32
    t, d, heads = cfg["seq_len"], cfg["n_embd"], cfg["n_head"]
    mm = [n for n in graph.nodes if n.name.startswith("transformer.h.0.attn.matmul")]
    assert len(mm) == 2  # scores = q k^T, out = probs v
    for n in mm:
        assert n.fwd_flops == heads * 2 * t * t * (d // heads)
        assert n.bwd_flops == 2 * n.fwd_flops


def test_full_gpt2_parameter_bytes_on_meta():
    model, inputs = zoo.build("gpt2", device="meta")
    graph = profile(model, inputs, capture="fx")
    assert graph.param_bytes.sum() == 124_439_808 * F32
    assert graph.node("lm_head").param_bytes == 0


def test_resnet_skip_tensor_once_with_two_consumers():
    model, inputs = zoo.build("resnet18", device="meta")
    graph = profile(model, inputs, capture="fx")
    assert sorted(graph.succs("maxpool")) == ["layer1.0.add", "layer1.0.conv1"]
    assert graph.node("maxpool").out_bytes == 64 * 56 * 56 * F32
    assert sorted(graph.succs("layer1.1.relu@1")) == ["layer2.0.conv1", "layer2.0.downsample.0"]
    assert len(graph.blocks()) == 8


def test_attach_h100_times_by_module_name():
    try:
        profiles_path()
    except InputError:
        pytest.skip("the measured H100 profiles are not beside this checkout")
    graph = profile_model("resnet18", capture="fx", times="h100")
    assert graph.meta.get("unmatched_times", {}).get("h100") is None
    conv1 = graph.node("conv1").times["h100"]
    assert conv1.fwd_s == pytest.approx(0.000331264 / 32)
    relu = graph.node("layer1.0.relu").times["h100"]  # called twice per step: split evenly
    assert graph.node("layer1.0.relu@1").times["h100"] == relu
    assert relu.fwd_s == pytest.approx(8.4e-05 / 32 / 2)
    assert "layer1.0.add" in graph.meta["untimed_nodes"]["h100"]
    with pytest.raises(InputError, match=r"profile \(model, batch, dtype\).*resnet18"):
        attach_profile(graph, "resnet18", batch=7)


def test_profiles_file_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="profiles file.*existing JSON file"):
        profiles_path(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    monkeypatch.setenv("SPLITOPT_PROFILES", str(bad))
    graph = profile(*toy.examples()["three_uses"])
    with pytest.raises(InputError, match="'profiles' list"):
        attach_profile(graph, "resnet18")


def test_model_specs(tmp_path, monkeypatch):
    g = profile_model("splitopt.profiler.toy:ThreeUses", example_inputs=(torch.randn(2, 6),))
    assert g.name == "splitopt.profiler.toy:ThreeUses" and "inp" in g
    with pytest.raises(InputError, match="model name: got 'resnet19'.*resnet18"):
        profile_model("resnet19")
    with pytest.raises(InputError, match="cannot be imported"):
        profile_model("no_such_pkg.models:make")
    with pytest.raises(InputError, match="has no callable 'nope'"):
        profile_model("splitopt.profiler.toy:nope")
    with pytest.raises(InputError, match="package.module:factory"):
        profile_model("bad spec:")
    with pytest.raises(InputError, match="Return \\(module, example_inputs\\)"):
        profile_model("splitopt.profiler.toy:ThreeUses")
    with pytest.raises(InputError, match="an nn.Module or a \\(module, example_inputs\\) pair"):
        profile_model("splitopt.profiler.toy:examples")
