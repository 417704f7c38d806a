"""Exact partitioning by maximum flow / minimum s-t cut.

Paper: "Fast AI Model Partition for Split Learning over Edge Networks" (arXiv 2507.01041): a model
as a DAG, the optimal split-learning partition as a minimum s-t cut found by max-flow. The
construction (relay vertices for multi-consumer tensors, infinite reverse arcs for closure) is in
:mod:`splitopt.partitioning.stgraph`; the solver is OR-Tools' SimpleMaxFlow (Apache-2.0, compiled
push-relabel), with the integer-rounding certificate described there.
"""

from __future__ import annotations

from splitopt.backends.results import Result
from splitopt.partitioning.problem import CutProblem, certified
from splitopt.partitioning.stgraph import build_network, solve_network


def solve(prob: CutProblem) -> Result:
    """The optimal device-side set of ``prob`` (exact, certified in floats)."""
    net = build_network(prob)
    res = solve_network(net, lambda side: prob.price(side[net.node_of]))
    return certified(prob, res.x[net.node_of], res.bound, res.extras, objective=res.objective)
