r"""Block-wise exact partitioning: contract the repeated blocks that provably never gain by a split.

Paper: "Fast AI Model Partition for Split Learning over Edge Networks" (arXiv 2507.01041) abstracts
each repeated block of a model into one vertex before the max-flow. Contracting a block forbids cuts
through it, so in general it can lose the optimum; here a block is contracted only when a
certificate proves that some optimal cut leaves it whole (docs/partition.md has the proof):

A block B (from :meth:`LayerGraph.blocks`) is *structurally eligible* when its members that read
tensors from outside B all read the same set X of outside tensors, every other member has a
predecessor (so everything in B descends from those entries), and exactly one member, the exit,
feeds nodes outside B while every other member feeds at least one member. Let

    c(P)      = sum_{P} a + sum_{B \ P} c + t(internal tensors crossing from P to B \ P)
    c'(P)     = c(P) + t(X) * [some entry of B is not in P]
    dev_all   = sum_B a + t(exit),        srv_all = sum_B c + t(X)

over the closed subsets P of B without the exit (P = {} included). If min_P c'(P) >= srv_all
(moving a split block wholly to the server never costs more) or min_P c(P) >= dev_all (moving it
wholly to the device never costs more), every optimal cut can be made to leave B whole, one block
at a time, without raising its cost; so the optimum over the contracted graph is the global one.
Both minima are tiny min-cut problems (B with X as an input and the exit as the output), solved
once per *distinct* block: repeated blocks with identical structure and costs share the solve.
Blocks that fail the certificate stay expanded, so the method is exact on every graph; it is fast
when the blocks repeat. A certificate passed with a float slack of at most 1e-14 of the block's
cost (float noise) is charged to the reported lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.graph import LayerGraph
from splitopt.partitioning.problem import CutProblem, certified, price_mask
from splitopt.partitioning.stgraph import build_network, network_from_arrays, solve_network

_CACHE_ATTR = "_splitopt_block_structure"
_SLACK = 1e-14  # float noise of a certified tie; larger near-ties keep the block expanded


@dataclass(frozen=True)
class BlockStructure:
    """The structurally eligible blocks of a graph (cached on the graph)."""

    n_found: int  # blocks found by LayerGraph.blocks()
    members: list[np.ndarray]  # node indices per eligible block (topological order)
    xs: list[np.ndarray]  # outside tensors read by each block's entries
    local_src: list[np.ndarray]  # mini-graph edges: 0 = the outside tensors, i + 1 = member i
    local_dst: list[np.ndarray]
    shape: np.ndarray  # blocks with equal shape ids have identical mini-graphs
    x_flat: np.ndarray  # the outside tensors of every block, concatenated
    x_block: np.ndarray  # the block of each entry of x_flat
    groups: list[tuple[np.ndarray, np.ndarray]]  # per shape: block ids, (blocks, size) members


def block_structure(graph: LayerGraph) -> BlockStructure:
    """The cached :class:`BlockStructure` of ``graph``."""
    from splitopt.partitioning.problem import cached_on

    return cached_on(graph, _CACHE_ATTR, _find_blocks)


def _find_blocks(graph: LayerGraph) -> BlockStructure:
    from splitopt.partitioning.problem import graph_arrays

    ar = graph_arrays(graph)
    found = graph.blocks()
    forced = set(graph.inputs) | {graph.output}
    bid = np.full(len(graph), -1, np.int64)
    for k, names in enumerate(found.values()):
        if not forced & set(names):
            bid[[graph.index[x] for x in names]] = k
    ok = _eligible(bid, ar.src, ar.dst, len(found))
    bid = np.where(np.r_[ok, False][bid], bid, -1)  # bid -1 reads the trailing False
    # members grouped by block; local index 1.. in topological order (0 = the outside tensors X)
    nodes = np.flatnonzero(bid >= 0)
    nodes = nodes[np.argsort(bid[nodes], kind="stable")]
    cuts = np.flatnonzero(np.diff(bid[nodes])) + 1
    local = np.zeros(len(graph), np.int64)
    for grp in np.split(nodes, cuts):
        local[grp] = np.arange(1, grp.size + 1)
    # edges into or inside eligible blocks, grouped by the consumer's block
    sel = np.flatnonzero(bid[ar.dst] >= 0)
    sel = sel[np.argsort(bid[ar.dst[sel]], kind="stable")]
    ecuts = np.flatnonzero(np.diff(bid[ar.dst[sel]])) + 1
    members, xs, lsrc, ldst, shape_ids, shapes = [], [], [], [], [], {}  # type: ignore[var-annotated]
    for mem, edges in zip(np.split(nodes, cuts), np.split(sel, ecuts), strict=True):
        if mem.size == 0:
            continue
        u, w = ar.src[edges], ar.dst[edges]
        into = bid[u] != bid[w]
        key = np.unique(np.where(into, 0, local[u]) * (mem.size + 1) + local[w])
        s, d = key // (mem.size + 1), key % (mem.size + 1)
        members.append(mem)
        xs.append(np.unique(u[into]))
        lsrc.append(s)
        ldst.append(d)
        shape_ids.append(shapes.setdefault((mem.size, key.tobytes()), len(shapes)))
    shape = np.array(shape_ids, np.int64)
    sizes = np.array([x.size for x in xs], np.int64)
    x_flat = np.concatenate(xs) if xs else np.zeros(0, np.int64)
    groups = []
    for sid in range(len(shapes)):
        blocks = np.flatnonzero(shape == sid)
        groups.append((blocks, np.stack([members[b] for b in blocks])))
    return BlockStructure(len(found), members, xs, lsrc, ldst, shape, x_flat,
                          np.repeat(np.arange(len(xs)), sizes), groups)


def _eligible(bid: np.ndarray, src: np.ndarray, dst: np.ndarray, nb: int) -> np.ndarray:
    """Which blocks have one exit, entries that share their outside inputs, no orphan members."""
    n = bid.size
    bs, bd = bid[src], bid[dst]
    ext_in = (bd >= 0) & (bs != bd)
    ext_out = (bs >= 0) & (bs != bd)
    internal = (bs >= 0) & (bs == bd)
    has_ext_pred = np.bincount(dst[ext_in], minlength=n) > 0
    has_ext_succ = np.bincount(src[ext_out], minlength=n) > 0
    n_int_pred = np.bincount(dst[internal], minlength=n)
    n_int_succ = np.bincount(src[internal], minlength=n)
    inb = bid >= 0

    def per_block(mask: np.ndarray) -> np.ndarray:
        return np.bincount(bid[inb & mask], minlength=nb)

    exits = per_block(has_ext_succ)
    entries = per_block(has_ext_pred)
    orphans = (~has_ext_succ & (n_int_succ == 0)) | (~has_ext_pred & (n_int_pred == 0))
    bad = per_block(orphans)
    # every entry reads all of X: (entry, x) pairs = entries * |X|
    pairs = np.unique(np.stack([dst[ext_in], src[ext_in]]), axis=1)
    n_pairs = np.bincount(bid[pairs[0]], minlength=nb)
    bx = np.unique(np.stack([bid[pairs[0]], pairs[1]]), axis=1)
    n_x = np.bincount(bx[0], minlength=nb)
    size = np.bincount(bid[inb], minlength=nb)
    return (size >= 2) & (exits == 1) & (entries >= 1) & (bad == 0) & (n_pairs == entries * n_x)


@dataclass(frozen=True)
class _Certificate:
    safe: np.ndarray  # per eligible block
    slack: np.ndarray  # per eligible block: float slack charged to the lower bound
    distinct: int  # mini-problems solved (pairs)


def _certify(prob: CutProblem, bs: BlockStructure) -> _Certificate:
    nb = len(bs.members)
    t = prob.tensor
    tx = np.bincount(bs.x_block, weights=t[bs.x_flat], minlength=nb)
    safe = np.zeros(nb, bool)
    slack = np.zeros(nb)
    distinct = 0
    for blocks, mem in bs.groups:  # blocks of one shape with equal costs share one certificate
        rows = np.hstack([prob.dev[mem], prob.srv[mem], t[mem], tx[blocks, None]])
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        done = [_certify_one(prob.dev[mem[f]], prob.srv[mem[f]], t[mem[f]], float(tx[blocks[f]]),
                             bs.local_src[blocks[f]], bs.local_dst[blocks[f]]) for f in first]
        inverse = inverse.reshape(-1)
        safe[blocks] = np.array([d[0] for d in done], bool)[inverse]
        slack[blocks] = np.array([d[1] for d in done], float)[inverse]
        distinct += len(done)
    return _Certificate(safe, slack, distinct)


def _certify_one(a: np.ndarray, c: np.ndarray, tm: np.ndarray, tx: float, src: np.ndarray,
                 dst: np.ndarray) -> tuple[bool, float]:
    """Whether the block can be contracted, and the float slack of that proof.

    ``min_P c'(P) >= srv_all`` splits into two problems free of the (possibly huge) constant t(X):
    over P holding every entry, ``c(P) >= sum c + t(X)``; over the other P, ``c(P) >= sum c``,
    implied by ``m0 = min_P c(P) >= sum c`` (P = {} attains sum c, so this says {} is optimal).
    The device-side test is ``m0 >= sum a + t(exit)``.
    """
    k = a.size
    dev, srv, tensor = np.r_[0.0, a], np.r_[0.0, c], np.r_[0.0, tm]
    force_out = np.zeros(k + 1, bool)
    force_out[k] = True  # the exit: last member in topological order
    x_only = np.r_[True, np.zeros(k, bool)]
    m0 = _mini_min(src, dst, dev, srv, tensor, x_only, force_out)
    to_srv = float(c.sum())
    to_dev = float(a.sum()) + float(tm[-1])
    routes = [max(to_dev - m0, 0.0)] if m0 >= to_dev * (1 - _SLACK) else []
    if m0 >= to_srv * (1 - _SLACK):
        entries = np.zeros(k + 1, bool)
        entries[dst[src == 0]] = True
        slack1 = 0.0
        if not entries[k]:  # with the exit among the entries no P holds every entry
            m1 = _mini_min(src, dst, dev, srv, tensor, x_only | entries, force_out)
            thr = to_srv + tx
            slack1 = max(thr - m1, 0.0) if m1 >= thr * (1 - _SLACK) else np.inf
        if np.isfinite(slack1):
            routes.append(max(slack1, to_srv - m0, 0.0))
    return (True, min(routes)) if routes else (False, 0.0)


def _mini_min(src: np.ndarray, dst: np.ndarray, dev: np.ndarray, srv: np.ndarray,
              tensor: np.ndarray, force_in: np.ndarray, force_out: np.ndarray) -> float:
    """Proven lower bound on the minimum of one block's mini-problem."""
    net = network_from_arrays(src, dst, dev, srv, tensor, force_in, force_out)
    # rel_tol=0 always runs the residual re-solve: the bound is then ~1e-16 of the block's cost,
    # which keeps the slack charged to the final lower bound negligible (the mini-graphs are tiny)
    res = solve_network(net, lambda side: price_mask(src, dst, dev, srv, tensor,
                                                     side[net.node_of]), rel_tol=0.0)
    return res.bound


