"""The s-t graph of a partition problem and its certified minimum cut (OR-Tools SimpleMaxFlow).

Construction (docs/partition.md draws it). Network node 0 is the source s (the device side),
node 1 the sink t (the server side); inputs are merged into s, the output (labels on the server)
into t, every other layer node gets its own network node, and a tensor with several distinct
consumers gets one relay node:

    s --c_v--> v          cut when v is on the server side: pays its server seconds
    v --a_v--> t          cut when v is on the device side: pays its device seconds
    w --inf--> u          for every edge u -> w: w on the device side forces u there (closure)
    u --t_u--> w          one consumer w: the tensor crosses iff u in S and w notin S
    u --t_u--> r_u --inf--> w_i    several consumers: r_u must sit with every w_i outside S, so
                                   t_u is paid once iff some consumer is outside S
    i --p_k--> j          a pair term (CutProblem.pair_*): paid iff i in S and j notin S; a weight
                          tied across u and w is the two arcs u -> w and w -> u

Arcs out of t, into s, and loops are never cut and are dropped; arcs s -> t are constants.

Exactness with integer capacities: OR-Tools takes int64 capacities. We round every capacity DOWN
after scaling so that their sum is 2**61 (far from overflow; infinite arcs get sum + 1). Rounding
down makes every cut's integer value a lower bound on its true value, so the maximum flow divided
by the scale is a *proven lower bound* on the optimum; the cut found is re-priced in floats, which
is an upper bound. When the two differ by more than ``rel_tol``, the rest is solved on the residual
network of the flow found (see :func:`solve_network`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitopt.backends.maxflow import SINK, SOURCE, solve_scaled
from splitopt.backends.results import Result
from splitopt.errors import SolverError
from splitopt.partitioning.problem import CutProblem

_CACHE_ATTR = "_splitopt_partition_networks"


@dataclass(frozen=True)
class Network:
    """Arc arrays of the s-t graph: the finite arcs first, with capacities ``finite_caps``.

    The closure and relay arcs (infinite) follow them, so scaling the capacities to integers
    writes two contiguous runs of one array (no scattered writes, no temporaries).
    """

    n_nodes: int
    tails: np.ndarray
    heads: np.ndarray
    finite_caps: np.ndarray
    const: float
    node_of: np.ndarray  # network node of every layer node
    mirror: bool = False  # solve from t (see backends.maxflow.solve_scaled)

    @property
    def finite(self) -> slice:
        """Positions of the finite arcs (the first ``finite_caps.size``)."""
        return slice(0, self.finite_caps.size)

    @property
    def inf(self) -> np.ndarray:
        """Which arcs are infinite (closure and relay arcs)."""
        inf = np.ones(self.tails.size, dtype=bool)
        inf[self.finite] = False
        return inf

    @property
    def caps(self) -> np.ndarray:
        """The capacity of every arc (0 on the infinite ones)."""
        caps = np.zeros(self.tails.size)
        caps[self.finite] = self.finite_caps
        return caps


def build_network(prob: CutProblem, rep: np.ndarray | None = None,
                  key: Any = None) -> Network:
    """Build the s-t graph of ``prob``; ``rep`` optionally merges layer nodes into groups.

    With ``rep`` (a group id per layer node, forced nodes in their own groups), a group is one
    network node: the cut keeps each group whole and prices it exactly (node costs summed, each
    tensor paid once if a consumer outside its group is on the other side). Block-wise uses this.
    Without ``rep`` the arcs depend only on the graph and the labels rule, so they are cached on
    the graph and only the capacities are computed per call; with ``rep``, ``key`` (a hashable
    that determines ``rep``) caches them too (the last few keys are kept).
    """
    cache = prob.graph.__dict__.setdefault(_CACHE_ATTR, {})
    slot = (prob.labels_on_device, key)
    st = None if rep is not None and key is None else cache.get(slot)
    if st is None:
        ar = prob.arrays
        st = _structure(ar.src, ar.dst, *prob.forced(), rep)
        if rep is None or key is not None:
            if rep is not None and len(cache) > 8:  # bound the memory of contracted structures
                for old in [k for k in cache if k[1] is not None][:4]:
                    del cache[old]
            cache[slot] = st
    net = _with_capacities(st, prob.dev, prob.srv, prob.tensor)
    return _with_pairs(net, prob.pair_src, prob.pair_dst, prob.pair_cost)


def _with_pairs(net: Network, src: np.ndarray, dst: np.ndarray, cost: np.ndarray) -> Network:
    """``net`` with one finite arc per pair term (few: not part of the cached structure)."""
    if not src.size:
        return net
    tails, heads = net.node_of[src].astype(np.int32), net.node_of[dst].astype(np.int32)
    const = float(cost[(tails == SOURCE) & (heads == SINK)].sum())  # always paid
    keep = _cuttable(tails, heads)
    at = net.finite_caps.size  # finite arcs stay in front of the infinite ones
    return Network(net.n_nodes, np.insert(net.tails, at, tails[keep]),
                   np.insert(net.heads, at, heads[keep]),
                   np.concatenate([net.finite_caps, cost[keep]]), net.const + const, net.node_of,
                   net.mirror)


def network_from_arrays(src: np.ndarray, dst: np.ndarray, dev: np.ndarray, srv: np.ndarray,
                        tensor: np.ndarray, force_in: np.ndarray, force_out: np.ndarray,
                        rep: np.ndarray | None = None) -> Network:
    """Build the s-t graph from raw edge and cost arrays (see :func:`build_network`)."""
    st = _structure(src, dst, force_in, force_out, rep)
    return _with_capacities(st, dev, srv, tensor)


@dataclass(frozen=True)
class _Structure:
    """The arcs of an s-t graph without capacities: what depends only on the graph.

    Arcs are laid out as s -> v for every free network node v, then v -> t for the same nodes,
    then the finite tensor arcs (into a consumer or a relay), then the infinite ones: closure
    arcs, then relay arcs. Arcs out of t, into s and loops are left out and s -> t arcs (tensors
    that always cross) go to the constant. Node numbers are int32, as OR-Tools takes them. The
    order of the arcs did not change OR-Tools' solve time (measured on resnet_like 1e3 / 1e4,
    three settings).
    """

    n_nodes: int
    size: int  # 2 + network nodes of layer nodes (relays follow)
    node_of: np.ndarray
    tails: np.ndarray
    heads: np.ndarray
    tensor_of: np.ndarray  # per finite tensor arc: the producer whose tensor cost it carries
    always: np.ndarray  # producers whose tensor crosses in every cut (an input feeds the output)
    # ungrouped only (else None): the layer node of network node 2 + i, the nodes in s and in t
    free_nodes: np.ndarray | None = None
    in_source: np.ndarray | None = None
    in_sink: np.ndarray | None = None


def _structure(src: np.ndarray, dst: np.ndarray, force_in: np.ndarray, force_out: np.ndarray,
               rep: np.ndarray | None = None) -> _Structure:
    node_of, n_free = _number_nodes(force_in.size, force_in, force_out, rep)
    size = 2 + n_free
    nu, nw = np.take(node_of, src), np.take(node_of, dst)
    dedupe = rep is not None  # a graph's own edges are distinct; merged groups repeat pairs
    if dedupe:
        clo_t, clo_h = _unique_pairs(nw, nu)
        if np.any((clo_t == SOURCE) & (clo_h == SINK)):
            raise SolverError("an input feeds the output through a forced arc; no finite cut "
                              "exists")
        cut = _cuttable(clo_t, clo_h)
    else:  # ungrouped, an edge joins two network nodes and never runs from the output to an input
        clo_t, clo_h = nw, nu
        cut = (clo_t != SINK) & (clo_h != SOURCE)
    clo_t, clo_h = clo_t[cut], clo_h[cut]
    ten_t, ten_h, tensor_of, n_relay = _tensor_arcs(src, node_of, nu, nw, size, dedupe)
    n_fin = tensor_of.size  # the finite tensor arcs come first; only they can run s -> t
    through = (ten_t[:n_fin] == SOURCE) & (ten_h[:n_fin] == SINK)
    always = tensor_of[through]
    keep: np.ndarray | None
    if dedupe:
        keep = _cuttable(ten_t, ten_h)
    else:  # ungrouped, a tensor arc never leaves t (the output feeds nothing), never enters s
        # (inputs consume nothing) and never loops: only the s -> t arcs go
        keep = np.concatenate([~through, np.ones(ten_t.size - n_fin, bool)]) if through.any() \
            else None
    if keep is not None:
        ten_t, ten_h = ten_t[keep], ten_h[keep]
        tensor_of = tensor_of[keep[:n_fin]]
    ids = np.arange(2, size, dtype=np.int32)
    k = tensor_of.size  # _tensor_arcs lists the finite tensor arcs first
    tails = np.concatenate([np.full(n_free, SOURCE, np.int32), ids, ten_t[:k], clo_t, ten_t[k:]],
                           dtype=np.int32)
    heads = np.concatenate([ids, np.full(n_free, SINK, np.int32), ten_h[:k], clo_h, ten_h[k:]],
                           dtype=np.int32)
    if dedupe:
        return _Structure(size + n_relay, size, node_of, tails, heads, tensor_of, always)
    return _Structure(size + n_relay, size, node_of, tails, heads, tensor_of, always,
                      np.flatnonzero(~(force_in | force_out)), np.flatnonzero(force_in),
                      np.flatnonzero(force_out))


def _cuttable(tails: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Arcs a cut can contain: not out of t, not into s, no loops, not s -> t (a constant)."""
    return ((tails != SINK) & (heads != SOURCE) & (tails != heads)
            & ~((tails == SOURCE) & (heads == SINK)))


