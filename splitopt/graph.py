"""LayerGraph: the DAG of a model with per-sample costs, as docs/cost_model.md defines it.

A node is a layer or operator; an edge ``(u, w)`` means ``w`` consumes the output of ``u``. All
numbers are per sample: multiply by the batch size. A LayerGraph is immutable once built and
validated; every transformation (block contraction, attaching measured times) returns a new graph.
"""

from __future__ import annotations

import copy
import itertools
import json
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from splitopt import limits
from splitopt.errors import MISSING, GraphError, only_fields, parse_json, read_text_file
from splitopt.io import atomic_write

FORMAT = "splitopt.layergraph"
FORMAT_VERSION = 1

_NUMERIC = ("fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes")
#: the columns of :attr:`Node._row`: the numbers, then flags "has measured times", "kind input"
_ROW = (*_NUMERIC, "timed", "input_kind")


@dataclass(frozen=True)
class NodeTime:
    """Measured seconds per sample of one node on one device class.

    ``unmeasured_fwd_flops`` / ``unmeasured_bwd_flops`` are FLOPs of the node that the measurement
    does not cover, priced at the device's FLOP/s on top of the measured seconds. They are zero for
    a profiled node and non-zero only on a contracted block whose members are partly measured (a
    measured convolution beside an unmeasured residual add), so contraction never drops work.
    """

    fwd_s: float
    bwd_s: float
    unmeasured_fwd_flops: float = 0.0
    unmeasured_bwd_flops: float = 0.0

    def fwd_seconds(self, flops_per_s: float) -> float:
        """Forward seconds per sample on a device of ``flops_per_s``."""
        return self.fwd_s + self.unmeasured_fwd_flops / flops_per_s

    def train_seconds(self, flops_per_s: float) -> float:
        """Forward + backward seconds per sample on a device of ``flops_per_s``."""
        rest = self.unmeasured_fwd_flops + self.unmeasured_bwd_flops
        return self.fwd_s + self.bwd_s + rest / flops_per_s


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
    act_bytes
        Bytes per sample the node keeps on its device for the backward pass; defaults to
        ``out_bytes``. Differs only on a contracted block, which keeps every member's activation
        but sends only the tensors that leave it.

    """

    name: str
    fwd_flops: float = 0.0
    bwd_flops: float | None = None
    out_bytes: float = 0.0
    param_bytes: float = 0.0
    kind: str = "op"
    times: Mapping[str, NodeTime] = field(default_factory=dict, compare=True, hash=False)
    act_bytes: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GraphError("node.name", self.name, "a non-empty string")
        if not isinstance(self.kind, str):
            raise GraphError(f"node {self.name!r}.kind", self.kind, "a string")
        if self.bwd_flops is None:  # checked below as "bwd_flops (2 x fwd_flops by default)"
            object.__setattr__(self, "bwd_flops", 2.0 * _number(self.name, "fwd_flops",
                                                                self.fwd_flops))
            if self.bwd_flops > limits.NODE_FLOPS.hi:
                raise GraphError(f"node {self.name!r}.bwd_flops (2 x fwd_flops by default)",
                                 self.bwd_flops, limits.NODE_FLOPS.text(),
                                 "Give bwd_flops explicitly or a smaller fwd_flops.")
        if self.act_bytes is None:
            object.__setattr__(self, "act_bytes", _number(self.name, "out_bytes", self.out_bytes))
        for attr in _NUMERIC:
            object.__setattr__(self, attr, _number(self.name, attr, getattr(self, attr)))
        if not isinstance(self.times, Mapping):
            raise GraphError(f"node {self.name!r}.times", self.times,
                             "a mapping of device class to NodeTime")
        for cls, t in self.times.items():
            if not isinstance(t, NodeTime):
                raise GraphError(f"node {self.name!r}.times[{cls!r}]", t, "a NodeTime")
            for part in ("fwd_s", "bwd_s", "unmeasured_fwd_flops", "unmeasured_bwd_flops"):
                _number(self.name, f"times[{cls!r}].{part}", getattr(t, part))
        # the node's numbers in one tuple (not a field): a graph stacks these rows into its arrays
        # in one C-level pass instead of reading seven attributes of every node
        object.__setattr__(self, "_row", _node_row(self))

    @property
    def train_flops(self) -> float:
        """Forward plus backward FLOPs per sample."""
        return self.fwd_flops + self.bwd_flops  # type: ignore[operator]


def _node_row(node: Node) -> tuple[float, ...]:
    """The :data:`_ROW` numbers of a node."""
    return (*(getattr(node, a) for a in _NUMERIC), float(bool(node.times)),
            float(node.kind == "input"))


def _number(node: str, attr: str, value: Any) -> float:
    """A node's figure, strictly a number in its range (limits.py), or a GraphError naming it."""
    rng = _RANGES.get(attr) or _RANGES[attr.rsplit(".", 1)[-1]]  # "times['c'].fwd_s"
    if limits.in_range(value, rng):
        return float(value)
    return limits.check(f"node {node!r}.{attr}", value, rng, GraphError)


