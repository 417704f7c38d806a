"""GPT-style models split and train equal to unsplit training.

Cuts through the middle of attention, right after the token embedding (``transformer.wte``, whose
weight ``lm_head`` reuses: tied across the cut), and half-way; the server part holds its own copy
of every weight (as a server process does) and tied weights get the sum of both sides'
gradients before the optimisers step. The zoo's GPT-2 and Hugging Face's (default config, tiny
sizes; skipped when transformers is absent).
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from splitopt import zoo  # noqa: E402
from splitopt.execute.split import Splitter  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402
from splitopt.profiler.capture import capture  # noqa: E402
from splitopt.profiler.outputs import multi_output_groups  # noqa: E402
from splitopt.zoo._losses import lm_loss  # noqa: E402

SIZES = {"n_layer": 2, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    with toy.one_thread():
        yield


def zoo_gpt2():
    model, (ids,) = zoo.build("gpt2", batch_size=3, seq_len=8, dropout=0.0, **SIZES)
    return model, ids


def hf_gpt2():
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=16,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=0, eos_token_id=0)  # the rest: the defaults
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    return model, torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))


def logits_of(out):
    return out if isinstance(out, torch.Tensor) else out.logits


def cuts(graph):
    """After the embedding (tied weight across), inside attention (v crosses), half-way."""
    att = "transformer.h.0.attn"
    v = [n for n in graph.names if n.startswith(f"{att}.c_attn:")]
    inside = graph.pred_closure([n for n in graph.names if n.startswith(f"{att}.")
                                 and "matmul" not in n and "c_proj" not in n
                                 and "dropout" not in n and n not in v[2:]])
    prefixes = graph.chain_prefixes()
    return {"embedding": graph.pred_closure(["transformer.wte"]), "attention": inside,
            "half": prefixes[len(prefixes) // 2]}


def train(step_fn, steps=3):
    return [step_fn() for _ in range(steps)]


@pytest.mark.parametrize("build", [zoo_gpt2, hf_gpt2], ids=["zoo", "hf"])
@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_split_gpt2_trains_equal_to_unsplit(build, optim):
    model, ids = build()
    graph = profile(model, (ids,))
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2)}[optim]
    ref = copy.deepcopy(model)
    opt = make(list(ref.parameters()))

    def ref_step():
        logits = logits_of(ref(ids))
        loss = lm_loss(logits, ids)
        opt.zero_grad()
        loss.backward()
        grads = {k: p.grad.clone() for k, p in ref.named_parameters()}
        opt.step()
        return logits.detach(), grads

    want = train(ref_step)
    for label, s in cuts(graph).items():
        mine = copy.deepcopy(model)
        sp = Splitter(mine, (ids,), graph).split(s).separate()
        if label == "embedding":
            assert sp.tied, "wte / lm_head must be tied across this cut"
        opt_d, opt_s = make(list(sp.device.parameters())), make(list(sp.server.parameters()))

        def split_step(sp=sp, opt_d=opt_d, opt_s=opt_s):
            acts = sp.device(ids)
            ins = [a.detach().requires_grad_(a.is_floating_point()) for a in acts]
            logits = logits_of(sp.server(*ins))
            opt_d.zero_grad()
            opt_s.zero_grad()
            lm_loss(logits, ids).backward()
            pairs = [(a, i.grad) for a, i in zip(acts, ins) if i.grad is not None]
            torch.autograd.backward([a for a, _ in pairs], [g for _, g in pairs])
            sp.sum_tied_grads()
            grads = {**{k: p.grad.clone() for k, p in sp.server.named_parameters()},
                     **{k: p.grad.clone() for k, p in sp.device.named_parameters()}}
            opt_d.step()
            opt_s.step()
            return logits.detach(), grads

        got = train(split_step)
        for (lw, gw), (lg, gg) in zip(want, got):
            torch.testing.assert_close(lg, lw, msg=label)
            for k, g in gg.items():
                torch.testing.assert_close(g, gw[_ref_name(ref, k)], msg=f"{label} {k}")
        final = dict(ref.named_parameters())
        for part in (sp.device, sp.server):
            for k, p in part.named_parameters():
                torch.testing.assert_close(p, final[_ref_name(ref, k)], msg=f"{label} {k}")


def _ref_name(ref, name):
    """The name under which ``ref.named_parameters()`` lists the parameter ``name`` (tied once)."""
    names = dict(ref.named_parameters())
    if name in names:
        return name
    p = dict(ref.named_parameters(remove_duplicate=False))[name]
    return next(k for k, q in names.items() if q is p)


def test_hf_gpt2_with_default_config_profiles_as_it_comes():
    model, ids = hf_gpt2()
    assert model.config.use_cache is True
    graph = profile(model, (ids,))
    assert graph.meta["capture"] == "export", graph.meta
    assert model.config.use_cache is True  # turned off for the capture only
    assert {"transformer.wte", "lm_head", "transformer.h.1.attn.c_attn:2"} <= set(graph.names)
    cap = capture(model, (ids,))
    assert multi_output_groups(cap.gm, cap.group, cap.values) == []


def test_a_size_the_server_can_read_off_a_tensor_it_receives_is_not_sent():
    model, ids = zoo_gpt2()
    graph = profile(model, (ids,))
    s = graph.pred_closure(["transformer.wte"])  # positions (arange of ids.size(1)) on the server
    sp = Splitter(model, (ids,), graph, capture="fx").split(s)
    # ids.size(1) is dim 1 of the embedding output (batch, seq, n_embd): read there, not sent
    assert sp.scalars == []
    sent = sp.device(ids)
    assert len(sent) == len(sp.boundary) == 1
    torch.testing.assert_close(sp.server(*sent), model(ids))
    longer = torch.randint(0, 50, (2, 11))  # a fx part follows the sizes it is given
    torch.testing.assert_close(sp.server(*sp.device(longer)), model(longer))


class MeanOverTokens(nn.Module):
    """The device sums over the tokens; the server divides by their number (a size it lacks)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        total = self.emb(ids).sum(dim=1)
        return self.head(total / ids.size(1))


