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
from splitopt.errors import InputError
from splitopt.graph import LayerGraph
from splitopt.partitioning.guard import verify_cut
from splitopt.partitioning.problem import CutProblem, iteration_problem
from splitopt.plan import DevicePlan, Plan
from splitopt.solving.verify import checked_status
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
    assert sol.x is not None  # every method returns a device-side mask
    dp = DevicePlan(device.name, graph.names_of(sol.x), 1.0, batch_size=batch)
    # the verified-answer guard (issue 11): the plan's names re-priced from the graph's figures
    check, phases, boundary = verify_cut(
        graph, dp.device_side, device, server, link, batch=batch,
        labels_on_device=prob.labels_on_device, objective=sol.objective, bound=sol.bound,
        status=sol.termination)
    crossing = [graph.nodes[i].name for i in np.flatnonzero(boundary).tolist()]
    meta = {"boundary": crossing, "phases": phases.to_dict(),
            "device_side_size": len(dp.device_side), "nodes": len(graph), "batch": batch,
            "labels": labels, "solve_seconds": seconds, "solver": sol.extras,
            "verification": check.to_dict()}
    return Plan((dp,), status=checked_status(sol.termination, check), objective=sol.objective,
                bound=sol.bound, method=method, meta=meta)


# imported last: both modules use solver() and the names above
from splitopt.partitioning.fleet import partition_scenario  # noqa: E402
from splitopt.partitioning.hull import hull  # noqa: E402
