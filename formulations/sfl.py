"""Split federated learning over wireless: individual cuts, bandwidth (and server compute) shares.

Paper: "Accelerating Split Federated Learning over Wireless Communication Networks",
arXiv:2310.15584 (https://arxiv.org/abs/2310.15584).

Every device k trains its device-side set S_k in parallel; after I local iterations the
device-side models are aggregated (uploaded and downloaded: W(S) = sum_{v in S} param_bytes(v)).
Under the reference cost model (docs/cost_model.md):

    T_k = I * b * dev_k(S_k) + I * b * srv(S_k) / phi_k
          + (I * b * 8 * bnd(S_k) + 8 * W(S_k)) * p_k / beta_k
        = A_k(S_k) + S_k(S_k) / phi_k + D_k(S_k) / beta_k

    minimise    R * max_k T_k
    subject to  sum_k beta_k <= 1,  [sum_k phi_k <= 1 with the shared server; else phi_k = 1],
                M_k(S_k, b) <= memory_k.

Exact solve: the builder's ``bisection`` path (phi = 1) or its ``server-share`` path (checked: a
plan that does not price to its objective, or an "optimal" far from its bound, is re-solved with the
Lagrangian branch and bound of :func:`splitopt.formulations._minmax.minmax_shared`, which proves its
bound). Baseline: alternating optimisation (split points for fixed resources, then the optimal
resources for fixed split points, until the split points repeat), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from splitopt.formulations.edgesplit import EdgeSplit


@dataclass(frozen=True)
class SFL(EdgeSplit):
    """Split federated learning (arXiv:2310.15584): EdgeSplit plus per-round model aggregation."""

    name = "sfl"
    paper = "arXiv:2310.15584"
    aggregate = True


@dataclass(frozen=True)
class SFLSharedServer(SFL):
    """SFL with the server's compute shared between devices (a share phi_k each, sum <= 1)."""

    server_share: bool = True
    name = "sfl-server"


def _register() -> None:
    """``splitopt solve --problem sfl`` and ``--problem sfl-server``."""
    from splitopt.model.problems import register

    register("sfl", lambda scenario: SFL().problem(scenario))
    register("sfl-server", lambda scenario: SFLSharedServer().problem(scenario))


_register()
