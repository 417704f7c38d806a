r"""Partition every device of a scenario at its bandwidth share (one cut per device class).

Each device k minimises its own round time under the reference model (docs/cost_model.md)

    T_k(S) = I * (b * sec_dev_k(S) + b * sec_srv(V \ S) + b * 8 * bnd(S) * spb_k)
             + [aggregate] * 8 * W(S) * spb_k,          spb_k = 1/r_up,k + 1/r_dn,k

which is the partition problem with node costs
a_v = I*b*sec_dev_k(v) + [aggregate]*8*param(v)*spb_k, c_v = I*b*sec_srv(v) and tensor costs
t_u = I*b*8*out(u)*spb_k: W(S) is a sum over nodes, so the
aggregation fits the same s-t graph. A weight tied across the cut adds I*8*bytes*spb_k (its
gradient each way per iteration) as pair terms (``problem.tied_terms``). With labels on the
device and no aggregation, S = V (local training) still exchanges the model
(costs.device_phases), so it is priced apart and compared.
The devices' round times do not interact at fixed shares, so minimising each one minimises both the
parallel round (max) and the sequential round (sum): the plan is optimal *for the given shares*.
Devices with equal :func:`cut_signature` and equal share share one cut computation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.costs import BITS, compute_groups
from splitopt.errors import InputError
from splitopt.partitioning import solver
from splitopt.partitioning.problem import (
    CutProblem,
    check_connected,
    graph_arrays,
    solution,
    tied_terms,
    train_seconds,
)
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario
from splitopt.system import Device, link_of


def check_shares(scenario: Scenario, shares: Any) -> list[float]:
    """Bandwidth share per device (default equal), validated: each in (0, 1], sum <= 1."""
    names = [d.name for d in scenario.devices]
    n = len(names)
    if shares is None:
        return [1.0 / n] * n
    if isinstance(shares, Mapping):
        unknown = sorted(set(shares) - set(names))
        if unknown or len(shares) != n:
            raise InputError("shares", sorted(shares)[:8], f"one share per device: {names[:8]}")
        shares = [shares[x] for x in names]
    if not isinstance(shares, Sequence) or isinstance(shares, str) or len(shares) != n:
        raise InputError("shares", shares, f"None, a mapping by device name, or {n} numbers")
    out = []
    for name, s in zip(names, shares, strict=True):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1:
            raise InputError(f"shares[{name!r}]", s, "a number in (0, 1]")
        out.append(float(s))
    if sum(out) > 1 + 1e-9:
        raise InputError("shares", round(sum(out), 9), "bandwidth shares summing to at most 1")
    return out


def round_problem(scenario: Scenario, device: Device, share: float, *,
                  labels_on_device: bool | None = None) -> CutProblem:
    """One device's round-time problem at bandwidth share ``share``."""
    g, tr = scenario.graph, scenario.training
    link = link_of(device, scenario.channel, share)
    spb = link.seconds_per_bit
    ib = float(tr.local_iters * tr.batch_size)
    dev = ib * train_seconds(g, device.cls, device.flops)
    if tr.aggregate:
        dev = dev + BITS * g.param_bytes * spb
    srv = ib * train_seconds(g, scenario.server.device_class, scenario.server.flops)
    on_device = tr.labels == "device" if labels_on_device is None else labels_on_device
    pairs = tied_terms(g, tr.local_iters * BITS * spb, BITS * spb if tr.aggregate else 0.0)
    return CutProblem(g, dev, srv, ib * BITS * g.out_bytes * spb, on_device, *pairs)


def best_round_cut(scenario: Scenario, device: Device, share: float, method: str) -> Result:
    """The device-side set minimising the device's round time (FL pricing of S = V included)."""
    solve = solver(method)
    tr = scenario.training
    if tr.labels == "server" or tr.aggregate:
        return solve(round_problem(scenario, device, share))
    # S = V pays the model exchange: compare the best split (output on the server) with it
    split = solve(round_problem(scenario, device, share, labels_on_device=False))
    prob = round_problem(scenario, device, share, labels_on_device=True)
    full = np.ones(prob.n, bool)
    link = link_of(device, scenario.channel, share)
    local = prob.price(full) + BITS * float(scenario.graph.param_bytes.sum()) * link.seconds_per_bit
    if local < split.objective:
        return solution(full, local, local, split.termination,
                        {**split.extras, "local_training": True})
    return split


