"""OR-Tools' max-flow, the one place splitopt talks to it (the min-cut partitioner's solver).

Capacities are floats; OR-Tools takes integers: finite capacities are scaled so that their sum is
about 2^61 and rounded down, infinite ones set above every cut, and the flow read back in true
units (each arc's flow shrunk by a few ulps so that it stays within its float capacity).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitopt.errors import SolverError

SOURCE, SINK = 0, 1
_TARGET = float(2**61)  # scaled sum of finite capacities: int64 holds 4x that with room to spare
_ULP = 2.0**-52


def solve_scaled(tails: np.ndarray, heads: np.ndarray, vals: np.ndarray, n_nodes: int,
                 mirror: bool) -> tuple[list[Any], Any, float]:
    """One integer max-flow: the first ``vals.size`` arcs get ``vals`` rounded down, the rest inf.

    Returns two functions building the minimum cuts (the smallest and the largest source side),
    a function giving the flow of every arc in true units (a feasible flow of the float network;
    only the residual re-solve needs it) and the flow's value, a proven lower bound.
    """
    from ortools.graph.python import max_flow

    total = float(vals.sum())
    scale = _TARGET / total if total > 0 else 1.0
    icap = np.empty(tails.size, np.int64)
    finite = icap[:vals.size]  # a view: the scaled capacities are written in place, truncated
    np.multiply(vals, scale, out=finite, casting="unsafe")  # truncation rounds down: caps >= 0
    icap[vals.size:] = int(finite.sum()) + 1  # infinite: above every cut
    # OR-Tools' push-relabel took seconds on 1e4-node ResNet-like graphs when the device was
    # slower than the server (most terminal arcs into t), and as long on the mirrored network
    # (arcs reversed, solved from t to s) when the device was faster; solving the mirror in the
    # first case took milliseconds in every case measured (benchmarks/partition.py). The cut and
    # the flow are the same either way.
    smf = max_flow.SimpleMaxFlow()
    if mirror:
        smf.add_arcs_with_capacity(heads, tails, icap)
    else:
        smf.add_arcs_with_capacity(tails, heads, icap)
    smf.add_arc_with_capacity(n_nodes - 1, n_nodes - 1, 0)  # every node exists for the cut lists
    status = smf.solve(SINK, SOURCE) if mirror else smf.solve(SOURCE, SINK)
    if status != smf.OPTIMAL:
        raise SolverError(f"OR-Tools max-flow stopped with status {status}")
    # floors make each arc's flow <= its capacity (up to one float rounding of cap * scale)
    shrink = 1.0 - 4 * _ULP

    def flows() -> np.ndarray:
        return smf.flows(np.arange(tails.size)).astype(float) / scale * shrink

    # the mirror reaches the smallest t side from t, and the smallest s side reaches s
    near, far = ((smf.get_sink_side_min_cut, smf.get_source_side_min_cut) if mirror else
                 (smf.get_source_side_min_cut, smf.get_sink_side_min_cut))

    def small() -> np.ndarray:
        side = np.zeros(n_nodes, bool)
        side[np.asarray(near(), dtype=np.int64)] = True
        return side

    def large() -> np.ndarray:
        side = np.ones(n_nodes, bool)
        side[np.asarray(far(), dtype=np.int64)] = False
        return side

    return [small, large], flows, smf.optimal_flow() / scale * shrink
