"""The Neurosurgeon-style linear scan over topological-order prefixes.

Paper: Kang et al., "Neurosurgeon: Collaborative Intelligence Between the Cloud and Mobile Edge"
(ASPLOS 2017): evaluate every split point of a layer sequence and keep the cheapest. Exact on a
chain; on a DAG it considers only the prefixes of one topological order (those that hold the inputs
and, labels on the server, not the output; :meth:`LayerGraph.chain_prefixes`), so it is a baseline.

All prefixes are priced at once in O(V + E): prefix ``p`` (nodes 0..p) pays the device seconds of
0..p, the server seconds of p+1..V-1, and tensor ``u`` iff ``u <= p < last consumer of u``, which is
a difference array over ``p``.
"""

from __future__ import annotations

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InputError
from splitopt.partitioning.problem import CutProblem, solution


def prefix_costs(prob: CutProblem) -> np.ndarray:
    """Cost of every prefix 0..p, p = 0..V-1 (infeasible prefixes included; see ``valid``)."""
    ar, n = prob.arrays, prob.n
    dev = np.cumsum(prob.dev)
    srv = np.concatenate([np.cumsum(prob.srv[::-1])[::-1][1:], [0.0]])
    last = np.full(n, -1, dtype=np.intp)
    np.maximum.at(last, ar.src, ar.dst)
    has = last > np.arange(n)
    diff = np.zeros(n + 1)
    np.add.at(diff, np.flatnonzero(has), prob.tensor[has])
    np.add.at(diff, last[has], -prob.tensor[has])
    # a pair term (i, j) is paid by the prefixes holding i and not j: i <= p < j
    fwd = prob.pair_src < prob.pair_dst
    np.add.at(diff, prob.pair_src[fwd], prob.pair_cost[fwd])
    np.add.at(diff, prob.pair_dst[fwd], -prob.pair_cost[fwd])
    return dev + srv + np.cumsum(diff)[:n]


def valid_prefixes(prob: CutProblem) -> np.ndarray:
    """Indices p whose prefix 0..p is feasible (holds the inputs; the labels rule)."""
    ar, n = prob.arrays, prob.n
    lo = int(ar.inputs.max())
    hi = n - 1 if prob.labels_on_device else ar.output - 1
    return np.arange(lo, hi + 1)


def solve(prob: CutProblem) -> Result:
    """The cheapest topological-order prefix; "optimal" only when the graph is a chain."""
    ps = valid_prefixes(prob)
    if ps.size == 0:
        raise InputError("graph", prob.graph.name or repr(prob.graph),
                         "a topological order in which every input comes before the output "
                         "(an input that feeds nothing before the output leaves no prefix)",
                         "Use method='maxflow', which does not depend on the order.")
    costs = prefix_costs(prob)[ps]
    p = int(ps[np.argmin(costs)])
    mask = np.zeros(prob.n, dtype=bool)
    mask[: p + 1] = True
    obj = prob.price(mask)
    exact = prob.graph.is_chain
    return solution(mask, obj, obj if exact else None, "optimal" if exact else "heuristic",
                    {"candidates": int(ps.size)})
