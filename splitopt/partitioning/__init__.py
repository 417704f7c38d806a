"""Exact partitioning of layer DAGs between one device and the server (docs/partition.md).

``partition(graph, device, server, link, method=...)`` finds the device-side set that minimises one
training iteration's delay under the reference cost model; every method returns the same
:class:`~splitopt.plan.Plan`. Methods, one module each:

- ``maxflow``: minimum s-t cut with OR-Tools (exact, certified in floats; the default);
- ``blockwise``: contract the repeated blocks that provably never profit from being split, then cut;
- ``chain``: the Neurosurgeon-style scan over topological-order prefixes (exact on chains only);
- ``milp``: the same problem as a MILP solved by HiGHS (for comparison);
- ``brute``: exhaustive enumeration of the closed sets (the test oracle; small graphs).
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable

import numpy as np

from splitopt.backends.results import Result
from splitopt.costs import BITS, Phases, tied_pairs
from splitopt.errors import InputError
from splitopt.graph import LayerGraph
from splitopt.partitioning.problem import CutProblem, iteration_problem
from splitopt.plan import DevicePlan, Plan
from splitopt.system import Device, Link, Server

#: method name -> module of this package exposing ``solve(CutProblem) -> Result`` (``x`` the mask)
METHODS: dict[str, str] = {
    "maxflow": "maxflow",
    "blockwise": "blockwise",
    "chain": "chain",
    "milp": "milp",
    "brute": "brute",
}

__all__ = ["METHODS", "CutProblem", "Result", "hull", "partition", "partition_scenario",
           "solver"]


def solver(method: str) -> Callable[[CutProblem], Result]:
    """The ``solve`` function of a method, imported on first use."""
    if method not in METHODS:
        raise InputError("method", method, f"one of {sorted(METHODS)}",
                         "method='maxflow' is exact and fast on any graph.")
    return _solve_of(METHODS[method])


@functools.cache
def _solve_of(module: str) -> Callable[[CutProblem], Result]:
    return importlib.import_module(f"{__name__}.{module}").solve  # type: ignore[no-any-return]


def partition(graph: LayerGraph, device: Device, server: Server, link: Link, *,
              method: str = "maxflow", batch: int = 1, labels: str = "server") -> Plan:
    """The device-side set minimising one training iteration's delay, as a one-device Plan.

    Parameters
    ----------
    graph
        The model's layer graph; measured per-node times of the device's class (and of the
        server's ``device_class``) replace FLOPs / speed node by node.
    device, server, link
        Who computes and the rates the device gets (``bandwidth_share`` 1.0 in the plan means
        "exactly this link").
    method
        One of :data:`METHODS`.
    batch
        Samples per iteration.
    labels
        ``"server"`` (vanilla split learning: the output node stays on the server) or
        ``"device"`` (the output may join the device side; S = V is local training).

    Returns
    -------
    Plan
        ``objective`` the predicted iteration delay (seconds), ``bound`` the proven bound,
        ``meta`` the boundary tensors, the per-phase breakdown and solver details.

    """
    solve = solver(method)
    t0 = time.perf_counter()
    prob = iteration_problem(graph, device, server, link, batch=batch, labels=labels)
    sol = solve(prob)
    seconds = time.perf_counter() - t0
    boundary = prob.boundary(sol.x)
    phases = iteration_phases(prob, sol.x, device, link, batch, boundary=boundary)
    plan = _plan(prob, sol, device.name, method, phases, seconds, batch, boundary)
    from splitopt.solving.verify import checked_plan  # the verified-answer guard (issue 11)

    return checked_plan(plan, graph, device, server, link, batch=batch, labels=labels)


def _plan(prob: CutProblem, sol: Result, name: str, method: str, phases: Phases,
          seconds: float, batch: int, boundary: np.ndarray) -> Plan:
    g = prob.graph
    bnd = np.flatnonzero(boundary)
    meta = {"boundary": [g.nodes[i].name for i in bnd], "phases": phases.to_dict(),
            "device_side_size": int(sol.x.sum()), "nodes": len(g), "batch": batch,
            "labels": "device" if prob.labels_on_device else "server",
            "solve_seconds": seconds, "solver": sol.extras}
    dp = DevicePlan(name, g.names_of(sol.x), 1.0, batch_size=batch)
    return Plan((dp,), status=sol.termination, objective=sol.objective, bound=sol.bound,
                method=method, meta=meta)


def iteration_phases(prob: CutProblem, mask: np.ndarray, device: Device, link: Link,
                     batch: int, *, boundary: np.ndarray | None = None) -> Phases:
    """Per-phase breakdown of one iteration, as :func:`splitopt.costs.device_phases` gives it.

    Same numbers as ``device_phases`` with ``Training(batch_size=batch, local_iters=1,
    aggregate=False)``, computed from the cached
    arrays so that pricing a 1e5-node plan stays in milliseconds (tests check they agree).
    """
    g, b = prob.graph, float(batch)
    bnd = float(g.out_bytes[prob.boundary(mask) if boundary is None else boundary].sum())
    first, later, nbytes = tied_pairs(g)  # weights tied across the cut: a gradient each way
    per_iter = b * bnd + float(nbytes[mask[first] != mask[later]].sum())
    w = float(g.param_bytes[mask].sum()) + float(nbytes[mask[later] & ~mask[first]].sum())
    t_dev, t_srv = float(prob.dev[mask].sum()), float(prob.srv[~mask].sum())
    t_up, t_dn = BITS * per_iter / link.up_bps, BITS * per_iter / link.dn_bps
    full = bool(mask.all())  # FL mode always exchanges the model (costs.device_phases)
    t_agg = BITS * w * link.seconds_per_bit if full else 0.0
    agg_w = w if full else 0.0
    t_iter = t_dev + t_srv + t_up + t_dn
    mem = 2 * w + b * float(g.act_bytes[mask].sum()) + device.workspace_bytes
    tx_s = t_up + BITS * agg_w / link.up_bps
    energy = device.power_compute_w * t_dev + device.power_tx_w * tx_s
    return Phases(device_compute_s=t_dev, server_compute_s=t_srv, uplink_s=t_up, downlink_s=t_dn,
                  aggregation_s=t_agg, iteration_s=t_iter, round_s=t_iter + t_agg,
                  memory_bytes=mem, energy_j=energy, comm_bytes=2 * per_iter + 2 * agg_w)


# imported last: both modules use solver() and the names above
from splitopt.partitioning.fleet import partition_scenario  # noqa: E402
from splitopt.partitioning.hull import hull  # noqa: E402
