"""The LayerGraph JSON format round-trips losslessly (property test over random DAGs)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitopt import LayerGraph, Node
from splitopt.graph import FORMAT, FORMAT_VERSION
from splitopt.testing import random_dag

# awkward floats: subnormal, huge, many digits, exact zero
_FLOATS = [0.0, 5e-324, 999999999999999.9, 0.1 + 0.2, 1 / 3, 2.0 ** 49 + 0.5, 123456789.0]


def _with_times(g: LayerGraph, rng: np.random.Generator) -> LayerGraph:
    """Attach measured times for two device classes to a random subset of nodes."""
    for cls in ("h100", "jetson-nano"):
        picked = [n for n in g.names if rng.random() < 0.5]
        g = g.with_times(cls, {n: (float(rng.exponential(1e-3)), float(rng.exponential(2e-3)))
                               for n in picked})
    return g


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 25), n_inputs=st.integers(1, 3),
       skip=st.floats(0.0, 1.0), zero=st.sampled_from([0.0, 0.3]), times=st.booleans(),
       contract=st.booleans())
def test_json_round_trip_is_lossless(seed, n, n_inputs, skip, zero, times, contract):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, n, n_inputs=n_inputs, skip_prob=skip, zero_prob=zero,
                   scale=float(10 ** rng.uniform(-3, 6)))
    if times:
        g = _with_times(g, rng)
    if contract and n >= 3:  # blocks with partly measured members: act_bytes, unmeasured flops
        g = g.contract({"blk": [f"n{i}" for i in range(n // 3, n // 3 + 2)]})
    g = LayerGraph(g.nodes, g.edges, g.inputs, g.output, name=g.name,
                   meta={**g.meta, "captured_by": "test", "seed": seed, "nested": {"a": [1, 2.5]}})
    text = g.to_json()
    back = LayerGraph.from_json(text)
    assert back == g
    assert back.names == g.names  # same topological order
    assert back.to_json() == text  # a fixed point
    for a, b in zip(g.nodes, back.nodes, strict=True):  # floats bit-exact, not approximately
        for attr in ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes"):
            assert getattr(a, attr).hex() == getattr(b, attr).hex()
        assert a.times == b.times


def test_awkward_floats_are_exact(tmp_path):
    nodes = [Node("x", 0, 0, _FLOATS[1], 0, "input")]
    nodes += [Node(f"n{i}", v, _FLOATS[-1 - i], v, v, times={"c": _time(v)})
              for i, v in enumerate(_FLOATS)]
    nodes.append(Node("y", 1, 2, 3, 4, "output"))
    names = [n.name for n in nodes]
    g = LayerGraph(nodes, list(zip(names, names[1:], strict=False)), ["x"], "y", name="ünïcode ✓")
    p = tmp_path / "g.json"
    g.save(p)
    back = LayerGraph.load(p)
    assert back == g
    assert [n.fwd_flops for n in back.nodes] == [n.fwd_flops for n in g.nodes]


def _time(v: float):
    from splitopt import NodeTime

    return NodeTime(min(v, 1.0), min(v, 1.0) * 2)


def test_document_fields():
    g = random_dag(np.random.default_rng(0), 3)
    doc = json.loads(g.to_json())
    assert doc["format"] == FORMAT and doc["version"] == FORMAT_VERSION
    assert set(doc) == {"format", "version", "name", "inputs", "output", "nodes", "edges", "meta"}
    assert set(doc["nodes"][1]) == {"name", "kind", "fwd_flops", "bwd_flops", "out_bytes",
                                    "param_bytes"}
    # bwd_flops is optional on input and defaults to twice the forward FLOPs
    del doc["nodes"][1]["bwd_flops"]
    back = LayerGraph.from_dict(doc)
    assert back.nodes[1].bwd_flops == 2 * back.nodes[1].fwd_flops
    # the document handed out is a copy: editing it leaves the graph alone
    doc2 = g.to_dict()
    doc2["meta"]["x"] = 1
    doc2["nodes"].clear()
    assert "x" not in g.meta and len(g) == 5


def test_equality_sees_every_part():
    g = random_dag(np.random.default_rng(1), 4)
    assert g == LayerGraph.from_json(g.to_json())
    assert g != LayerGraph(g.nodes, g.edges, g.inputs, g.output, name="other")
    assert g != LayerGraph(g.nodes, g.edges, g.inputs, g.output, meta={"k": 1})
    assert g != g.with_times("c", {"n0": (1.0, 1.0)})
    assert g != LayerGraph(g.nodes, [e for e in g.edges if e != ("n0", "n1")] + [("in0", "n1")],
                           g.inputs, g.output)
