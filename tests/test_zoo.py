"""The reference model zoo: registry, exact parameter counts, names against the H100 profile."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import splitopt.zoo as zoo
from splitopt.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PROFILE_PATHS = [
    ROOT / "splitopt" / "data" / "h100_layer_profiles.json",
    ROOT.parent / "shared" / "data" / "profiles" / "h100_layer_profiles.json",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on cores shared with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def h100_profile() -> dict[str, list[dict]]:
    """Leaf layers of the batch-32 float32 profile of each model in the measured H100 file."""
    path = next((p for p in PROFILE_PATHS if p.exists()), None)
    if path is None:
        pytest.skip("h100_layer_profiles.json not found")
    doc = json.loads(path.read_text())
    return {p["model"]: p["layers"] for p in doc["profiles"]
            if p["batch"] == 32 and p["dtype"] == "torch.float32"}


def test_names_lists_the_registry():
    assert {"digits_cnn", "resnet18", "resnet50"} <= set(zoo.names())
    assert all(zoo.entry(n).name == n for n in zoo.names())


def test_importing_the_zoo_does_not_import_torch():
    code = "import sys, splitopt.zoo as z; z.names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_factories_stay_functions_after_their_modules_are_imported():
    for name in zoo.names():
        zoo.build(name, device="meta")
    for attr in zoo._LAZY:
        assert callable(getattr(zoo, attr)) and not isinstance(getattr(zoo, attr), type(zoo))


def test_unknown_name_is_an_input_error_listing_the_zoo():
    with pytest.raises(InputError, match=r"model name: got 'resnet19'.*resnet18.*digits_cnn|"
                                         r"model name: got 'resnet19'.*digits_cnn.*resnet18"):
        zoo.build("resnet19")
    with pytest.raises(InputError, match="model name: got 'nope'"):
        zoo.loss_fn("nope")


@pytest.mark.parametrize("name", zoo.names())
def test_exact_parameter_count_on_meta(name):
    model, inputs = zoo.build(name, device="meta")
    assert _n_params(model) == zoo.entry(name).params
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(x.device.type == "meta" for x in inputs)


@pytest.mark.parametrize(("depth", "count"), [(34, 21_797_672), (101, 44_549_160),
                                              (152, 60_192_808)])
def test_other_resnet_depths_match_torchvision(depth, count):
    with torch.device("meta"):
        model = zoo.resnet(depth)
    assert _n_params(model) == count


@pytest.mark.parametrize(("widths", "count"), [((1.0, 1.1), 7_794_184), ((1.1, 1.2), 9_109_994),
                                              ((1.2, 1.4), 12_233_232)])
def test_efficientnet_b1_to_b3_scalings_match_torchvision(widths, count):
    with torch.device("meta"):
        model = zoo.efficientnet_b0(width_mult=widths[0], depth_mult=widths[1])
    assert _n_params(model) == count


@pytest.mark.parametrize("name", zoo.names())
def test_module_names_and_types_match_the_h100_profile(name, h100_profile):
    if name not in h100_profile:
        pytest.skip(f"{name} is not in the measured profile")
    model, _ = zoo.build(name, device="meta")
    ours = {n: type(m).__name__ for n, m in model.named_modules()}
    layers = h100_profile[name]
    missing = [la["name"] for la in layers if la["name"] not in ours]
    assert not missing, f"{len(missing)}/{len(layers)} profiled names missing, e.g. {missing[:5]}"
    wrong = [(la["name"], la["type"], ours[la["name"]]) for la in layers
             if ours[la["name"]] != la["type"]]
    assert not wrong, wrong[:5]
    own = {n: sum(p.numel() * 4 for p in m.parameters(recurse=False))
           for n, m in model.named_modules()}
    # the profile counts a tied weight at each module that uses it (gpt2's lm_head and wte)
    bad_bytes = [la["name"] for la in layers
                 if la["param_bytes"] != own[la["name"]] and la["name"] != "lm_head"]
    assert not bad_bytes, bad_bytes[:5]


def test_image_inputs_and_shapes():
    model, (x,) = zoo.build("resnet18", batch_size=2, image_size=64)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert model(x).shape == (2, 1000)
    _, (x,) = zoo.build("resnet18", device="meta")
    assert x.shape == (1, 3, 224, 224)


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, (xa,) = zoo.build("digits_cnn", batch_size=3)
    b, (xb,) = zoo.build("digits_cnn", batch_size=3)
    c, _ = zoo.build("digits_cnn", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(xa, xb)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match=r"batch_size: got 0; allowed: an integer >= 1"):
        zoo.build("digits_cnn", batch_size=0)
    with pytest.raises(InputError, match=r"config of 'resnet18': got 'depth'.*num_classes"):
        zoo.build("resnet18", depth=34)
    with pytest.raises(InputError, match=r"seed: got 'x'; allowed: an integer >= 0"):
        zoo.build("digits_cnn", seed="x")
    with pytest.raises(InputError, match=r"device: got 'gpu7'"):
        zoo.build("digits_cnn", device="gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"device: got 'cuda'.*torch says"):
            zoo.build("digits_cnn", device="cuda")
    with pytest.raises(InputError, match=r"image_size: got 8; allowed: an integer >= 32"):
        zoo.build("resnet18", image_size=8, device="meta")
    with pytest.raises(InputError, match=r"depth: got 20; allowed: one of \[18, 34"):
        zoo.resnet(20)


def test_classification_loss_and_targets():
    model, inputs = zoo.build("resnet18", batch_size=2, image_size=32, num_classes=7)
    target = zoo.make_targets("resnet18", inputs, num_classes=7)
    assert target.shape == (2,) and int(target.max()) < 7
    loss = zoo.loss_fn("resnet18")(model(*inputs), target)
    loss.backward()
    assert loss.ndim == 0 and model.conv1.weight.grad is not None
    with pytest.raises(InputError, match="target: got None"):
        zoo.loss_fn("digits_cnn")(torch.zeros(2, 10), None)


@pytest.mark.parametrize("name", ["digits_cnn", "resnet18"])
def test_traceable_by_fx_and_export(name):
    kw = {"image_size": 32} if name != "digits_cnn" else {}
    model, inputs = zoo.build(name, batch_size=2, **kw)
    model.eval()
    with torch.no_grad():
        want = model(*inputs)
        gm = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(gm(*inputs), want)
        ep = torch.export.export(model, inputs)
        torch.testing.assert_close(ep.module()(*inputs), want)


def test_resnet_skip_adds_are_out_of_place():
    gm = torch.fx.symbolic_trace(zoo.resnet(18))
    targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count("<built-in function add>") == 8  # one per residual block
    assert not any(re.search(r"iadd", t) for t in targets)


def test_digits_cnn_trains_above_90_percent():
    x_tr, y_tr, x_te, y_te = zoo.load_digits_tensors()
    model, _ = zoo.build("digits_cnn")
    loss = zoo.loss_fn("digits_cnn")
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        for idx in torch.randperm(len(y_tr), generator=gen).split(64):
            opt.zero_grad()
            loss(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    assert acc > 0.9, acc
    with pytest.raises(InputError, match="test_fraction: got 1.5"):
        zoo.load_digits_tensors(test_fraction=1.5)


def test_stochastic_depth_drops_rows_in_training_only():
    from splitopt.zoo.efficientnet import StochasticDepth

    sd = StochasticDepth(0.5)
    x = torch.ones(4000, 2, 1, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        y = sd(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(y[:, 0], y[:, 1])  # whole rows, not single elements
    assert abs(y.mean().item() - 1.0) < 0.1
    assert torch.equal(sd.eval()(x), x)
