"""GPT-2, BERT and ViT of the zoo: tying, attention against SDPA, tracing, FLOP visibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import splitopt.zoo as zoo
from splitopt.errors import InputError

TINY_GPT2 = {"n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 97, "n_positions": 16}
TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
             "intermediate_size": 64, "vocab_size": 97, "max_position_embeddings": 16}
TINY_VIT = {"image_size": 32, "num_layers": 2, "num_heads": 4, "hidden_dim": 32, "mlp_dim": 64}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on cores shared with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_gpt2_lm_head_is_tied_to_wte_and_counted_once():
    model, _ = zoo.build("gpt2", device="meta")
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.transformer.h[0].attn.c_attn.weight.shape == (768, 2304)  # Conv1D: (in, out)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808


def test_gpt2_xl_builds_on_meta_without_weights():
    model, (ids,) = zoo.build("gpt2", device="meta", n_layer=48, n_embd=1600, n_head=25)
    assert sum(p.numel() for p in model.parameters()) == 1_557_611_200
    assert ids.shape == (1, 128) and ids.device.type == "meta"
    assert all(p.device.type == "meta" for p in model.parameters())


def test_gpt2_attention_equals_causal_sdpa():
    model, (ids,) = zoo.build("gpt2", batch_size=2, **TINY_GPT2)
    model.eval()
    attn, x = model.transformer.h[0].attn, torch.randn(2, 9, 32)
    q, k, v = (t.unflatten(-1, (4, 8)).transpose(1, 2) for t in attn.c_attn(x).split(32, dim=2))
    want = attn.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True)
                       .transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(x), want)


def test_gpt2_is_causal_and_labels_give_the_lm_loss():
    model, (ids,) = zoo.build("gpt2", batch_size=2, seq_len=10, **TINY_GPT2)
    model.eval()
    logits = model(ids)
    assert logits.shape == (2, 10, 97)
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 97
    torch.testing.assert_close(model(changed)[:, :6], logits[:, :6])
    loss, logits2 = model(ids, labels=ids)
    torch.testing.assert_close(loss, zoo.loss_fn("gpt2")(logits, zoo.make_targets("gpt2", (ids,))))
    want = F.cross_entropy(logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, want)


def test_bert_attention_mask_ignores_padding():
    model, (ids,) = zoo.build("bert_base", batch_size=1, seq_len=12, **TINY_BERT)
    model.eval()
    mask = torch.ones_like(ids)
    mask[:, 8:] = 0
    seq, pooled = model.encode(ids, attention_mask=mask)
    seq_short, pooled_short = model.encode(ids[:, :8])
    torch.testing.assert_close(seq[:, :8], seq_short)
    torch.testing.assert_close(pooled, pooled_short)
    torch.testing.assert_close(model(ids), model.encode(ids)[1])
    assert model(ids).shape == (1, 32)


def test_bert_pooled_loss_trains_every_parameter():
    model, inputs = zoo.build("bert_base", batch_size=2, **TINY_BERT)
    loss = zoo.loss_fn("bert_base")(model(*inputs), zoo.make_targets("bert_base", inputs))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None and "token_type" not in n]
    assert not no_grad


def test_vit_forward_and_bad_image_size():
    model, (x,) = zoo.build("vit_b_16", batch_size=2, num_classes=5, **TINY_VIT)
    assert x.shape == (2, 3, 32, 32) and model(x).shape == (2, 5)
    assert model.encoder.pos_embedding.shape == (1, 5, 32)
    with pytest.raises(InputError, match="image_size: got 40; allowed: a positive multiple of"):
        zoo.build("vit_b_16", image_size=40, device="meta")


def test_bad_transformer_configs():
    with pytest.raises(InputError, match="n_embd: got 30; allowed: a multiple of n_head=4"):
        zoo.build("gpt2", device="meta", n_embd=30, n_head=4)
    with pytest.raises(InputError, match="n_layer: got 0; allowed: an integer >= 1"):
        zoo.gpt2(n_layer=0)
    with pytest.raises(InputError, match=r"seq_len: got 17; allowed: an integer in 1..16"):
        zoo.build("gpt2", seq_len=17, **TINY_GPT2)
    with pytest.raises(InputError, match="hidden_size: got 33"):
        zoo.bert_base(hidden_size=33, num_attention_heads=4)


def _leaves(model: torch.nn.Module) -> set[str]:
    # nn.MultiheadAttention uses out_proj's weights functionally: that module is never called;
    # stochastic depth is the identity in eval mode (and unused in blocks without a skip)
    return {n for n, m in model.named_modules() if not list(m.children())
            and not n.endswith(("self_attention.out_proj", "stochastic_depth"))}


@pytest.mark.parametrize(("name", "config"), [
    ("gpt2", TINY_GPT2), ("bert_base", TINY_BERT), ("vit_b_16", TINY_VIT),
    ("mobilenet_v2", {"width_mult": 0.25, "image_size": 32}),
    ("efficientnet_b0", {"width_mult": 0.25, "depth_mult": 0.5, "image_size": 32}),
])
def test_fx_and_export_reproduce_the_forward_and_keep_module_names(name, config):
    model, inputs = zoo.build(name, batch_size=2, **config)
    model.eval()
    with torch.no_grad():
        want = model(*inputs)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(*inputs), want)
        exported = torch.export.export(model, inputs)
        torch.testing.assert_close(exported.module()(*inputs), want)
    seen = {path for node in exported.graph.nodes
            for path, _ in (node.meta.get("nn_module_stack") or {}).values()}
    assert _leaves(model) <= seen, sorted(_leaves(model) - seen)[:5]


@pytest.mark.parametrize("name", zoo.names())
def test_every_full_size_model_traces_with_fx_on_meta(name):
    model, _ = zoo.build(name, device="meta")
    gm = torch.fx.symbolic_trace(model)
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    assert called <= {n for n, _ in model.named_modules()}
    # fx keeps torch.nn modules as leaves: each one that holds parameters must be called
    nn_leaves = {n for n in _leaves(model) if type(model.get_submodule(n)).__module__
                 .startswith("torch.nn") and list(model.get_submodule(n).parameters())}
    assert nn_leaves <= called, sorted(nn_leaves - called)[:5]


def test_flop_counter_sees_gpt2_attention_matmuls():
    cfg = {"n_layer": 1, "n_embd": 32, "n_head": 4, "vocab_size": 50, "n_positions": 16}
    model, (ids,) = zoo.build("gpt2", seq_len=8, **cfg)
    t, c, v = 8, 32, 50
    linear = 2 * t * (c * 3 * c + c * c + c * 4 * c + 4 * c * c) + 2 * t * c * v
    attention = 2 * (2 * t * t * c)  # q k^T and probs v over all heads
    with FlopCounterMode(display=False) as counter:
        model(ids)
    assert counter.get_total_flops() == linear + attention


@pytest.mark.parametrize("name", zoo.names())
def test_no_module_works_in_place(name):
    model, _ = zoo.build(name, device="meta")
    assert not [n for n, m in model.named_modules() if getattr(m, "inplace", False)]


@pytest.mark.parametrize(("name", "config"), [
    ("digits_cnn", {}), ("resnet18", {"image_size": 32}), ("gpt2", TINY_GPT2),
    ("bert_base", TINY_BERT), ("vit_b_16", TINY_VIT),
    ("efficientnet_b0", {"width_mult": 0.25, "depth_mult": 0.5, "image_size": 32}),
])
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # the first layer's input
def test_full_backward_hooks_attach_to_every_leaf(name, config):
    model, inputs = zoo.build(name, batch_size=2, **config)
    fired: set[str] = set()
    for leaf in _leaves(model):
        model.get_submodule(leaf).register_full_backward_hook(
            lambda m, gi, go, leaf=leaf: fired.add(leaf))
    zoo.loss_fn(name)(model(*inputs), zoo.make_targets(name, inputs, num_classes=10)).backward()
    with_params = {n for n in _leaves(model) if list(model.get_submodule(n).parameters())}
    assert with_params <= fired
