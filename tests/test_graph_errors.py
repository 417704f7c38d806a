"""Bad graphs (issue 2, "Bad input") raise GraphError naming field, value and what is allowed."""

from __future__ import annotations

import copy
import json

import pytest
from _corrupt import corrupt, json_values
from hypothesis import given, settings
from hypothesis import strategies as st

from splitopt import GraphError, InputError, LayerGraph, Node, NodeTime


def _doc() -> dict:
    return {"format": "splitopt.layergraph", "version": 1, "name": "tiny",
            "inputs": ["x"], "output": "y",
            "nodes": [{"name": "x", "kind": "input", "fwd_flops": 0, "out_bytes": 12,
                       "param_bytes": 0},
                      {"name": "a", "fwd_flops": 100, "bwd_flops": 200, "out_bytes": 8,
                       "param_bytes": 4},
                      {"name": "y", "kind": "output", "fwd_flops": 1, "out_bytes": 4,
                       "param_bytes": 0}],
            "edges": [["x", "a"], ["a", "y"]], "meta": {}}


def test_valid_document_loads():
    assert len(LayerGraph.from_dict(_doc())) == 3


def test_cycle_names_the_cycle():
    nodes = [Node("x", kind="input"), Node("a"), Node("b"), Node("c"), Node("y")]
    edges = [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "y")]
    with pytest.raises(GraphError, match=r"edges: got 'b -> c -> a'; allowed: an acyclic graph "
                                         r"\(a DAG\)\. The edges contain the cycle "
                                         r"b -> c -> a -> b; remove one of its edges\."):
        LayerGraph(nodes, edges, ["x"], "y")
    doc = _doc()
    doc["edges"].append(["y", "x"])  # also makes x a consumer: the cycle is reported first
    with pytest.raises(GraphError, match="acyclic"):
        LayerGraph.from_dict(doc)


def test_self_loop():
    with pytest.raises(GraphError, match="no self-loop"):
        LayerGraph([Node("x", kind="input"), Node("y")], [("x", "y"), ("y", "y")], ["x"], "y")


def test_edge_to_unknown_node():
    doc = _doc()
    doc["edges"].append(["a", "ghost"])
    with pytest.raises(GraphError, match=r"edge: got \('a', 'ghost'\); allowed: edges between "
                                         r"nodes of the graph\. Node 'ghost' is unknown\."):
        LayerGraph.from_dict(doc)
    doc["edges"][-1] = ["a", ["not", "a", "name"]]
    with pytest.raises(GraphError, match="edges between nodes of the graph"):
        LayerGraph.from_dict(doc)
    doc["edges"][-1] = ["a"]
    with pytest.raises(GraphError, match=r"edges\[2\]: got \['a'\]; allowed: a \[producer, "
                                         r"consumer\] pair"):
        LayerGraph.from_dict(doc)


@pytest.mark.parametrize("field", ["fwd_flops", "bwd_flops", "out_bytes", "param_bytes",
                                   "act_bytes"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), float("-inf"), "ten", None])
def test_bad_numbers_in_node(field, value):
    if value is None and field in ("bwd_flops", "act_bytes"):
        return  # None means "use the default" for these two
    shown = {"ten": "'ten'"}.get(value, repr(value)) if not isinstance(value, float) else None
    pattern = rf"node 'a'\.{field}: got {shown or '.*'}; allowed: a number in \[0, 1e1[58]\]"
    with pytest.raises(GraphError, match=pattern):
        Node("a", **{"fwd_flops": 1.0, field: value})


@pytest.mark.parametrize("text", ["-5", "NaN", "Infinity", "-Infinity"])
def test_bad_numbers_in_json(text):
    doc = json.dumps(_doc()).replace('"fwd_flops": 100', f'"fwd_flops": {text}')
    with pytest.raises(GraphError, match=r"node 'a'\.fwd_flops: got .*allowed: a number in "
                                         r"\[0, 1e18\]"):
        LayerGraph.from_json(doc)


def test_bad_measured_time():
    with pytest.raises(GraphError, match=r"node 'a'\.times\['h100'\]\.bwd_s: got -1"):
        Node("a", 1.0, times={"h100": NodeTime(1.0, -1.0)})
    with pytest.raises(GraphError, match=r"times\['h100'\]: got \(1.0, 2.0\); allowed: a NodeTime"):
        Node("a", 1.0, times={"h100": (1.0, 2.0)})
    doc = _doc()
    doc["nodes"][1]["times"] = {"h100": {"fwd_s": 1.0}}
    with pytest.raises(GraphError, match=r"times\['h100'\].*'fwd_s' and 'bwd_s'"):
        LayerGraph.from_dict(doc)
    doc["nodes"][1]["times"] = {"h100": {"fwd_s": 1.0, "bwd_s": float("nan")}}
    with pytest.raises(GraphError, match=r"times\['h100'\]\.bwd_s: got nan"):
        LayerGraph.from_dict(doc)