_RANGES = {"fwd_flops": limits.NODE_FLOPS, "bwd_flops": limits.NODE_FLOPS,
           "out_bytes": limits.NODE_BYTES, "act_bytes": limits.NODE_BYTES,
           "param_bytes": limits.PARAM_BYTES, "fwd_s": limits.NODE_SECONDS,
           "bwd_s": limits.NODE_SECONDS, "unmeasured_fwd_flops": limits.NODE_FLOPS,
           "unmeasured_bwd_flops": limits.NODE_FLOPS}


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
        groups: dict[str, list[str]] = {}
        for node in self.nodes:
            key = block_key(node.name)
            if key is not None and node.kind not in ("input", "output"):
                groups.setdefault(key, []).append(node.name)
        return {k: v for k, v in groups.items() if len(v) >= 2}

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
        groups = self.blocks() if groups is None else {k: list(v) for k, v in groups.items()}
        rep = self._owners(groups)
        members: dict[str, list[Node]] = {}
        for n in self.nodes:
            members.setdefault(rep[n.name], []).append(n)
        nodes = [self._merged(key, ms, rep) for key, ms in members.items()]
        edges = {(rep[u], rep[w]) for u, w in self.edges if rep[u] != rep[w]}
        old = self.meta.get("members", {})
        composed = {k: v for k, v in old.items() if rep.get(k, k) == k}
        for g, ms in groups.items():
            composed[g] = [x for m in ms for x in old.get(m, [m])]
        meta = {**self.meta, "members": composed}
        try:
            return LayerGraph(nodes, sorted(edges), self.inputs, self.output, name=self.name,
                              meta=meta)
        except GraphError as err:
            raise GraphError("groups", list(groups)[:5], "convex groups (no path leaving a group "
                             "and re-entering it)", str(err)) from None

    def _owners(self, groups: Mapping[str, list[str]]) -> dict[str, str]:
        """Validate groups for :meth:`contract`; map every node name to its contracted name."""
        owner: dict[str, str] = {}
        for g, ms in groups.items():
            for m in ms:
                self._idx(m)
                if m in owner:
                    raise GraphError("groups", m, "each node in at most one group")
                if m in self.inputs or m == self.output:
                    raise GraphError("groups", m, "groups without the input or output nodes")
                owner[m] = g
        for g, ms in groups.items():
            if g in self.index and g not in ms:
                raise GraphError("groups", g, "group names that are not names of nodes outside "
                                 "the group", "Rename the group or add that node to it.")
        return {n.name: owner.get(n.name, n.name) for n in self.nodes}

    def _merged(self, key: str, members: list[Node], rep: Mapping[str, str]) -> Node:
        """The node that replaces ``members`` (all mapped to ``key``) in a contraction."""
        if len(members) == 1 and members[0].name == key:
            return members[0]
        leaving = [m for m in members
                   if m.name == self.output or any(rep[s] != key for s in self.succs(m.name))]
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
        nodes = []
        for n in self.nodes:
            d: dict[str, Any] = {"name": n.name, "kind": n.kind, "fwd_flops": n.fwd_flops,
                                 "bwd_flops": n.bwd_flops, "out_bytes": n.out_bytes,
                                 "param_bytes": n.param_bytes}
            if n.act_bytes != n.out_bytes:
                d["act_bytes"] = n.act_bytes
            if n.times:
                d["times"] = {c: _time_to_dict(t) for c, t in n.times.items()}
            nodes.append(d)
        return {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "inputs": list(self.inputs), "output": self.output, "nodes": nodes,
                "edges": [list(e) for e in self.edges], "meta": copy.deepcopy(self.meta)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LayerGraph:
        """Build and validate a graph from its JSON document.

        Raises
        ------
        GraphError
            Naming the field, the value and what is allowed, for a missing field, a bad number, an
            edge to an unknown node, a cycle, ...

        """
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

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to the JSON format of docs/formats.md (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> LayerGraph:
        """Parse the JSON format of docs/formats.md."""
        if not isinstance(text, (str, bytes)):
            raise GraphError("graph JSON", type(text).__name__, "a JSON text (str)")
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return cls.from_dict(parse_json(text, "graph JSON", error=GraphError))

    def save(self, path: str | Path) -> None:
        """Write the graph as JSON (atomically); overwrites only the file named."""
        atomic_write(path, self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LayerGraph:
        """Read a graph JSON file."""
        text = read_text_file(path, "graph file", "an existing JSON file", GraphError)
        return cls.from_json(text)


def _time_to_dict(t: NodeTime) -> dict[str, float]:
    d = {"fwd_s": t.fwd_s, "bwd_s": t.bwd_s}
    if t.unmeasured_fwd_flops or t.unmeasured_bwd_flops:
        d["unmeasured_fwd_flops"] = t.unmeasured_fwd_flops
        d["unmeasured_bwd_flops"] = t.unmeasured_bwd_flops
    return d


_GRAPH_FIELDS = ("format", "version", "name", "inputs", "output", "nodes", "edges", "meta")
_NODE_FIELDS = ("name", "kind", "fwd_flops", "bwd_flops", "out_bytes", "param_bytes", "act_bytes",
                "times")


def _node_from_dict(i: int, d: Any) -> Node:
    """One node of a graph document, with errors that name the node and the field."""
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        raise GraphError(f"nodes[{i}].name", d, "a node object with a string 'name'")
    only_fields(f"node {d['name']!r}", d, _NODE_FIELDS, GraphError)
    for key in ("fwd_flops", "out_bytes", "param_bytes"):
        if key not in d:
            raise GraphError(f"node {d['name']!r}.{key}", MISSING, "a required field",
                             "See docs/formats.md.")
    times = d.get("times") or {}
    if not isinstance(times, Mapping):
        raise GraphError(f"node {d['name']!r}.times", times, "an object keyed by device class")
    parsed = {}
    for cls, t in times.items():
        where = f"node {d['name']!r}.times[{cls!r}]"
        if not isinstance(t, Mapping) or "fwd_s" not in t or "bwd_s" not in t:
            raise GraphError(where, t, "an object with 'fwd_s' and 'bwd_s' (seconds per sample)")
        keys = ("fwd_s", "bwd_s", "unmeasured_fwd_flops", "unmeasured_bwd_flops")
        only_fields(where, t, keys, GraphError)
        parsed[cls] = NodeTime(*(_number(d["name"], f"times[{cls!r}].{k}", t.get(k, 0.0))
                                 for k in keys))
    return Node(d["name"], d["fwd_flops"], d.get("bwd_flops"), d["out_bytes"], d["param_bytes"],
                d.get("kind", "op"), parsed, d.get("act_bytes"))


def block_key(name: str) -> str | None:
    """Outermost name prefix, of two or more components, whose last component ends in digits.

    ``layer1.0.conv1`` -> ``layer1.0``; ``transformer.h.5.attn`` -> ``transformer.h.5``; a node
    named exactly ``layer1.0`` (an operator of the block's own ``forward``) -> ``layer1.0``, so it
    joins its block; ``conv1`` or ``fc`` -> None.
    """
    parts = name.split(".")
    for i in range(1, len(parts)):
        if re.search(r"\d$", parts[i]):
            return ".".join(parts[: i + 1])
    return None


def grouped_order(key: np.ndarray, n: int) -> np.ndarray:
    """The stable order that groups ``key`` (values in ``[0, n)``) ascending.

    Keys below 2**16 are sorted as uint16, which numpy sorts by radix (3x faster than int64).
    """
    if n <= 1 << 16:
        key = key.astype(np.uint16)
    return np.argsort(key, kind="stable")


def _adjacency(n: int, key: np.ndarray, value: np.ndarray) -> list[list[int]]:
    """``out[i]`` = the ``value`` of every edge whose ``key`` is i, in edge order."""
    order = grouped_order(key, n)
    flat = value[order].tolist()
    ends = np.cumsum(np.bincount(key, minlength=n)).tolist()
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def _rows(nodes: Sequence[Node]) -> np.ndarray:
    """The nodes' rows (:data:`_ROW`) stacked as one (nodes, 7) array in one pass."""
    rows = itertools.chain.from_iterable(map(operator.attrgetter("_row"), nodes))
    try:  # a flat float stream: half the time of fromiter over 7-float records
        flat = np.fromiter(rows, dtype=float, count=len(nodes) * len(_ROW))
        return flat.reshape(len(nodes), len(_ROW))
    except AttributeError:  # a Node unpickled from before rows existed: compute them
        return np.array([_node_row(n) for n in nodes], dtype=float).reshape(-1, len(_ROW))


def _edge_arrays(edges: Iterable[tuple[str, str]],
                 pos: Mapping[str, int]) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """The distinct edges (first occurrence kept) and their producer/consumer positions.

    Plain lists of name pairs are mapped to index arrays in bulk; anything else (or anything the
    bulk path cannot vouch for) goes through :func:`_check_edges`, which names the bad edge.
    """
    seq = edges if isinstance(edges, (list, tuple)) else list(edges)
    types = set(map(type, seq))
    try:
        if not types <= {tuple, list} or (seq and set(map(len, seq)) != {2}):
            raise TypeError
        ends = np.fromiter(map(pos.__getitem__, itertools.chain.from_iterable(seq)),
                           dtype=np.intp, count=2 * len(seq))
        src, dst = ends[0::2].copy(), ends[1::2].copy()
        if np.any(src == dst):
            raise ValueError
    except (TypeError, ValueError, KeyError):
        out = _check_edges(seq, pos)
        src = np.array([pos[u] for u, _ in out], dtype=np.intp)
        dst = np.array([pos[w] for _, w in out], dtype=np.intp)
        return out, src, dst
    key = src * max(len(pos), 1) + dst
    ordered = np.sort(key)
    if np.any(ordered[1:] == ordered[:-1]):  # duplicates: keep each edge's first occurrence
        _, first = np.unique(key, return_index=True)
        first.sort()
        src, dst = src[first], dst[first]
        seq = [seq[i] for i in first.tolist()]
    if types == {tuple}:
        return list(seq), src, dst
    return [tuple(e) for e in seq], src, dst


def _check_edges(edges: Iterable[tuple[str, str]],
                 pos: Mapping[str, int]) -> list[tuple[str, str]]:
    out, seen = [], set()
    for e in edges:
        try:
            if isinstance(e, (str, bytes)):  # "xa" would unpack as ("x", "a")
                raise TypeError
            u, w = e
        except (TypeError, ValueError):
            raise GraphError("edges", e, "(producer, consumer) pairs of node names") from None
        for end in (u, w):
            if not isinstance(end, str) or end not in pos:
                raise GraphError("edge", (u, w), "edges between nodes of the graph",
                                 f"Node {end!r} is unknown.")
        if u == w:
            raise GraphError("edge", (u, w), "edges between two different nodes (no self-loop)")
        if (u, w) not in seen:
            seen.add((u, w))
            out.append((u, w))
    return out


def _topological_order(names: list[str], src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Kahn's order of the node positions, ties broken by position; GraphError on a cycle."""
    import heapq

    n = len(names)
    indeg = np.bincount(dst, minlength=n).tolist()
    succ = _adjacency(n, src, dst)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != n:
        cyc = _a_cycle([i for i, d in enumerate(indeg) if d > 0], src, dst)
        shown = " -> ".join(names[i] for i in cyc[:8]) + (" -> ..." if len(cyc) > 8 else "")
        raise GraphError("edges", shown, "an acyclic graph (a DAG)",
                         f"The edges contain the cycle {shown} -> {names[cyc[0]]}; remove one of "
                         "its edges.")
    return np.array(order, dtype=np.intp)


def _a_cycle(left: list[int], src: np.ndarray, dst: np.ndarray) -> list[int]:
    """One cycle among the nodes Kahn's algorithm could not order, in edge direction.

    Every such node has a predecessor among them, so walking predecessors must revisit a node.
    """
    rest = set(left)
    pred: dict[int, int] = {}
    for u, w in zip(src.tolist(), dst.tolist()):
        if u in rest and w in rest:
            pred.setdefault(w, u)
    walk, seen = [left[0]], {left[0]: 0}
    while True:
        nxt = pred[walk[-1]]
        if nxt in seen:
            return walk[seen[nxt]:][::-1]
        seen[nxt] = len(walk)
        walk.append(nxt)