def _with_capacities(st: _Structure, dev: np.ndarray, srv: np.ndarray,
                     tensor: np.ndarray) -> Network:
    # summing per network node first keeps one arc per node and direction; a free node pays
    # min(srv, dev) on either side, so that part moves to the constant and each node keeps one
    # terminal arc: push-relabel starts by saturating every source arc, and without this it
    # pushed the whole server cost of every node in and back out. Forced nodes pay their side's
    # cost in the constant (an input's device seconds, the output's server seconds).
    if st.free_nodes is not None:  # ungrouped: network node 2 + i is layer node free_nodes[i]
        srv_f, dev_f = srv[st.free_nodes], dev[st.free_nodes]
        forced = float(srv[st.in_sink].sum()) + float(dev[st.in_source].sum())
    else:
        srv_n = np.bincount(st.node_of, weights=srv, minlength=st.size)
        dev_n = np.bincount(st.node_of, weights=dev, minlength=st.size)
        srv_f, dev_f = srv_n[2:], dev_n[2:]
        forced = float(srv_n[SINK] + dev_n[SOURCE])
    both = np.minimum(srv_f, dev_f)
    caps = np.concatenate([srv_f - both, dev_f - both, tensor[st.tensor_of]])
    const = forced + float(both.sum()) + float(tensor[st.always].sum())
    mirror = bool(dev_f.sum() > srv_f.sum())
    return Network(st.n_nodes, st.tails, st.heads, caps, const, st.node_of, mirror)


