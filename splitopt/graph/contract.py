"""Block contraction: repeated components merged into one node each, and cuts mapped back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from splitopt.errors import GraphError
from splitopt.graph.build import block_key
from splitopt.graph.nodes import Node, NodeTime

if TYPE_CHECKING:
    from splitopt.graph.core import LayerGraph


def blocks(graph: LayerGraph) -> dict[str, list[str]]:
    """Repeated components found from module names (``LayerGraph.blocks``)."""
    groups: dict[str, list[str]] = {}
    for node in graph.nodes:
        key = block_key(node.name)
        if key is not None and node.kind not in ("input", "output"):
            groups.setdefault(key, []).append(node.name)
    return {k: v for k, v in groups.items() if len(v) >= 2}


def contract(graph: LayerGraph, groups: Mapping[str, Iterable[str]] | None = None) -> LayerGraph:
    """The graph with each group contracted into one node (``LayerGraph.contract``)."""
    groups = blocks(graph) if groups is None else {k: list(v) for k, v in groups.items()}
    rep = _owners(graph, groups)
    members: dict[str, list[Node]] = {}
    for n in graph.nodes:
        members.setdefault(rep[n.name], []).append(n)
    nodes = [_merged(graph, key, ms, rep) for key, ms in members.items()]
    edges = {(rep[u], rep[w]) for u, w in graph.edges if rep[u] != rep[w]}
    old = graph.meta.get("members", {})
    composed = {k: v for k, v in old.items() if rep.get(k, k) == k}
    for g, ms in groups.items():
        composed[g] = [x for m in ms for x in old.get(m, [m])]
    meta = {**graph.meta, "members": composed}
    try:
        return type(graph)(nodes, sorted(edges), graph.inputs, graph.output, name=graph.name,
                          meta=meta)
    except GraphError as err:
        raise GraphError("groups", list(groups)[:5], "convex groups (no path leaving a group "
                         "and re-entering it)", str(err)) from None


def _owners(graph: LayerGraph, groups: Mapping[str, list[str]]) -> dict[str, str]:
    """Validate groups for :func:`contract`; map every node name to its contracted name."""
    owner: dict[str, str] = {}
    for g, ms in groups.items():
        for m in ms:
            graph._idx(m)
            if m in owner:
                raise GraphError("groups", m, "each node in at most one group")
            if m in graph.inputs or m == graph.output:
                raise GraphError("groups", m, "groups without the input or output nodes")
            owner[m] = g
    for g, ms in groups.items():
        if g in graph.index and g not in ms:
            raise GraphError("groups", g, "group names that are not names of nodes outside "
                             "the group", "Rename the group or add that node to it.")
    return {n.name: owner.get(n.name, n.name) for n in graph.nodes}


def _merged(graph: LayerGraph, key: str, members: list[Node], rep: Mapping[str, str]) -> Node:
    """The node that replaces ``members`` (all mapped to ``key``) in a contraction."""
    if len(members) == 1 and members[0].name == key:
        return members[0]
    leaving = [m for m in members
               if m.name == graph.output or any(rep[s] != key for s in graph.succs(m.name))]
    times = {}
    for cls in sorted({c for m in members for c in m.times}):
        measured = [m.times[cls] for m in members if cls in m.times]
        rest = [m for m in members if cls not in m.times]
        times[cls] = NodeTime(
            sum(t.fwd_s for t in measured), sum(t.bwd_s for t in measured),
            sum(t.unmeasured_fwd_flops for t in measured) + sum(m.fwd_flops for m in rest),
            sum(t.unmeasured_bwd_flops for t in measured) + sum(m.bwd_flops for m in rest))
    return Node(key, sum(m.fwd_flops for m in members), sum(m.bwd_flops for m in members),
                sum(m.out_bytes for m in leaving), sum(m.param_bytes for m in members),
                "block", times, sum(m.act_bytes for m in members))


def expand(graph: LayerGraph, names: Iterable[str]) -> frozenset[str]:
    """A contracted graph's node set as original node names (``LayerGraph.expand``)."""
    members = graph.meta.get("members", {})
    out: set[str] = set()
    for n in names:
        out.update(members.get(n, [n]))
    return frozenset(out)
