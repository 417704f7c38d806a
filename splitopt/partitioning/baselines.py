"""The baselines a partition is compared with: device-only, server-only, best chain cut."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitopt.partitioning.chain import solve as chain_solve
from splitopt.partitioning.chain import valid_prefixes
from splitopt.partitioning.problem import CutProblem


@dataclass(frozen=True)
class Baseline:
    """One baseline's device-side set and its cost."""

    name: str
    mask: np.ndarray
    cost: float

    def reduction(self, optimum: float) -> float:
        """Percent by which ``optimum`` is below this baseline's cost."""
        return 100.0 * (self.cost - optimum) / self.cost if self.cost > 0 else 0.0


def baselines(prob: CutProblem) -> list[Baseline]:
    """Price the three baselines of ``prob``.

    Device-only (everything the labels rule allows on the device), server-only (the inputs alone)
    and the best topological-order prefix (Neurosurgeon-style).
    """
    force_in, force_out = prob.forced()
    device_only = ~force_out
    out = [Baseline("device-only", device_only, prob.price(device_only)),
           Baseline("server-only", force_in, prob.price(force_in))]
    if valid_prefixes(prob).size:  # no prefix when an input sorts after the output
        chain = chain_solve(prob)
        out.append(Baseline("best chain cut", chain.mask, chain.objective))
    return out
