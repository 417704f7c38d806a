"""LayerGraph: the DAG of a model with per-sample costs, as COST_MODEL.md defines it.

A node is a layer or operator; an edge ``(u, w)`` means ``w`` consumes the output of ``u``. All numbers
are per sample: multiply by the batch size. A LayerGraph is immutable once built and validated; every
transformation (block contraction, attaching measured times) returns a new graph.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from splitopt.errors import GraphError

FORMAT = "splitopt.layergraph"
FORMAT_VERSION = 1

_NUMERIC = ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes")


@dataclass(frozen=True)
class NodeTime:
    """Measured seconds per sample of one node on one device class."""

    fwd_s: float
    bwd_s: float


@dataclass(frozen=True, eq=True)
class Node:
    """One layer or operator of a model.

    Attributes
    ----------
    name
        Unique name; for profiled models the module's fully qualified name (FQN).
    fwd_flops, bwd_flops
        FLOPs per sample of the forward and backward pass (a multiply-accumulate is 2 FLOPs).
        ``bwd_flops`` defaults to ``2 * fwd_flops`` when not given.
    out_bytes
        Bytes of the node's output tensor(s) per sample, sent once however many consumers it has.
    param_bytes
        Bytes of the node's own parameters, counted once even when tied.
    kind
        ``"input"``, ``"output"``, or the operator / module type (``"Conv2d"``, ``"add"``, ...).
    times
        Optional measured seconds per sample, keyed by device class (e.g. ``"h100"``).
    """

    name: str
    fwd_flops: float = 0.0
    bwd_flops: float | None = None
    out_bytes: float = 0.0
    param_bytes: float = 0.0
    kind: str = "op"
    times: Mapping[str, NodeTime] = field(default_factory=dict, compare=True, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GraphError("node.name", self.name, "a non-empty string")
        if self.bwd_flops is None:
            object.__setattr__(self, "bwd_flops", 2.0 * _number(self.name, "fwd_flops",
                                                                self.fwd_flops))
        for attr in _NUMERIC:
            object.__setattr__(self, attr, _number(self.name, attr, getattr(self, attr)))
        for cls, t in self.times.items():
            for part in ("fwd_s", "bwd_s"):
                _number(self.name, f"times[{cls!r}].{part}", getattr(t, part))

    @property
    def train_flops(self) -> float:
        """Forward plus backward FLOPs per sample."""
        return self.fwd_flops + self.bwd_flops  # type: ignore[operator]


def _number(node: str, attr: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise GraphError(f"node {node!r}.{attr}", value, "a finite number >= 0") from None
    if not math.isfinite(x) or x < 0:
        raise GraphError(f"node {node!r}.{attr}", value, "a finite number >= 0")
    return x


class LayerGraph:
    """A validated, immutable DAG of layers with per-sample costs.

    Parameters
    ----------
    nodes
        The nodes, in any order; names must be unique.
    edges
        ``(producer, consumer)`` pairs of node names.
    inputs
        Names of the input nodes (the data): they must have no predecessors.
    output
        Name of the output node (the loss or last layer): it must have no successors.
    name
        Optional name of the model.
    meta
        Free-form JSON-serialisable information (how the graph was captured, block members, ...).

    Nodes are stored in a deterministic topological order (Kahn's algorithm, ties broken by the
    order in which the nodes were given), which every array attribute follows.
    """

    def __init__(
        self,
        nodes: Iterable[Node],
        edges: Iterable[tuple[str, str]],
        inputs: Sequence[str],
        output: str,
        *,
        name: str = "",
        meta: Mapping[str, Any] | None = None,
    ):
        given = list(nodes)
        by_name: dict[str, Node] = {}
        for node in given:
            if not isinstance(node, Node):
                raise GraphError("nodes", node, "splitopt.graph.Node objects")
            if node.name in by_name:
                raise GraphError("nodes", node.name, "unique node names",
                                 "Rename one of the two nodes.")
            by_name[node.name] = node
        edge_list = _check_edges(edges, by_name)
        self.name = name
        self.meta: dict[str, Any] = dict(meta or {})
        order = _topological_order([n.name for n in given], edge_list)
        self.nodes: tuple[Node, ...] = tuple(by_name[n] for n in order)
        self.index: dict[str, int] = {n: i for i, n in enumerate(order)}
        self.edges: tuple[tuple[str, str], ...] = tuple(edge_list)
        self._preds: list[list[int]] = [[] for _ in order]
        self._succs: list[list[int]] = [[] for _ in order]
        for u, w in edge_list:
            self._preds[self.index[w]].append(self.index[u])
            self._succs[self.index[u]].append(self.index[w])
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.output: str = output
        self._check_terminals()

    # ----------------------------------------------------------------- validation
    def _check_terminals(self) -> None:
        if not self.inputs:
            raise GraphError("inputs", list(self.inputs), "at least one input node name")
        for name in self.inputs:
            if name not in self.index:
                raise GraphError("inputs", name, f"names of nodes in the graph ({self._few()})")
            if self._preds[self.index[name]]:
                raise GraphError(f"input {name!r}", self.preds(name), "no predecessors",
                                 "An input node is the data; it consumes nothing.")
        if self.output not in self.index:
            raise GraphError("output", self.output, f"a node name in the graph ({self._few()})")
        if self._succs[self.index[self.output]]:
            raise GraphError(f"output {self.output!r}", self.succs(self.output), "no successors")
        if self.output in self.inputs:
            raise GraphError("output", self.output, "a node that is not an input")

    def _few(self) -> str:
        names = [n.name for n in self.nodes[:5]]
        return ", ".join(names) + (", ..." if len(self.nodes) > 5 else "")

    # ----------------------------------------------------------------- structure
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __repr__(self) -> str:
        return (f"LayerGraph({self.name or 'unnamed'!r}, nodes={len(self)}, edges={len(self.edges)},"
                f" inputs={list(self.inputs)}, output={self.output!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerGraph):
            return NotImplemented
        return (self.nodes == other.nodes and set(self.edges) == set(other.edges)
                and self.inputs == other.inputs and self.output == other.output
                and self.name == other.name and self.meta == other.meta)

    __hash__ = None  # type: ignore[assignment]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return self.nodes[self._idx(name)]

    def _idx(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise GraphError("node name", name, f"a node of the graph ({self._few()})") from None

    @property
    def names(self) -> list[str]:
        """Node names in topological order."""
        return [n.name for n in self.nodes]

    def preds(self, name: str) -> list[str]:
        """Direct predecessors (producers consumed by ``name``)."""
        return [self.nodes[i].name for i in self._preds[self._idx(name)]]

    def succs(self, name: str) -> list[str]:
        """Direct successors (consumers of ``name``'s output)."""
        return [self.nodes[i].name for i in self._succs[self._idx(name)]]

    @property
    def pred_indices(self) -> list[list[int]]:
        """Predecessor indices per node index (topological order)."""
        return self._preds

    @property
    def succ_indices(self) -> list[list[int]]:
        """Successor indices per node index (topological order)."""
        return self._succs

    @cached_property
    def is_chain(self) -> bool:
        """True when the graph is a single path: one input, each node feeding the next."""
        if len(self.inputs) != 1 or len(self.edges) != len(self.nodes) - 1:
            return False
        return all(len(s) == 1 for s in self._succs[:-1]) and all(len(p) == 1 for p in self._preds[1:])

    # ----------------------------------------------------------------- arrays (topological order)
    @cached_property
    def fwd_flops(self) -> np.ndarray:
        """Forward FLOPs per sample, one entry per node."""
        return np.array([n.fwd_flops for n in self.nodes], dtype=float)

    @cached_property
    def bwd_flops(self) -> np.ndarray:
        """Backward FLOPs per sample, one entry per node."""
        return np.array([n.bwd_flops for n in self.nodes], dtype=float)

    @cached_property
    def train_flops(self) -> np.ndarray:
        """Forward + backward FLOPs per sample, one entry per node."""
        return self.fwd_flops + self.bwd_flops

    @cached_property
    def out_bytes(self) -> np.ndarray:
        """Output bytes per sample, one entry per node."""
        return np.array([n.out_bytes for n in self.nodes], dtype=float)

    @cached_property
    def param_bytes(self) -> np.ndarray:
        """Own parameter bytes, one entry per node."""
        return np.array([n.param_bytes for n in self.nodes], dtype=float)

    def device_classes(self) -> set[str]:
        """Device classes for which at least one node carries measured times."""
        return {cls for n in self.nodes for cls in n.times}

    def train_seconds(self, device_class: str | None, flops_per_s: float) -> np.ndarray:
        """Seconds per sample of forward + backward per node on a device.

        Measured times of ``device_class`` replace ``train_flops / flops_per_s`` node by node where
        the node carries them (COST_MODEL.md: "Measured per-node times ... may replace FLOPs / speed
        node by node").
        """
        secs = self.train_flops / flops_per_s
        if device_class is not None:
            for i, n in enumerate(self.nodes):
                t = n.times.get(device_class)
                if t is not None:
                    secs[i] = t.fwd_s + t.bwd_s
        return secs

    def fwd_seconds(self, device_class: str | None, flops_per_s: float) -> np.ndarray:
        """Seconds per sample of the forward pass only, per node (measured where available)."""
        secs = self.fwd_flops / flops_per_s
        if device_class is not None:
            for i, n in enumerate(self.nodes):
                t = n.times.get(device_class)
                if t is not None:
                    secs[i] = t.fwd_s
        return secs

    # ----------------------------------------------------------------- sets
    def mask(self, names: Iterable[str]) -> np.ndarray:
        """Boolean membership vector (topological order) of a set of node names."""
        m = np.zeros(len(self.nodes), dtype=bool)
        for name in names:
            m[self._idx(name)] = True
        return m

    def names_of(self, mask: np.ndarray) -> frozenset[str]:
        """The node names selected by a boolean vector."""
        return frozenset(self.nodes[i].name for i in np.flatnonzero(mask))

    def pred_closure(self, names: Iterable[str]) -> frozenset[str]:
        """The smallest predecessor-closed set holding ``names``."""
        seen = {self._idx(n) for n in names}
        stack = list(seen)
        while stack:
            for p in self._preds[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return frozenset(self.nodes[i].name for i in seen)

    def is_pred_closed(self, names: Iterable[str]) -> bool:
        """True if every predecessor of a member is a member."""
        s = {self._idx(n) for n in names}
        return all(p in s for i in s for p in self._preds[i])

    def check_split(self, names: Iterable[str], *, labels_on_device: bool = False) -> frozenset[str]:
        """Validate a device-side set (COST_MODEL.md "A split of the graph") and return it frozen."""
        s = frozenset(names)
        for n in s:
            self._idx(n)
        missing = [i for i in self.inputs if i not in s]
        if missing:
            raise GraphError("device-side set", sorted(s)[:5], "a set holding every input node",
                             f"Add the inputs {missing}.")
        if not self.is_pred_closed(s):
            bad = sorted(n for n in s if not set(self.preds(n)) <= s)[:3]
            raise GraphError("device-side set", bad, "a predecessor-closed set",
                             "Add the predecessors of these nodes (graph.pred_closure).")
        if not labels_on_device and self.output in s:
            raise GraphError("device-side set", self.output,
                             "a set without the output node when labels are on the server",
                             "Remove the output node, or set labels to 'device'.")
        return s

    def boundary(self, names: Iterable[str]) -> list[str]:
        """The nodes of the set with at least one consumer outside it (the tensors that cross)."""
        s = {self._idx(n) for n in names}
        return [self.nodes[i].name for i in sorted(s) if any(w not in s for w in self._succs[i])]

    def boundary_mask(self, masks: np.ndarray) -> np.ndarray:
        """Vectorised boundary: for a (C, V) membership matrix, which members have an outside consumer."""
        masks = np.atleast_2d(masks)
        src = np.array([self.index[u] for u, _ in self.edges], dtype=np.intp)
        dst = np.array([self.index[w] for _, w in self.edges], dtype=np.intp)
        crossing = masks[:, src] & ~masks[:, dst]
        out = np.zeros_like(masks)
        for c in range(masks.shape[0]):
            out[c, src[crossing[c]]] = True
        return out

    def chain_prefixes(self) -> list[frozenset[str]]:
        """Device-side sets of the topological-order prefixes that are valid splits.

        On a chain these are all the splits ("the first c layers"); on a DAG they are the cuts a
        Neurosurgeon-style scan considers.
        """
        out, acc = [], set()
        for node in self.nodes:
            acc.add(node.name)
            if node.name == self.output:
                break
            if set(self.inputs) <= acc:
                out.append(frozenset(acc))
        return out

    # ----------------------------------------------------------------- blocks
    def blocks(self) -> dict[str, list[str]]:
        """Repeated components found from module names.

        A node belongs to the block named by the outermost prefix of its name whose last component
        ends in digits (``layer1.0`` of ``layer1.0.conv1``; ``transformer.h.5`` of
        ``transformer.h.5.attn.c_attn``; ``encoder.layers.encoder_layer_3``). A block is kept only
        when at least two nodes share that prefix. Nodes outside any block are not listed.
        """
        groups: dict[str, list[str]] = {}
        for node in self.nodes:
            key = block_key(node.name)
            if key is not None and node.kind not in ("input", "output"):
                groups.setdefault(key, []).append(node.name)
        return {k: v for k, v in groups.items() if len(v) >= 2}

    def contract(self, groups: Mapping[str, Iterable[str]] | None = None) -> LayerGraph:
        """Contract each group of nodes into one node (default: :meth:`blocks`).

        The contracted node sums FLOPs and parameter bytes; its ``out_bytes`` is the sum over members
        whose output leaves the group (each crossing tensor once). Members are recorded in
        ``meta["members"]`` so a cut of the contracted graph maps back with :meth:`expand`.
        Raises :class:`GraphError` if a group is not convex (contracting it would create a cycle).
        """
        groups = self.blocks() if groups is None else {k: list(v) for k, v in groups.items()}
        owner: dict[str, str] = {}
        for g, members in groups.items():
            for m in members:
                self._idx(m)
                if m in owner:
                    raise GraphError("groups", m, "each node in at most one group")
                if m in self.inputs or m == self.output:
                    raise GraphError("groups", m, "groups without the input or output nodes")
                owner[m] = g
        rep = {n.name: owner.get(n.name, n.name) for n in self.nodes}
        new_nodes: dict[str, dict[str, Any]] = {}
        for n in self.nodes:
            key = rep[n.name]
            acc = new_nodes.setdefault(key, {"fwd_flops": 0.0, "bwd_flops": 0.0, "out_bytes": 0.0,
                                             "param_bytes": 0.0, "times": {},
                                             "kind": n.kind if key == n.name else "block"})
            acc["fwd_flops"] += n.fwd_flops
            acc["bwd_flops"] += n.bwd_flops
            acc["param_bytes"] += n.param_bytes
            leaves = any(rep[s] != key for s in self.succs(n.name)) or n.name == self.output
            if leaves or key == n.name:
                acc["out_bytes"] += n.out_bytes
            for cls, t in n.times.items():
                f, b = acc["times"].get(cls, (0.0, 0.0))
                acc["times"][cls] = (f + t.fwd_s, b + t.bwd_s)
        edges = {(rep[u], rep[w]) for u, w in self.edges if rep[u] != rep[w]}
        nodes = []
        for key, a in new_nodes.items():
            times = {c: NodeTime(*ft) for c, ft in a.pop("times").items()}
            nodes.append(Node(key, times=times, **a))
        meta = dict(self.meta)
        meta["members"] = {g: list(m) for g, m in groups.items()}
        try:
            return LayerGraph(nodes, sorted(edges), self.inputs, self.output, name=self.name, meta=meta)
        except GraphError as err:
            raise GraphError("groups", list(groups)[:5], "convex groups (no path leaving a group "
                             "and re-entering it)", str(err)) from None

    def expand(self, names: Iterable[str]) -> frozenset[str]:
        """Map a node set of a contracted graph back to the original node names."""
        members = self.meta.get("members", {})
        out: set[str] = set()
        for n in names:
            out.update(members.get(n, [n]))
        return frozenset(out)

    # ----------------------------------------------------------------- transformations
    def with_times(self, device_class: str, times: Mapping[str, tuple[float, float]]) -> LayerGraph:
        """A copy carrying measured ``(fwd_s, bwd_s)`` per sample for ``device_class`` by node name.

        Names absent from the graph are ignored and reported in ``meta["unmatched_times"]``.
        """
        unknown = sorted(set(times) - set(self.index))
        nodes = []
        for n in self.nodes:
            if n.name in times:
                f, b = times[n.name]
                nodes.append(replace(n, times={**n.times, device_class: NodeTime(float(f), float(b))}))
            else:
                nodes.append(n)
        meta = dict(self.meta)
        if unknown:
            meta.setdefault("unmatched_times", {})[device_class] = unknown
        return LayerGraph(nodes, self.edges, self.inputs, self.output, name=self.name, meta=meta)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in docs/formats.md."""
        nodes = []
        for n in self.nodes:
            d: dict[str, Any] = {"name": n.name, "kind": n.kind, "fwd_flops": n.fwd_flops,
                                 "bwd_flops": n.bwd_flops, "out_bytes": n.out_bytes,
                                 "param_bytes": n.param_bytes}
            if n.times:
                d["times"] = {c: {"fwd_s": t.fwd_s, "bwd_s": t.bwd_s} for c, t in n.times.items()}
            nodes.append(d)
        return {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "inputs": list(self.inputs), "output": self.output, "nodes": nodes,
                "edges": [list(e) for e in self.edges], "meta": self.meta}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LayerGraph:
        """Build and validate a graph from its JSON document."""
        if not isinstance(doc, Mapping):
            raise GraphError("graph document", type(doc).__name__, "a JSON object")
        if doc.get("format", FORMAT) != FORMAT:
            raise GraphError("format", doc.get("format"), f"{FORMAT!r}")
        for key in ("nodes", "edges", "inputs", "output"):
            if key not in doc:
                raise GraphError(key, None, "a required field of the graph document",
                                 "See docs/formats.md.")
        nodes = []
        for i, d in enumerate(doc["nodes"]):
            if not isinstance(d, Mapping) or "name" not in d:
                raise GraphError(f"nodes[{i}].name", d, "a node object with a 'name'")
            for key in ("fwd_flops", "out_bytes", "param_bytes"):
                if key not in d:
                    raise GraphError(f"node {d['name']!r}.{key}", None, "a required field")
            times = {c: NodeTime(float(t["fwd_s"]), float(t["bwd_s"]))
                     for c, t in (d.get("times") or {}).items()}
            nodes.append(Node(d["name"], d["fwd_flops"], d.get("bwd_flops"), d["out_bytes"],
                              d["param_bytes"], d.get("kind", "op"), times))
        edges = []
        for i, e in enumerate(doc["edges"]):
            if not isinstance(e, (list, tuple)) or len(e) != 2:
                raise GraphError(f"edges[{i}]", e, "a [producer, consumer] pair of node names")
            edges.append((e[0], e[1]))
        return cls(nodes, edges, list(doc["inputs"]), doc["output"], name=doc.get("name", ""),
                   meta=doc.get("meta") or {})

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to the JSON format of docs/formats.md (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> LayerGraph:
        """Parse the JSON format of docs/formats.md."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise GraphError("graph JSON", text[:60], "valid JSON", str(err)) from None
        return cls.from_dict(doc)

    def save(self, path: str | Path) -> None:
        """Write the graph as JSON; refuses nothing, overwrites only the file named."""
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LayerGraph:
        """Read a graph JSON file."""
        p = Path(path)
        if not p.is_file():
            raise GraphError("graph file", str(path), "an existing JSON file")
        return cls.from_json(p.read_text())


def block_key(name: str) -> str | None:
    """Outermost name prefix whose last component ends in digits, or None."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if re.search(r"\d$", part) and i > 0:
            return ".".join(parts[: i + 1])
    return None


def _check_edges(edges: Iterable[tuple[str, str]], by_name: Mapping[str, Node]) -> list[tuple[str, str]]:
    out, seen = [], set()
    for e in edges:
        try:
            u, w = e
        except (TypeError, ValueError):
            raise GraphError("edges", e, "(producer, consumer) pairs of node names") from None
        for end in (u, w):
            if end not in by_name:
                raise GraphError("edge", (u, w), "edges between nodes of the graph",
                                 f"Node {end!r} is unknown.")
        if u == w:
            raise GraphError("edge", (u, w), "edges between two different nodes (no self-loop)")
        if (u, w) not in seen:
            seen.add((u, w))
            out.append((u, w))
    return out


def _topological_order(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    pos = {n: i for i, n in enumerate(names)}
    indeg = [0] * len(names)
    succ: list[list[int]] = [[] for _ in names]
    for u, w in edges:
        succ[pos[u]].append(pos[w])
        indeg[pos[w]] += 1
    import heapq

    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(names[i])
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(names):
        cyc = [names[i] for i, d in enumerate(indeg) if d > 0][:5]
        raise GraphError("edges", cyc, "an acyclic graph (a DAG)",
                         "These nodes lie on or after a cycle; remove the back edge.")
    return order