@pytest.mark.parametrize("key", ["nodes", "edges", "inputs", "output"])
def test_missing_top_level_field(key):
    doc = _doc()
    del doc[key]
    with pytest.raises(GraphError, match=rf"^{key}: missing; allowed: a required field of the "
                                         r"graph document\. See docs/formats\.md\.$"):
        LayerGraph.from_dict(doc)


@pytest.mark.parametrize("key", ["fwd_flops", "out_bytes", "param_bytes"])
def test_missing_node_field(key):
    doc = _doc()
    del doc["nodes"][1][key]
    with pytest.raises(GraphError, match=rf"^node 'a'\.{key}: missing; allowed: a required field"):
        LayerGraph.from_dict(doc)


def test_malformed_documents():
    with pytest.raises(GraphError, match=r"graph JSON: .*allowed: valid JSON"):
        LayerGraph.from_json('{"nodes": [')
    with pytest.raises(GraphError, match="graph document: got 'list'; allowed: a JSON object"):
        LayerGraph.from_json("[]")
    with pytest.raises(GraphError, match="format: got 'onnx'"):
        LayerGraph.from_dict({**_doc(), "format": "onnx"})
    for key, bad in (("nodes", {"x": 1}), ("edges", 7), ("inputs", "x")):
        with pytest.raises(GraphError, match=f"{key}: got .*; allowed: a JSON list"):
            LayerGraph.from_dict({**_doc(), key: bad})
    doc = _doc()
    doc["nodes"][1] = {"fwd_flops": 1}
    with pytest.raises(GraphError, match=r"nodes\[1\]\.name: .*a string 'name'"):
        LayerGraph.from_dict(doc)
    with pytest.raises(GraphError, match="meta: got 3; allowed: a JSON object"):
        LayerGraph.from_dict({**_doc(), "meta": 3})


def test_bad_terminals_and_names():
    nodes = [Node("x", kind="input"), Node("a"), Node("y")]
    edges = [("x", "a"), ("a", "y")]
    with pytest.raises(GraphError, match="unique node names"):
        LayerGraph([*nodes, Node("a")], edges, ["x"], "y")
    with pytest.raises(GraphError, match=r"inputs: got 'x'; allowed: a list of input node names\. "
                                         r"Write \['x'\]\."):
        LayerGraph(nodes, edges, "x", "y")
    with pytest.raises(GraphError, match="inputs: got 'q'; allowed: names of nodes in the graph"):
        LayerGraph(nodes, edges, ["q"], "y")
    with pytest.raises(GraphError, match=r"input 'a': got \['x'\]; allowed: no predecessors"):
        LayerGraph(nodes, edges, ["x", "a"], "y")
    with pytest.raises(GraphError, match=r"output 'a': got \['y'\]; allowed: no successors"):
        LayerGraph(nodes, edges, ["x"], "a")
    with pytest.raises(GraphError, match="output: got 'zz'"):
        LayerGraph(nodes, edges, ["x"], "zz")
    with pytest.raises(GraphError, match="node.name: got ''; allowed: a non-empty string"):
        Node("")
    with pytest.raises(GraphError, match="at least one input"):
        LayerGraph(nodes, edges, [], "y")


def test_errors_are_input_errors_with_parts():
    doc = copy.deepcopy(_doc())
    doc["nodes"][1]["out_bytes"] = -3
    with pytest.raises(InputError) as info:
        LayerGraph.from_dict(doc)
    err = info.value
    assert isinstance(err, ValueError)  # catchable as a plain ValueError too
    assert (err.field, err.value, err.allowed) == ("node 'a'.out_bytes", -3,
                                                   "a number in [0, 1e15] (bytes per sample)")


def test_missing_file(tmp_path):
    with pytest.raises(GraphError, match="graph file: got .*nope.json'; allowed: an existing JSON"):
        LayerGraph.load(tmp_path / "nope.json")


_JSON = json_values("x", "a", "y")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_corrupted_document_gives_graph_error_or_loads(data):
    """Replacing or deleting any field of a valid document never escapes as a non-GraphError."""
    doc = _doc()
    corrupt(data, doc, _JSON)
    try:
        LayerGraph.from_dict(doc)
    except GraphError as err:
        assert err.field and err.allowed and "\n" not in str(err)
