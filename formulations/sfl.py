"""Split federated learning over wireless: individual cuts, bandwidth (and server compute) shares.

Paper: "Accelerating Split Federated Learning over Wireless Communication Networks",
arXiv:2310.15584 (https://arxiv.org/abs/2310.15584).

What is taken from the paper (its abstract, the only text we had): split federated learning over a
wireless network, a split point per device and the bandwidth chosen jointly to cut the system
latency, solved by alternating optimisation (split points for fixed resources, resources for fixed
split points). What is our reconstruction: the equations (the reference cost model's,
docs/cost_model.md), the min-max round objective, the server serving modes, the exact solve, and the
details of the alternating loop (start from equal shares, stop when the split points repeat) --
so the baseline is "alternating optimisation as we read the abstract", not the paper's code.

Every device k trains its device-side set S_k in parallel; after I local iterations the
device-side models are aggregated (uploaded and downloaded: W(S) = sum_{v in S} param_bytes(v)):

    T_k = I * b * dev_k(S_k) + I * b * srv(S_k) / phi_k
          + (I * b * 8 * bnd(S_k) + 8 * W(S_k)) * p_k / beta_k
        = A_k(S_k) + S_k(S_k) / phi_k + D_k(S_k) / beta_k

    minimise    R * round latency
    subject to  sum_k beta_k <= 1,  M_k(S_k, b) <= memory_k,
                and the scenario's server serving: shared (sum_k phi_k <= 1, the default),
                dedicated (phi_k = 1) or sequential (devices in turn: the round is a sum).

Exact solve and baseline: as :mod:`splitopt.formulations.edgesplit` (this class adds the
aggregation). :class:`SFLSharedServer` forces the shared server whatever the scenario says.
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
    """SFL with the server's compute shared between devices (shares phi_k, sum <= 1).

    Whatever the scenario's ``server.serving`` says.
    """

    server_share: bool = True
    name = "sfl-server"


def _register() -> None:
    """``splitopt solve --problem sfl`` and ``--problem sfl-server``."""
    from splitopt.model.problems import register

    register("sfl", lambda scenario: SFL().problem(scenario))
    register("sfl-server", lambda scenario: SFLSharedServer().problem(scenario))


_register()