def cut_signature(device: Device, measured: Mapping[str, Any]) -> tuple:
    """What prices a device's cut: speed, channel, and its class only if the graph measured it.

    Coarser than :meth:`Device.signature` (memory and power do not enter the round time, and a
    class without measured times prices by FLOPs like any other), so more devices share a cut.
    """
    cls = device.cls if device.cls in measured else None
    return (device.flops, device.spectral_eff_up, device.spectral_eff_dn, cls)


def compute_signature(device: Device, measured: Mapping[str, Any]) -> tuple:
    """What prices a device's compute: its FLOP/s, and its class only if the graph measured it.

    The (compute, bits) hull of :mod:`splitopt.partitioning.hull` depends on nothing else of the
    device (the bits of a cut are the same for every device), so one hull serves a whole class.
    """
    return (device.flops, device.cls if device.cls in measured else None)


def class_hull_sets(scenario: Scenario) -> list[frozenset[str]]:
    """Union over compute classes of the lower-hull sets of (A(S), D(S)): one hull per class.

    Devices differing only in channel, memory or power share their hull (docs/planner.md).
    """
    from splitopt.partitioning.hull import hull  # the package attribute is shadowed by the module

    tr, measured = scenario.training, graph_arrays(scenario.graph).measured
    first: dict[tuple, Device] = {}  # (compute_groups: one device per group, in arrays)
    for d in compute_groups(scenario.graph, scenario.devices)[1]:
        first.setdefault(compute_signature(d, measured), d)
    out: dict[frozenset[str], None] = {}
    for dev in first.values():
        for s in hull(scenario.graph, dev, scenario.server, batch=tr.batch_size,
                      local_iters=tr.local_iters, aggregate=tr.aggregate, labels=tr.labels):
            out[frozenset(s)] = None
    return list(out)


def partition_scenario(scenario: Scenario, shares: Any = None, *,
                       method: str = "maxflow") -> Plan:
    """Partition every device of ``scenario`` at its bandwidth share (default: equal shares).

    Returns a multi-device Plan priced with :func:`splitopt.plan.evaluate`; ``objective`` is the
    round latency, optimal for the given shares when every cut is (``status`` "optimal").
    """
    if not isinstance(scenario, Scenario):
        raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
    solver(method)  # a bad method name fails before any work
    check_connected(scenario.graph)
    beta = check_shares(scenario, shares)
    groups: dict[tuple, list[int]] = {}
    measured = graph_arrays(scenario.graph).measured
    for i, d in enumerate(scenario.devices):
        groups.setdefault(cut_signature(d, measured) + (beta[i],), []).append(i)
    sols: dict[int, Result] = {}
    for members in groups.values():
        sol = best_round_cut(scenario, scenario.devices[members[0]], beta[members[0]], method)
        sols.update({i: sol for i in members})
    g = scenario.graph
    devs = tuple(DevicePlan(d.name, g.names_of(sols[i].x), beta[i],
                            batch_size=scenario.training.batch_size)
                 for i, d in enumerate(scenario.devices))
    statuses = {s.termination for s in sols.values()}
    status = "optimal" if statuses == {"optimal"} else sorted(statuses - {"optimal"})[0]
    plan = Plan(devs, rounds=scenario.training.rounds, status=status, method=method,
                meta={"cut_computations": len(groups), "shares": "given" if shares else "equal",
                      "round_s": {d.name: sols[i].objective
                                  for i, d in enumerate(scenario.devices)}}).priced(scenario)
    latency = plan.predicted.round_latency_s if plan.predicted else None
    return replace(plan, objective=latency, bound=latency if status == "optimal" else None)
