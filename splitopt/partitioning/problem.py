"""The partition problem as arrays: per-node costs on each side, per-tensor crossing costs.

Every method of :mod:`splitopt.partitioning` solves the same problem

    minimise  sum_{v in S} a_v + sum_{v notin S} c_v + sum_{u in dS} t_u
              + sum_k p_k [i_k in S, j_k notin S]
    over      S predecessor-closed, inputs in S, (labels on the server) output notin S

with ``dS`` the members of ``S`` that have a consumer outside ``S`` (each tensor paid once, however
many consumers it has). For one iteration (docs/cost_model.md) ``a_v = b * sec_dev(v)``,
``c_v = b * sec_srv(v)`` and ``t_u = b * 8 * out_bytes(u) * (1/r_up + 1/r_dn)``. The pair terms
``(i_k, j_k, p_k)`` price weights tied across the cut (:func:`tied_terms`): a weight used by nodes
u and w costs ``8 * bytes * (1/r_up + 1/r_dn)`` per iteration when u and w are on different
sides (each side's gradient sent to the other), as the two terms (u, w) and (w, u).

Graph arrays (edge lists, measured times per device class, reachability) are computed once per
:class:`~splitopt.graph.LayerGraph` and cached on it, so repeated partitions of one graph (devices,
bandwidth shares, the hull's lambdas) pay only for the numbers that change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from splitopt.backends.results import Result
from splitopt.costs import BITS, tied_pairs
from splitopt.errors import GraphError, InputError, check_finite_nonneg
from splitopt.graph import LayerGraph
from splitopt.system import Device, Link, Server

T = TypeVar("T")

_CACHE_ATTR = "_splitopt_partition_arrays"


@dataclass(frozen=True)
class GraphArrays:
    """Index arrays of a graph (topological order), computed once per graph."""

    src: np.ndarray  # producer index of every edge (graph.edge_index: the graph's edge order)
    dst: np.ndarray  # consumer index of every edge
    inputs: np.ndarray  # input node indices
    output: int
    measured: Mapping[str, tuple[np.ndarray, ...]]  # class -> (indices, fwd+bwd s, unmeasured)
    connected: bool  # some input has a path to the output

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return int(self.src.size)


def cached_on(graph: LayerGraph, attr: str, build: Callable[[LayerGraph], T]) -> T:
    """``build(graph)``, computed once per graph object (graphs are immutable)."""
    cached = graph.__dict__.get(attr)
    if cached is None:
        cached = build(graph)
        graph.__dict__[attr] = cached
    return cached


def graph_arrays(graph: LayerGraph) -> GraphArrays:
    """The cached :class:`GraphArrays` of ``graph`` (built on first use)."""
    return cached_on(graph, _CACHE_ATTR, _build_arrays)


def _build_arrays(graph: LayerGraph) -> GraphArrays:
    src, dst = graph.edge_index
    measured: dict[str, tuple[list[int], list[float], list[float]]] = {}
    timed = graph.timed_indices.tolist()
    for i in timed:
        for cls, t in graph.nodes[i].times.items():
            idx, sec, rest = measured.setdefault(cls, ([], [], []))
            idx.append(i)
            sec.append(t.fwd_s + t.bwd_s)
            rest.append(t.unmeasured_fwd_flops + t.unmeasured_bwd_flops)
    meas = {c: (np.array(i, dtype=np.intp), np.array(s, dtype=float), np.array(r, dtype=float))
            for c, (i, s, r) in measured.items()}
    inputs = np.array([graph.index[n] for n in graph.inputs], dtype=np.intp)
    out = graph.index[graph.output]
    # when the inputs are the only nodes without a predecessor, every node descends from one
    # (walk predecessors back in topological order); only other sources need the search
    sources = int(np.count_nonzero(np.bincount(dst, minlength=len(graph)) == 0))
    connected = sources == inputs.size or bool(_reached(len(graph), src, dst, inputs)[out])
    return GraphArrays(src, dst, inputs, out, meas, connected)


def _reached(n: int, src: np.ndarray, dst: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Which nodes some node of ``sources`` has a path to (breadth-first search).

    A virtual node ``n`` feeds every source; scipy turns the edge list into CSR rows by a
    counting sort (no comparison sort of the edges).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order

    e = src.size  # int32 indices and float data are what csgraph works in: nothing is converted
    tails = np.empty(e + sources.size, dtype=np.int32)
    heads = np.empty(e + sources.size, dtype=np.int32)
    tails[:e], tails[e:] = src, n
    heads[:e], heads[e:] = dst, sources
    graph = csr_matrix((np.ones(e + sources.size), (tails, heads)), shape=(n + 1, n + 1))
    order = breadth_first_order(graph, n, directed=True, return_predecessors=False)
    mask = np.zeros(n + 1, dtype=bool)
    mask[order] = True
    return mask[:n]


def train_seconds(graph: LayerGraph, device_class: str | None, flops: float) -> np.ndarray:
    """Same numbers as :meth:`LayerGraph.train_seconds`, from the cached measured-time table."""
    secs = graph.train_flops / flops
    meas = graph_arrays(graph).measured.get(device_class) if device_class is not None else None
    if meas is not None:  # NodeTime.train_seconds: measured seconds + unmeasured FLOPs / speed
        secs[meas[0]] = meas[1] + meas[2] / flops
    return secs


@dataclass(frozen=True)
class CutProblem:
    """One instance: costs per node on each side and per tensor, and which nodes are forced.

    Attributes
    ----------
    graph
        The layer graph (node order = its topological order).
    dev, srv
        Seconds node ``v`` adds when on the device side / on the server side.
    tensor
        Seconds paid when node ``v``'s output crosses the cut (once, however many consumers).
    labels_on_device
        When False the output node is forced to the server side.
    pair_src, pair_dst, pair_cost
        Pair terms: ``pair_cost[k]`` seconds paid when node ``pair_src[k]`` is on the device side
        and ``pair_dst[k]`` is not (weights tied across the cut, :func:`tied_terms`); empty by
        default.

    """

    graph: LayerGraph
    dev: np.ndarray
    srv: np.ndarray
    tensor: np.ndarray
    labels_on_device: bool = False
    pair_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    pair_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    pair_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def arrays(self) -> GraphArrays:
        """The graph's cached index arrays."""
        return graph_arrays(self.graph)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.graph)

    def forced(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks of the nodes forced to the device side and to the server side."""
        force_in = np.zeros(self.n, dtype=bool)
        force_in[self.arrays.inputs] = True
        force_out = np.zeros(self.n, dtype=bool)
        if not self.labels_on_device:
            force_out[self.arrays.output] = True
        return force_in, force_out

    def boundary(self, mask: np.ndarray) -> np.ndarray:
        """Boolean mask of the members of ``mask`` with a consumer outside it."""
        ar = self.arrays
        cross = mask[ar.src] & ~mask[ar.dst]
        out = np.zeros(self.n, dtype=bool)
        out[ar.src[cross]] = True
        return out

    def price(self, mask: np.ndarray) -> float:
        """Price the device-side set ``mask`` in floats (the objective)."""
        ar = self.arrays
        pairs = float(self.pair_cost[mask[self.pair_src] & ~mask[self.pair_dst]].sum())
        return price_mask(ar.src, ar.dst, self.dev, self.srv, self.tensor, mask) + pairs

    def price_many(self, masks: np.ndarray) -> np.ndarray:
        """The objective of each row of a (K, V) membership matrix."""
        masks = np.atleast_2d(masks)
        ar = self.arrays
        bnd = np.zeros(masks.shape, dtype=bool)
        if ar.n_edges:
            cross = masks[:, ar.src] & ~masks[:, ar.dst]
            # an edge list sorted by producer lets reduceat OR the crossings per producer
            order = np.argsort(ar.src, kind="stable")
            srcs = ar.src[order]
            starts = np.flatnonzero(np.r_[True, srcs[1:] != srcs[:-1]])
            bnd[:, srcs[starts]] = np.logical_or.reduceat(cross[:, order], starts, axis=1)
        pairs = (masks[:, self.pair_src] & ~masks[:, self.pair_dst]) @ self.pair_cost
        return masks @ self.dev + (~masks) @ self.srv + bnd @ self.tensor + pairs

    def is_feasible(self, mask: np.ndarray) -> bool:
        """True if ``mask`` is predecessor-closed, holds the inputs and respects the labels."""
        ar = self.arrays
        force_in, force_out = self.forced()
        closed = not np.any(mask[ar.dst] & ~mask[ar.src])
        return bool(closed and mask[force_in].all() and not mask[force_out].any())


def price_mask(src: np.ndarray, dst: np.ndarray, dev: np.ndarray, srv: np.ndarray,
               tensor: np.ndarray, mask: np.ndarray) -> float:
    """Objective of a device-side set ``mask`` given edge arrays and per-node costs."""
    cross = np.take(mask, src) > np.take(mask, dst)  # a member feeding a non-member (bools)
    bnd = np.zeros(mask.size, dtype=bool)
    bnd[src[cross]] = True
    return float(dev[mask].sum() + srv[~mask].sum() + tensor[bnd].sum())


def check_inputs(graph: Any, device: Any, server: Any, link: Any, batch: Any, labels: Any) -> None:
    """Clear errors for everything :func:`splitopt.partition` is given, before any solving."""
    if not isinstance(graph, LayerGraph):
        raise InputError("graph", type(graph).__name__, "a splitopt LayerGraph",
                         "Load one with LayerGraph.load(path) or build one with splitopt.profile.")
    for name, value, cls in (("device", device, Device), ("server", server, Server),
                             ("link", link, Link)):
        if not isinstance(value, cls):
            raise InputError(name, type(value).__name__, f"a splitopt {cls.__name__}")
    check_finite_nonneg("device.flops", device.flops, positive=True)
    check_finite_nonneg("server.flops", server.flops, positive=True)
    check_finite_nonneg("link.up_bps", link.up_bps, positive=True)
    check_finite_nonneg("link.dn_bps", link.dn_bps, positive=True)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise InputError("batch", batch, "an integer >= 1")
    if labels not in ("server", "device"):
        raise InputError("labels", labels, "'server' (vanilla split learning) or 'device' "
                         "(U-shaped: the loss may stay on the device)")
    check_connected(graph)


def check_connected(graph: LayerGraph) -> None:
    """Raise :class:`GraphError` when no input has a path to the output."""
    ar = graph_arrays(graph)
    if not ar.connected:
        raise GraphError("graph", graph.name or repr(graph), "a graph with a path from an input "
                         f"to the output {graph.output!r}",
                         "Check the edges: the output does not depend on any input.")


def iteration_problem(graph: LayerGraph, device: Device, server: Server, link: Link, *,
                      batch: int = 1, labels: str = "server") -> CutProblem:
    """The one-iteration delay problem of docs/cost_model.md for one device at the given link."""
    check_inputs(graph, device, server, link, batch, labels)
    b = float(batch)
    dev = train_seconds(graph, device.cls, device.flops)  # fresh arrays: scaled in place
    srv = train_seconds(graph, server.device_class, server.flops)
    if b != 1.0:
        dev *= b
        srv *= b
    tensor = graph.out_bytes * (b * BITS * link.seconds_per_bit)  # one pass over the nodes
    return CutProblem(graph, dev, srv, tensor, labels == "device",
                      *tied_terms(graph, BITS * link.seconds_per_bit))


def tied_terms(graph: LayerGraph, crossing: float,
               held: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair terms (src, dst, cost) of the weights tied across a cut (``graph.meta["tied"]``).

    A weight of ``bytes`` used by nodes u (first) and w costs ``crossing * bytes`` when u and w
    are on different sides (the two terms (u, w) and (w, u): the tied gradient each way,
    ``costs.CutTable.tied_bytes``), and ``held * bytes`` more when the device holds w without
    u (its own copy, aggregated with the device side: ``costs.CutTable.param_bytes``).
    """
    first, later, nbytes = tied_pairs(graph)
    return (np.concatenate([first, later]), np.concatenate([later, first]),
            np.concatenate([crossing * nbytes, (crossing + held) * nbytes]))


def certified(prob: CutProblem, mask: np.ndarray, lower: float, info: dict[str, Any],
              rel_tol: float = 1e-9, *, objective: float | None = None) -> Result:
    """The :func:`solution` of ``mask``, its optimality proven by the lower bound ``lower``.

    The float price of ``mask`` is the objective. When ``lower`` is within ``rel_tol`` of it the
    plan is reported optimal with bound = objective (the gap is float noise; the proven lower bound
    stays in ``info["lower_bound"]``); otherwise the status says "feasible" and the bound is kept.
    """
    obj = prob.price(mask) if objective is None else objective  # given: the same float price
    info = {**info, "lower_bound": lower}
    if obj - lower <= rel_tol * abs(obj):
        return solution(mask, obj, obj, "optimal", info)
    return solution(mask, obj, lower, "feasible", info)


def solution(mask: np.ndarray, objective: float, bound: float | None, status: str,
             info: dict[str, Any]) -> Result:
    """What every method returns, as the one :class:`~splitopt.backends.results.Result`.

    ``x`` is the device-side membership of every node (topological order), ``extras`` the
    method's details (``plan.meta["solver"]``); ``termination`` is ``"optimal"`` when ``bound``
    proves ``objective`` optimal to 1e-9 relative, ``"heuristic"`` for a method that is not exact
    on this instance (chain on a DAG).
    """
    return Result(status, objective=objective, bound=bound, x=mask, extras=info)