def solve(prob: CutProblem) -> Result:
    """Contract the certified blocks, cut the smaller graph, expand (exact on every graph)."""
    bs = block_structure(prob.graph)
    cert = _certify(prob, bs)
    if prob.pair_src.size:  # the certificate prices a block's own nodes and tensors only: a
        paired = np.zeros(prob.n, bool)  # block holding a pair term's node stays expanded
        paired[prob.pair_src] = paired[prob.pair_dst] = True
        cert = replace(cert, safe=cert.safe & ~np.array([paired[m].any() for m in bs.members],
                                                        bool))
    rep = np.arange(prob.n, dtype=np.int64)
    for k in np.flatnonzero(cert.safe):
        rep[bs.members[k]] = prob.n + k
    # the contracted network's arcs depend only on which blocks are contracted: reused across
    # devices and bandwidths that certify the same blocks
    net = build_network(prob, rep, key=("blockwise", cert.safe.tobytes()))
    # the contracted network is a short chain of block nodes: solved un-mirrored it took 0.2-2.3
    # ms in every setting measured (resnet_like 1e4 and 1e5, 5 device speeds x 3 link rates),
    # mirrored up to 55 ms; the slow-device rule that mirrors the full network does not carry over
    net = replace(net, mirror=False)
    res = solve_network(net, lambda side: prob.price(side[net.node_of]))
    mask = res.x[net.node_of]
    slack = float(cert.slack[cert.safe].sum())
    info: dict[str, Any] = {**res.extras, "blocks_found": bs.n_found,
                            "blocks_eligible": len(bs.members),
                            "blocks_contracted": int(cert.safe.sum()),
                            "distinct_blocks_certified": cert.distinct, "certificate_slack": slack}
    return certified(prob, mask, res.bound - slack, info)
