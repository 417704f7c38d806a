"""Property test: on random layer DAGs, every random predecessor-closed cut computes the model."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from splitopt.execute.split import Splitter  # noqa: E402
from splitopt.profiler import profile, toy  # noqa: E402


@st.composite
def dags(draw):
    n = draw(st.integers(2, 6))
    preds = []
    for i in range(n):
        first = i - 1  # a chain backbone, plus random skips from earlier layers or the input
        extra = draw(st.lists(st.integers(-1, i - 1), max_size=2))
        preds.append([first, *extra])
    seeds = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
    return preds, seeds


@settings(max_examples=8, deadline=None)
@given(dags())
def test_random_dag_random_cuts(case):
    preds, seeds = case
    with toy.one_thread():
        torch.manual_seed(0)
        model = toy.RandomDAGNet(preds)
        x = torch.randn(2, 3)
        graph = profile(model, (x,), capture="fx")
        assert graph.fwd_flops.sum() > 0
        splitter = Splitter(model, (x,), graph)
        inner = [n for n in graph.names if n not in (*graph.inputs, graph.output)]
        for seed in seeds:
            pick = [inner[(seed >> k) % len(inner)] for k in (0, 7)]
            s = graph.pred_closure([*pick, *graph.inputs])
            ref = copy.deepcopy(model)
            sp = splitter.split(s)
            assert {b.split(":")[0] for b in sp.boundary} == set(graph.boundary(s))
            out = sp(x)
            (out ** 2).sum().backward()
            want = ref(x)
            (want ** 2).sum().backward()
            torch.testing.assert_close(out, want)
            grads = dict(ref.named_parameters())
            for k, p in model.named_parameters():
                torch.testing.assert_close(p.grad, grads[k].grad)
            model.zero_grad()
