"""LayerGraph: the DAG of a model with per-sample costs, as docs/cost_model.md defines it.

A node is a layer or operator; an edge ``(u, w)`` means ``w`` consumes the output of ``u``. All
numbers are per sample: multiply by the batch size. A LayerGraph is immutable once built and
validated; every transformation (block contraction, attaching measured times) returns a new graph.

Modules: ``core`` (LayerGraph: validation, arrays, splits), ``nodes`` (Node, NodeTime and their
JSON form), ``build`` (edge arrays, topological order, module-name blocks), ``contract`` (block
contraction and expansion), ``serialize`` (the graph's JSON document).
"""

from splitopt.graph.build import block_key
from splitopt.graph.core import LayerGraph
from splitopt.graph.nodes import Node, NodeTime
from splitopt.graph.serialize import FORMAT, FORMAT_VERSION

__all__ = ["FORMAT", "FORMAT_VERSION", "LayerGraph", "Node", "NodeTime", "block_key"]