def test_a_size_no_received_tensor_has_crosses_as_a_scalar():
    model = MeanOverTokens()
    ids = torch.randint(0, 10, (3, 7), generator=torch.Generator().manual_seed(0))
    graph = profile(model, (ids,))
    side = [s for s in graph.chain_prefixes() if any(n.startswith("sum") for n in s)][0]
    sp = Splitter(model, (ids,), graph, capture="fx").split(side)
    assert sp.scalars, "7 tokens: no dimension of the (batch, 4) sum"
    sent = sp.device(ids)
    assert [tuple(t.shape) for t in sent[len(sp.boundary):]] == [()] * len(sp.scalars)
    torch.testing.assert_close(sp.server(*sent), model(ids))
    longer = torch.randint(0, 10, (2, 11))
    torch.testing.assert_close(sp.server(*sp.device(longer)), model(longer))


@pytest.mark.parametrize("build", [zoo_gpt2, hf_gpt2], ids=["zoo", "hf"])
def test_profile_records_the_tied_embedding(build):
    model, ids = build()
    graph = profile(model, (ids,))
    assert graph.meta["tied"] == [["transformer.wte", "lm_head", 50 * 16 * 4.0]]
    assert graph.node("lm_head").param_bytes == 0  # counted once, on the embedding


def test_cut_table_gives_the_bytes_of_weights_tied_across_each_cut():
    from splitopt.costs import CutTable

    model, ids = zoo_gpt2()
    graph = profile(model, (ids,))
    inside = graph.pred_closure(["transformer.wte"])
    table = CutTable.from_sets(graph, [inside, frozenset(graph.inputs),
                                       frozenset(graph.names) - {"lm_head", graph.output}])
    assert table.tied_bytes.tolist() == [50 * 16 * 4.0, 0.0, 50 * 16 * 4.0]
