"""The verified-answer guard of :func:`splitopt.partition` (issue 11), priced in arrays.

Before a plan is called ``optimal`` its device-side *names* (what the user gets) are mapped back
to nodes, checked as a split of the graph and re-priced by the reference model's formula
(docs/cost_model.md; :func:`splitopt.costs.device_phases` for one iteration) from the graph's own
figures: ``graph.train_seconds`` of the device and the server, ``graph.out_bytes`` of the tensors
that leave the set, the tied weights of ``graph.meta``. Nothing the max-flow was given (the
problem's cost arrays, the network, its scaling) enters the re-pricing, so a wrong network,
capacity or certificate shows as a failed ``repriced objective`` check. It is one pass of numpy
over the nodes and edges (no per-node Python), so it costs a few percent of the solve; the tests
check its phases equal ``device_phases`` to 1e-12 on random DAGs.
"""

from __future__ import annotations

import numpy as np

from splitopt.costs import BITS, Phases, tied_pairs
from splitopt.graph import LayerGraph
from splitopt.solving.verify import MILP_GAP, Check, Verification, verify
from splitopt.system import Device, Link, Server


def split_check(graph: LayerGraph, mask: np.ndarray, labels_on_device: bool,
                ends: tuple[np.ndarray, np.ndarray] | None = None) -> Check:
    """Whether ``mask`` is a split: holds the inputs, predecessor-closed, labels rule kept.

    ``ends`` optionally gives ``mask`` at every edge's producer and consumer.
    """
    src, dst = graph.edge_index
    at_src, at_dst = (mask[src], mask[dst]) if ends is None else ends
    ok = (bool(mask[[graph.index[i] for i in graph.inputs]].all())
          and not bool(np.any(at_dst > at_src))  # a member whose producer is outside
          and (labels_on_device or not mask[graph.index[graph.output]]))
    if ok:
        return Check("valid split", True)
    try:  # the graph's own validation names what is wrong
        graph.check_split(graph.names_of(mask), labels_on_device=labels_on_device)
    except Exception as err:  # noqa: BLE001 - any refusal is the failed check
        return Check("valid split", False, str(err))
    return Check("valid split", False, "refused by the guard's array test")  # pragma: no cover


def reference_phases(graph: LayerGraph, mask: np.ndarray, device: Device, server: Server,
                     link: Link, batch: int, ends: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> tuple[Phases, np.ndarray]:
    """One iteration of the device-side set ``mask`` priced from the graph's own figures.

    The numbers of ``costs.device_phases`` with ``Training(batch_size=batch, local_iters=1,
    aggregate=False)`` (a set holding every node is FL mode and exchanges the model); also
    returns the boundary mask (members with a consumer outside the set). ``ends`` optionally
    gives ``mask`` at every edge's producer and consumer.
    """
    b = float(batch)
    src, dst = graph.edge_index
    at_src, at_dst = (mask[src], mask[dst]) if ends is None else ends
    boundary = np.zeros(mask.size, dtype=bool)
    boundary[src[at_src > at_dst]] = True  # a member with a consumer outside
    first, later, nbytes = tied_pairs(graph)  # weights tied across the cut: a gradient each way
    per_iter = b * float(graph.out_bytes[boundary].sum()) + float(
        nbytes[mask[first] != mask[later]].sum())
    w = float(graph.param_bytes[mask].sum()) + float(nbytes[mask[later] & ~mask[first]].sum())
    t_dev = b * float(graph.train_seconds(device.cls, device.flops)[mask].sum())
    t_srv = b * float(graph.train_seconds(server.device_class, server.flops)[~mask].sum())
    t_up, t_dn = BITS * per_iter / link.up_bps, BITS * per_iter / link.dn_bps
    full = bool(mask.all())
    agg_w = w if full else 0.0
    t_agg = BITS * agg_w * link.seconds_per_bit
    t_iter = t_dev + t_srv + t_up + t_dn
    mem = 2 * w + b * float(graph.act_bytes[mask].sum()) + device.workspace_bytes
    energy = device.power_compute_w * t_dev + device.power_tx_w * (t_up + BITS * agg_w
                                                                  / link.up_bps)
    return Phases(device_compute_s=t_dev, server_compute_s=t_srv, uplink_s=t_up, downlink_s=t_dn,
                  aggregation_s=t_agg, iteration_s=t_iter, round_s=t_iter + t_agg,
                  memory_bytes=mem, energy_j=energy, comm_bytes=2 * per_iter + 2 * agg_w), boundary


def verify_cut(graph: LayerGraph, device_side: frozenset[str], device: Device, server: Server,
               link: Link, *, batch: int, labels_on_device: bool, objective: float | None,
               bound: float | None, status: str) -> tuple[Verification, Phases, np.ndarray]:
    """The guard's checks on a plan's device-side names; its re-priced phases and boundary.

    The objective must equal the re-priced iteration delay (``1e-9`` relative), the set must be
    a split, and the bound lie at or below the objective (within the solver's gap when it claims
    ``optimal``).
    """
    refused = None
    try:
        mask = graph.mask(device_side)  # from the plan's names, not from the solver's mask
    except Exception as err:  # noqa: BLE001 - a name the graph does not have
        mask, refused = np.zeros(len(graph), dtype=bool), str(err)
    src, dst = graph.edge_index
    ends = np.take(mask, src), np.take(mask, dst)  # once, for the split test and the price
    valid = (split_check(graph, mask, labels_on_device, ends) if refused is None
             else Check("valid split", False, refused))
    phases, boundary = reference_phases(graph, mask, device, server, link, batch, ends)
    check = verify(objective=objective, repriced=phases.iteration_s if valid.passed else None,
                   bound=bound, extra=[valid], gap=MILP_GAP if status == "optimal" else None)
    return check, phases, boundary
