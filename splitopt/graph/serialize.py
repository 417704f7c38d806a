"""The graph's JSON document (docs/formats.md): written, and read back naming bad fields."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitopt import limits
from splitopt.errors import MISSING, GraphError, only_fields, parse_json, read_text_file
from splitopt.graph.nodes import _node_from_dict, _time_to_dict
from splitopt.io import atomic_write

if TYPE_CHECKING:
    from splitopt.graph.core import LayerGraph

FORMAT = "splitopt.layergraph"
FORMAT_VERSION = 1
_GRAPH_FIELDS = ("format", "version", "name", "inputs", "output", "nodes", "edges", "meta")


def to_dict(graph: LayerGraph) -> dict[str, Any]:
    """The graph's JSON document, a fresh copy (``LayerGraph.to_dict``)."""
    nodes = []
    for n in graph.nodes:
        d: dict[str, Any] = {"name": n.name, "kind": n.kind, "fwd_flops": n.fwd_flops,
                             "bwd_flops": n.bwd_flops, "out_bytes": n.out_bytes,
                             "param_bytes": n.param_bytes}
        if n.act_bytes != n.out_bytes:
            d["act_bytes"] = n.act_bytes
        if n.times:
            d["times"] = {c: _time_to_dict(t) for c, t in n.times.items()}
        nodes.append(d)
    return {"format": FORMAT, "version": FORMAT_VERSION, "name": graph.name,
            "inputs": list(graph.inputs), "output": graph.output, "nodes": nodes,
            "edges": [list(e) for e in graph.edges], "meta": copy.deepcopy(graph.meta)}


def from_dict(cls: type[LayerGraph], doc: Mapping[str, Any]) -> LayerGraph:
    """A validated ``cls`` graph from its JSON document (``LayerGraph.from_dict``)."""
    if not isinstance(doc, Mapping):
        raise GraphError("graph document", type(doc).__name__, "a JSON object")
    only_fields("graph", doc, _GRAPH_FIELDS, GraphError)
    if doc.get("format", FORMAT) != FORMAT:
        raise GraphError("format", doc.get("format"), f"{FORMAT!r}")
    version = doc.get("version", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:
        raise GraphError("version", version, f"{FORMAT_VERSION} (this splitopt reads graph "
                         f"format version {FORMAT_VERSION})")
    for key in ("nodes", "edges", "inputs", "output"):
        if key not in doc:
            raise GraphError(key, MISSING, "a required field of the graph document",
                             "See docs/formats.md.")
    for key in ("nodes", "edges", "inputs"):
        if not isinstance(doc[key], list):
            raise GraphError(key, doc[key], "a JSON list")
    nodes = [_node_from_dict(i, d) for i, d in enumerate(doc["nodes"])]
    edges = []
    for i, e in enumerate(doc["edges"]):
        if not isinstance(e, (list, tuple)) or len(e) != 2:
            raise GraphError(f"edges[{i}]", e, "a [producer, consumer] pair of node names")
        edges.append((e[0], e[1]))
    meta = {} if doc.get("meta") is None else doc["meta"]
    if not isinstance(meta, Mapping):
        raise GraphError("meta", meta, "a JSON object")
    limits.check_nesting("meta", meta, GraphError)  # before deepcopy recurses into it
    return cls(nodes, edges, list(doc["inputs"]), doc["output"], name=doc.get("name", ""),
               meta=copy.deepcopy(dict(meta)))


def to_json(graph: LayerGraph, indent: int | None = None) -> str:
    """The graph as JSON text (``LayerGraph.to_json``)."""
    return json.dumps(to_dict(graph), indent=indent)


def from_json(cls: type[LayerGraph], text: str) -> LayerGraph:
    """A validated ``cls`` graph from JSON text (``LayerGraph.from_json``)."""
    if not isinstance(text, (str, bytes)):
        raise GraphError("graph JSON", type(text).__name__, "a JSON text (str)")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return from_dict(cls, parse_json(text, "graph JSON", error=GraphError))


def save(graph: LayerGraph, path: str | Path) -> None:
    """Write the graph as JSON, atomically (``LayerGraph.save``)."""
    atomic_write(path, to_json(graph, indent=1))


def load(cls: type[LayerGraph], path: str | Path) -> LayerGraph:
    """Read a graph JSON file (``LayerGraph.load``)."""
    text = read_text_file(path, "graph file", "an existing JSON file", GraphError)
    return from_json(cls, text)
