"""LayerGraph: validation, the arrays every partitioner reads, and splits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from splitopt import limits
from splitopt.errors import GraphError
from splitopt.graph import contract as contraction
from splitopt.graph import serialize
from splitopt.graph.build import _adjacency, _edge_arrays, _rows, _topological_order
from splitopt.graph.nodes import _ROW, Node, NodeTime


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

    _columns: np.ndarray  # (fields of :data:`_ROW`, nodes), built with the graph
    _names: list[str]  # node names, topological order

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
        if isinstance(inputs, str):
            raise GraphError("inputs", inputs, "a list of input node names",
                             f"Write [{inputs!r}].")
        for what, given_value in (("nodes", nodes), ("edges", edges), ("inputs", inputs)):
            if isinstance(given_value, (str, bytes, Mapping)) or not isinstance(given_value,
                                                                                Iterable):
                raise GraphError(what, type(given_value).__name__, f"a list of {what}")
        if not isinstance(name, str):
            raise GraphError("name", name, "a string")
        if meta is not None and not isinstance(meta, Mapping):
            raise GraphError("meta", type(meta).__name__, "a JSON object (mapping) or None")
        limits.check_nesting("meta", meta, GraphError)
        inputs = list(inputs)
        repeated = [n for i, n in enumerate(inputs) if n in inputs[:i]]
        if repeated:
            raise GraphError("inputs", repeated[0], "each input named once")
        given = nodes if isinstance(nodes, (list, tuple)) else list(nodes)
        if not set(map(type, given)) <= {Node}:
            for node in given:  # names the first object that is not a Node
                if not isinstance(node, Node):
                    raise GraphError("nodes", node, "splitopt.graph.Node objects")
        names = [n.name for n in given]
        pos = dict(zip(names, range(len(names))))
        if len(pos) < len(names):
            seen: set[str] = set()
            dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise GraphError("nodes", dup, "unique node names", "Rename one of the two nodes.")
        rows = _rows(given)
        edge_list, src, dst = _edge_arrays(edges, pos)
        self.name = name
        self.meta: dict[str, Any] = dict(meta or {})
        if src.size and not bool(np.all(src < dst)):  # not already in topological order
            order = _topological_order(names, src, dst)
            rank = np.empty(len(names), dtype=np.intp)
            rank[order] = np.arange(len(names))
            src, dst = rank[src], rank[dst]
            names = [names[i] for i in order.tolist()]
            pos = dict(zip(names, range(len(names))))
            given = [given[i] for i in order.tolist()]
            rows = rows[order]
        self.nodes: tuple[Node, ...] = tuple(given)
        self.index: dict[str, int] = pos
        self.edges: tuple[tuple[str, str], ...] = tuple(edge_list)
        self.__dict__["edge_index"] = (src, dst)  # the cached_property's slot
        self.__dict__["_columns"] = np.ascontiguousarray(rows.T)  # one contiguous row per field
        self.__dict__["_names"] = names
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.output: str = output
        self._check_terminals()
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        # a validated graph is immutable: transformations return new graphs (caches go through
        # __dict__ directly, as functools.cached_property does)
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"LayerGraph is immutable; cannot set {name!r}. Build a new graph "
                                 "(LayerGraph(...), with_times, contract) instead.")
        object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- validation
    def _check_terminals(self) -> None:
        if not self.inputs:
            raise GraphError("inputs", list(self.inputs), "at least one input node name")
        for name in self.inputs:
            if not isinstance(name, str) or name not in self.index:
                raise GraphError("inputs", name, f"names of nodes in the graph ({self._few()})")
            if self._has_pred(self.index[name]):
                raise GraphError(f"input {name!r}", self.preds(name), "no predecessors",
                                 "An input node is the data; it consumes nothing.")
            node = self.nodes[self.index[name]]
            if node.fwd_flops or node.bwd_flops:
                raise GraphError(f"input {name!r}.fwd_flops/bwd_flops",
                                 (node.fwd_flops, node.bwd_flops), "0 (an input is the data; it "
                                 "computes nothing)")
        for i in np.flatnonzero(self._column("input_kind")).tolist():
            name = self._names[i]  # a source that says it is data must be listed as an input
            if name not in self.inputs:
                raise GraphError(f"node {name!r}.kind", "input",
                                 f"'input' only for the graph's inputs {list(self.inputs)[:5]}",
                                 "List it in inputs, or give it another kind.")
        if not isinstance(self.output, str) or self.output not in self.index:
            raise GraphError("output", self.output, f"a node name in the graph ({self._few()})")
        if self._has_succ(self.index[self.output]):
            raise GraphError(f"output {self.output!r}", self.succs(self.output), "no successors")
        if self.output in self.inputs:
            raise GraphError("output", self.output, "a node that is not an input")

    def _has_pred(self, i: int) -> bool:
        return bool((self.edge_index[1] == i).any())

    def _has_succ(self, i: int) -> bool:
        return bool((self.edge_index[0] == i).any())

    @cached_property
    def _preds(self) -> list[list[int]]:
        """Predecessor indices per node, in edge order (built on first use)."""
        src, dst = self.edge_index
        return _adjacency(len(self.nodes), dst, src)

    @cached_property
    def _succs(self) -> list[list[int]]:
        """Successor indices per node, in edge order (built on first use)."""
        src, dst = self.edge_index
        return _adjacency(len(self.nodes), src, dst)

    def _few(self) -> str:
        names = [n.name for n in self.nodes[:5]]
        return ", ".join(names) + (", ..." if len(self.nodes) > 5 else "") or "the graph is empty"

    # ----------------------------------------------------------------- structure
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __repr__(self) -> str:
        return (f"LayerGraph({self.name or 'unnamed'!r}, nodes={len(self)}, "
                f"edges={len(self.edges)}, inputs={list(self.inputs)}, output={self.output!r})")

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
        """Node names in topological order (a new list)."""
        return list(self._names)

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
        return (all(len(s) == 1 for s in self._succs[:-1])
                and all(len(p) == 1 for p in self._preds[1:]))

    # ----------------------------------------------------------------- arrays (topological order)
    @cached_property
    def fwd_flops(self) -> np.ndarray:
        """Forward FLOPs per sample, one entry per node."""
        return self._column("fwd_flops")

    @cached_property
    def bwd_flops(self) -> np.ndarray:
        """Backward FLOPs per sample, one entry per node."""
        return self._column("bwd_flops")

    @cached_property
    def train_flops(self) -> np.ndarray:
        """Forward + backward FLOPs per sample, one entry per node."""
        return self.fwd_flops + self.bwd_flops

    @cached_property
    def out_bytes(self) -> np.ndarray:
        """Output bytes per sample, one entry per node."""
        return self._column("out_bytes")

    @cached_property
    def act_bytes(self) -> np.ndarray:
        """Activation bytes per sample kept for backward, one entry per node."""
        return self._column("act_bytes")

    @cached_property
    def param_bytes(self) -> np.ndarray:
        """Own parameter bytes, one entry per node."""
        return self._column("param_bytes")

    def _column(self, attr: str) -> np.ndarray:
        """One field of every node (:data:`_ROW`): a contiguous view, built with the graph."""
        return self._columns[_ROW.index(attr)]

    def device_classes(self) -> set[str]:
        """Device classes for which at least one node carries measured times."""
        return {cls for n in self.nodes for cls in n.times}

    def train_seconds(self, device_class: str | None, flops_per_s: float) -> np.ndarray:
        """Seconds per sample of forward + backward per node on a device.

        Measured times of ``device_class`` replace ``train_flops / flops_per_s`` node by node where
        the node carries them (docs/cost_model.md: "Measured per-node times ... may replace
        FLOPs / speed node by node"); a measured node's ``unmeasured_*_flops`` are added at
        ``flops_per_s``.
        """
        secs = self.train_flops / flops_per_s
        if device_class is not None:
            idx, fwd, bwd, rest_f, rest_b = self._measured(device_class)
            secs[idx] = fwd + bwd + (rest_f + rest_b) / flops_per_s  # = NodeTime.train_seconds
        return secs

    def fwd_seconds(self, device_class: str | None, flops_per_s: float) -> np.ndarray:
        """Seconds per sample of the forward pass only, per node (measured where available)."""
        secs = self.fwd_flops / flops_per_s
        if device_class is not None:
            idx, fwd, _, rest_f, _ = self._measured(device_class)
            secs[idx] = fwd + rest_f / flops_per_s  # = NodeTime.fwd_seconds
        return secs

    @cached_property
    def timed_indices(self) -> np.ndarray:
        """Indices of the nodes that carry measured times for some device class."""
        return np.flatnonzero(self._column("timed"))

    def _measured(self, device_class: str) -> tuple[np.ndarray, ...]:
        """Indices and time arrays of the nodes measured on ``device_class`` (cached per class)."""
        cache = self.__dict__.setdefault("_measured_cache", {})
        if device_class not in cache:
            hits = [(i, t) for i in self.timed_indices.tolist()
                    if (t := self.nodes[i].times.get(device_class)) is not None]
            idx = np.array([i for i, _ in hits], dtype=np.intp)
            cols = [np.array([getattr(t, a) for _, t in hits], dtype=float) for a in
                    ("fwd_s", "bwd_s", "unmeasured_fwd_flops", "unmeasured_bwd_flops")]
            cache[device_class] = (idx, *cols)
        return cache[device_class]

    # ----------------------------------------------------------------- sets
    def mask(self, names: Iterable[str]) -> np.ndarray:
        """Boolean membership vector (topological order) of a set of node names."""
        m = np.zeros(len(self.nodes), dtype=bool)
        if not isinstance(names, (list, tuple, set, frozenset)):
            names = list(names)  # a one-shot iterable: the fallback below reads it again
        try:
            m[np.fromiter(map(self.index.__getitem__, names), dtype=np.intp)] = True
        except (KeyError, TypeError):
            for name in names:  # names the unknown node
                m[self._idx(name)] = True
        return m

    def names_of(self, mask: np.ndarray) -> frozenset[str]:
        """The node names selected by a boolean vector."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self._names),):
            raise GraphError("mask", f"shape {mask.shape}", f"one entry per node ({len(self)},)")
        if "_name_array" not in self.__dict__ and 16 * np.count_nonzero(mask) < mask.size:
            # a few names: index the list rather than build the object array first
            return frozenset(map(self._names.__getitem__, np.flatnonzero(mask).tolist()))
        return frozenset(self._name_array[mask].tolist())

    @cached_property
    def _name_array(self) -> np.ndarray:
        """Node names as an object array (selecting by a mask is then one C-level copy)."""
        return np.fromiter(self._names, dtype=object, count=len(self._names))

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
        return self._closed(self.mask(names))

    def _closed(self, m: np.ndarray) -> bool:
        """Whether the membership vector ``m`` is predecessor-closed (no edge enters it)."""
        src, dst = self.edge_index
        return not bool(np.any(m[dst] & ~m[src]))

    def check_split(self, names: Iterable[str], *,
                    labels_on_device: bool = False) -> frozenset[str]:
        """Validate a device-side set (docs/cost_model.md, "A split of the graph"); frozen."""
        s = frozenset(names)
        m = self.mask(s)  # names an unknown node
        missing = [i for i in self.inputs if i not in s]
        if missing:
            raise GraphError("device-side set", sorted(s)[:5], "a set holding every input node",
                             f"Add the inputs {missing}.")
        if not self._closed(m):
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
        """Vectorised boundary: for a (C, V) membership matrix, members with an outside consumer."""
        masks = np.atleast_2d(masks)
        src, dst = self.edge_index
        out = np.zeros_like(masks)
        if masks.shape[0] == 1:  # one set (the guard's re-pricing): no 2-D index arrays
            m = masks[0]
            out[0, src[m[src] & ~m[dst]]] = True
            return out
        rows, cols = np.nonzero(masks[:, src] & ~masks[:, dst])
        out[rows, src[cols]] = True
        return out

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` node indices (topological order) of every edge, in ``edges`` order."""
        src = np.array([self.index[u] for u, _ in self.edges], dtype=np.intp)
        dst = np.array([self.index[w] for _, w in self.edges], dtype=np.intp)
        return src, dst

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
        return contraction.blocks(self)

    def contract(self, groups: Mapping[str, Iterable[str]] | None = None) -> LayerGraph:
        """Contract each group of nodes into one node (default: :meth:`blocks`).

        The contracted node sums FLOPs, parameter bytes and kept activation bytes (``act_bytes``);
        its ``out_bytes`` is the sum over members whose output leaves the group (each crossing
        tensor once). Measured times are
        summed per device class; members without a measurement for a class add their FLOPs as
        ``NodeTime.unmeasured_*_flops``, so no work is dropped. Members are recorded in
        ``meta["members"]`` (composed through earlier contractions) so a cut of the contracted graph
        maps back with :meth:`expand`. For a cut at group boundaries the contracted graph prices the
        cut exactly when each group has at most one member whose output leaves it; with several
        exiting members it may over-count the boundary bytes.

        Raises
        ------
        GraphError
            If a node is in two groups, a group holds an input or the output, a group's name is the
            name of a node outside it, or a group is not convex (contracting it makes a cycle).

        """
        return contraction.contract(self, groups)

    def expand(self, names: Iterable[str]) -> frozenset[str]:
        """Map a node set of a contracted graph back to the original node names."""
        return contraction.expand(self, names)

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
                t = NodeTime(float(f), float(b))
                nodes.append(replace(n, times={**n.times, device_class: t}))
            else:
                nodes.append(n)
        meta = dict(self.meta)
        if unknown:
            meta.setdefault("unmatched_times", {})[device_class] = unknown
        return LayerGraph(nodes, self.edges, self.inputs, self.output, name=self.name, meta=meta)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in docs/formats.md (a fresh copy; the graph is untouched)."""
        return serialize.to_dict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LayerGraph:
        """Build and validate a graph from its JSON document.

        Raises
        ------
        GraphError
            Naming the field, the value and what is allowed, for a missing field, a bad number, an
            edge to an unknown node, a cycle, ...

        """
        return serialize.from_dict(cls, doc)

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to the JSON format of docs/formats.md (floats round-trip exactly)."""
        return serialize.to_json(self, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> LayerGraph:
        """Parse the JSON format of docs/formats.md."""
        return serialize.from_json(cls, text)

    def save(self, path: str | Path) -> None:
        """Write the graph as JSON (atomically); overwrites only the file named."""
        serialize.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> LayerGraph:
        """Read a graph JSON file."""
        return serialize.load(cls, path)
