"""The baselines a partition is compared with, each named for exactly what it does.

- ``device-only``: everything the labels rule allows on the device.
- ``server-only``: the inputs alone on the device.
- ``best chain cut``: the cheapest prefix of the graph's topological order (Neurosurgeon-style),
  priced honestly: every tensor that crosses is paid (skip connections included).
- ``mispriced chain cut``: the prefix a chain-only partitioner picks when it prices a prefix as if
  only its last node's output crossed (a model seen as a chain of layers); ``cost`` is what that
  cut really costs under the reference model, ``claimed`` what the partitioner believed.
- ``blocks, no certificate``: every block of :meth:`LayerGraph.blocks` contracted to one node, as
  the block-wise paper does, then the minimum cut of the contracted graph; cuts through a block
  are lost. (``method="blockwise"`` contracts a block only with a certificate and is exact.)

Every ``cost`` is the reference model's price of the baseline's device-side set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from splitopt.partitioning.chain import prefix_costs, valid_prefixes
from splitopt.partitioning.problem import CutProblem


@dataclass(frozen=True)
class Baseline:
    """One baseline's device-side set, its true cost and (if it differs) the cost it claimed."""

    name: str
    mask: np.ndarray
    cost: float
    claimed: float | None = None

    def reduction(self, optimum: float) -> float:
        """Percent by which ``optimum`` is below this baseline's cost."""
        return 100.0 * (self.cost - optimum) / self.cost if self.cost > 0 else 0.0


def baselines(prob: CutProblem, *, extended: bool = False) -> list[Baseline]:
    """Price the baselines of ``prob``.

    Device-only, server-only and the honest best chain cut; with ``extended`` also the mispriced
    chain cut and block contraction without a certificate (module docstring).
    """
    force_in, force_out = prob.forced()
    device_only = ~force_out
    out = [Baseline("device-only", device_only, prob.price(device_only)),
           Baseline("server-only", force_in, prob.price(force_in))]
    ps = valid_prefixes(prob)
    if ps.size:  # no prefix when an input sorts after the output
        out.append(_prefix("best chain cut", prob, ps, prefix_costs(prob)[ps]))
        if extended:
            claimed = mispriced_prefix_costs(prob)[ps]
            out.append(_prefix("mispriced chain cut", prob, ps, claimed))
    if extended:
        mask = uncertified_blocks(prob)
        out.append(Baseline("blocks, no certificate", mask, prob.price(mask)))
    return out


def _prefix(name: str, prob: CutProblem, ps: np.ndarray, costs: np.ndarray) -> Baseline:
    k = int(np.argmin(costs))
    mask = np.zeros(prob.n, dtype=bool)
    mask[: int(ps[k]) + 1] = True
    true = prob.price(mask)
    return Baseline(name, mask, true, None if np.isclose(true, costs[k]) else float(costs[k]))


def mispriced_prefix_costs(prob: CutProblem) -> np.ndarray:
    """What a chain-only partitioner believes prefix 0..p costs: only node p's tensor crosses."""
    dev = np.cumsum(prob.dev)
    srv = np.concatenate([np.cumsum(prob.srv[::-1])[::-1][1:], [0.0]])
    return dev + srv + prob.tensor


def uncertified_blocks(prob: CutProblem) -> np.ndarray:
    """Device-side mask of the minimum cut with every block contracted, certificate or not."""
    from splitopt.partitioning.stgraph import build_network, solve_network

    g = prob.graph
    rep = np.arange(prob.n, dtype=np.int64)
    forced = {*g.inputs, g.output}
    for k, names in enumerate(g.blocks().values()):
        if not forced & set(names):
            rep[[g.index[x] for x in names]] = prob.n + k
    net = replace(build_network(prob, rep), mirror=False)  # fast on contracted networks
    res = solve_network(net, lambda side: prob.price(side[net.node_of]))
    return res.x[net.node_of]
