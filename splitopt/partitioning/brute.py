"""Exhaustive enumeration of every predecessor-closed device-side set: the test oracle."""

from __future__ import annotations

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InputError
from splitopt.partitioning.problem import CutProblem, solution

MAX_FREE_NODES = 20  # at most 2**20 candidate sets (an antichain); a chain has only n + 1


def closed_sets(prob: CutProblem) -> np.ndarray:
    """Every feasible device-side set as a (K, V) boolean matrix (rows in no particular order).

    Built node by node in topological order: a node may join a partial set only when all of its
    predecessors are in it, so every row is closed by construction and none is missed.
    """
    force_in, force_out = prob.forced()
    n_free = int((~(force_in | force_out)).sum())
    if n_free > MAX_FREE_NODES:
        raise InputError("graph", f"{prob.n} nodes ({n_free} free)",
                         f"at most {MAX_FREE_NODES} nodes besides the inputs and output for "
                         "method='brute'", "Use method='maxflow' (exact, fast on any size).")
    preds = prob.graph.pred_indices
    rows = np.ones((1, 0), dtype=bool)
    for v in range(prob.n):
        can = rows[:, preds[v]].all(axis=1) if preds[v] else np.ones(len(rows), bool)
        if force_in[v]:
            rows = np.hstack([rows, np.ones((len(rows), 1), bool)])  # inputs have no preds
        elif force_out[v]:
            rows = np.hstack([rows, np.zeros((len(rows), 1), bool)])
        else:
            extra = rows[can]
            rows = np.vstack([np.hstack([rows, np.zeros((len(rows), 1), bool)]),
                              np.hstack([extra, np.ones((len(extra), 1), bool)])])
    return rows


def solve(prob: CutProblem) -> Result:
    """The cheapest of all feasible sets (ties: the first found)."""
    rows = closed_sets(prob)
    costs = prob.price_many(rows)
    k = int(np.argmin(costs))
    obj = prob.price(rows[k])
    return solution(rows[k].copy(), obj, obj, "optimal", {"candidates": len(rows)})