def _number_nodes(n: int, force_in: np.ndarray, force_out: np.ndarray,
                  rep: np.ndarray | None) -> tuple[np.ndarray, int]:
    free = ~(force_in | force_out)
    node_of = np.empty(n, dtype=np.int32)  # OR-Tools' node type: the arcs need no conversion
    node_of[force_in] = SOURCE
    node_of[force_out] = SINK
    if rep is None:
        node_of[free] = 2 + np.arange(int(free.sum()))
        return node_of, int(free.sum())
    groups, inverse = np.unique(rep[free], return_inverse=True)
    node_of[free] = 2 + inverse
    return node_of, int(groups.size)


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs sorted by a, then b (one 1-D sort of a combined key)."""
    m = int(b.max()) + 1 if b.size else 1
    key = np.unique(a.astype(np.int64) * m + b)
    return key // m, key % m


def _tensor_arcs(src: np.ndarray, node_of: np.ndarray, nu: np.ndarray, nw: np.ndarray,
                 first_relay: int, dedupe: bool) -> tuple:
    """One arc per single-consumer tensor, a relay per multi-consumer tensor.

    Returns tails, heads (the finite arcs first, then the relays' infinite arcs), the producer
    whose tensor cost each finite arc carries and the number of relays.
    """
    if dedupe:  # distinct (tensor, consumer node) pairs; a group's own consumers see no tensor
        ext = nu != nw
        u, w = _unique_pairs(src[ext], nw[ext])
        from_node = node_of[u]
    else:
        u, w, from_node = src, nw, nu
    consumers = np.bincount(u, minlength=node_of.size)
    multi = consumers[u] > 1  # pairs of a tensor with several consumer nodes: through a relay
    single = ~multi
    shared = np.flatnonzero(consumers > 1)  # producers of those tensors, ascending
    relay_of = np.zeros(node_of.size, np.int32)
    relay_of[shared] = first_relay + np.arange(shared.size)
    tails = np.concatenate([from_node[single], node_of[shared], relay_of[u[multi]]])
    heads = np.concatenate([w[single], relay_of[shared], w[multi]])
    tensor_of = np.concatenate([u[single], shared])
    return tails, heads, tensor_of, int(shared.size)


def solve_network(net: Network, price: Any, rel_tol: float = 1e-10) -> Result:
    """Minimum cut of ``net`` certified against a float re-pricing.

    ``price(side)`` returns the true (float) cost of a source side given as a boolean array over
    network nodes. Returns the cheapest side found as the one Result: ``x`` the source side per
    network node, ``objective`` its float price, ``bound`` the best proven lower bound,
    ``extras`` how it was found; ``termination`` is ``optimal`` when they agree to ``rel_tol``.

    One integer max-flow usually certifies the cut to ~1e-12 relative. When it does not (a very
    wide range of capacities over very many cut arcs), the flow found is feasible in the true
    network, so the rest of the problem is a max-flow on its *residual* network whose minimum cut
    is at most the gap; every residual arc above the gap is then infinite, and the few that are left
    are scaled to 2**61 again: the second solve resolves the gap ~1e-12 times finer.
    """
    t0 = time.perf_counter()
    sides, flows, lower = solve_scaled(net.tails, net.heads, net.finite_caps, net.n_nodes,
                                        net.mirror)
    lower += net.const
    side, upper = _cheapest(sides, price, lower, rel_tol)
    history = [{"lower": lower, "upper": upper}]
    if upper - lower > rel_tol * abs(upper):
        tails, heads, caps, inf = _residual(net, flows(), upper - lower)
        order = np.argsort(inf, kind="stable")  # the finite arcs first, as solve_scaled takes
        sides2, _, extra = solve_scaled(tails[order], heads[order],
                                         caps[order[:int((~inf).sum())]], net.n_nodes, net.mirror)
        side2, upper2 = _cheapest(sides2, price, -np.inf, 0.0)
        lower += extra
        if upper2 < upper:
            side, upper = side2, upper2
        history.append({"lower": lower, "upper": upper})
    info = {"maxflow_solves": len(history), "history": history,
            "seconds": time.perf_counter() - t0, "network_nodes": net.n_nodes,
            "network_arcs": int(net.tails.size)}
    bound = min(lower, upper)
    status = "optimal" if upper - bound <= rel_tol * abs(upper) else "feasible"
    return Result(status, objective=upper, bound=bound, x=side, extras=info)


def _cheapest(sides: list[Any], price: Any, lower: float,
              rel_tol: float) -> tuple[np.ndarray, float]:
    """Pick the cheaper minimum cut; the second is built only when ``lower`` fails the first."""
    best, cost = None, np.inf
    for make in sides:
        side = make()
        c = price(side)
        if c < cost:
            best, cost = side, c
        if cost - lower <= rel_tol * abs(cost):
            break
    return best, float(cost)  # type: ignore[return-value]


def _residual(net: Network, flows: np.ndarray, gap: float) -> tuple:
    """Residual arcs of a feasible flow; arcs with more than ``gap`` left become infinite."""
    used = flows > 0
    tails = np.concatenate([net.tails, net.heads[used]])
    heads = np.concatenate([net.heads, net.tails[used]])
    caps = np.concatenate([np.maximum(net.caps - flows, 0.0), flows[used]])
    inf = np.concatenate([net.inf, np.zeros(int(used.sum()), bool)])
    inf |= caps > gap  # no cut cheaper than the gap can use such an arc
    return tails, heads, caps, inf
