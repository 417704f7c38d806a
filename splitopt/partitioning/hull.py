"""The lower convex hull of (compute seconds, bits moved) over all splits, by parametric min-cut.

For a device-side set S of one device (docs/cost_model.md, I local iterations of batch b):

    A(S) = I * b * (sum_{v in S} sec_dev(v) + sum_{v notin S} sec_srv(v))     compute, full speed
    D(S) = I * 8 * (b * bnd(S) + tied(S)) + [aggregate] * 8 * W(S)            bits up (and down)

so at bandwidth share beta the round time is A(S) + D(S) * spb / beta: every bandwidth problem
over this device only ever needs the splits on the lower convex hull of the points (A(S), D(S)).
Both A and D are cut functions of the s-t graph (W(S) is a sum of node parameter bytes, so it goes
on the terminal arcs; the weights tied across the cut are pair terms, ``problem.tied_terms``),
hence min_S A(S) + lambda * D(S) is one min-cut for any lambda >= 0.

The hull is enumerated exactly by the Eisner-Severance breakpoint search: solve at lambda = 0
(min A) and lambda = infinity (min D); for two hull points p, q the lambda where their lines meet
is lambda = (A_q - A_p) / (D_p - D_q); if the min-cut there is strictly below both, it is a new
hull vertex and both halves are searched, otherwise p-q is a hull edge. That is one min-cut per
hull vertex and per hull edge. Points dominated on the vertical or horizontal ends are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitopt.costs import BITS
from splitopt.errors import InputError
from splitopt.graph import LayerGraph
from splitopt.partitioning.problem import CutProblem, check_connected, tied_terms, train_seconds
from splitopt.partitioning.stgraph import build_network, solve_network
from splitopt.system import Device, Server

_TOL = 1e-12  # a point must lie this far (relative) below a segment to count as a new vertex


@dataclass(frozen=True)
class HullPoint:
    """One split on the hull with its compute seconds and its bits."""

    device_side: frozenset[str]
    compute_s: float
    bits: float


class _Parametric:
    """min_S A(S) + lambda * D(S) for one graph and device, A and D re-priced in floats."""

    def __init__(self, graph: LayerGraph, device: Device, server: Server, ib: float,
                 aggregate: bool, on_device: bool, iters: int = 1):
        """``ib``: samples per round (batch x ``iters``, the local iterations)."""
        self.graph, self.on_device = graph, on_device
        self.a_dev = ib * train_seconds(graph, device.cls, device.flops)
        self.a_srv = ib * train_seconds(graph, server.device_class, server.flops)
        self.d_node = BITS * graph.param_bytes if aggregate else np.zeros(len(graph))
        self.d_tensor = ib * BITS * graph.out_bytes
        # tied gradients: I * 8 bits per byte each way per iteration; a held copy is aggregated
        self.d_pairs = tied_terms(graph, iters * BITS, BITS if aggregate else 0.0)

    def problem(self, wa: float, wd: float) -> CutProblem:
        """The cut problem of wa * A + wd * D."""
        src, dst, bits = self.d_pairs
        return CutProblem(self.graph, wa * self.a_dev + wd * self.d_node, wa * self.a_srv,
                          wd * self.d_tensor, self.on_device, src, dst, wd * bits)

    def point(self, mask: np.ndarray) -> tuple[float, float]:
        """(A, D) of a set, in floats."""
        return self.problem(1.0, 0.0).price(mask), self.problem(0.0, 1.0).price(mask)

    def solve(self, wa: float, wd: float) -> tuple[np.ndarray, float, float]:
        """The minimiser of wa * A + wd * D with its (A, D); ties broken towards smaller D/A."""
        prob = self.problem(wa, wd)
        net = build_network(prob)
        res = solve_network(net, lambda side: prob.price(side[net.node_of]))
        mask = res.x[net.node_of]
        return (mask, *self.point(mask))


def hull_points(graph: LayerGraph, device: Device, server: Server, *, batch: int = 1,
                local_iters: int = 1, aggregate: bool = True,
                labels: str = "server") -> list[HullPoint]:
    """The splits on the lower convex hull of (A, D), by increasing A (decreasing D)."""
    _check(graph, device, server, batch, local_iters, labels)
    on_device = labels == "device"
    par = _Parametric(graph, device, server, float(batch * local_iters), aggregate,
                      on_device and aggregate, local_iters)
    pts = _search(par)
    if on_device and not aggregate:  # S = V (local training) still exchanges the model
        full = np.ones(len(graph), bool)
        a, d = par.point(full)
        pts.append((full, a, d + BITS * float(graph.param_bytes.sum())))
    return [HullPoint(graph.names_of(m), a, d) for m, a, d in _lower_hull(pts)]


def hull(graph: LayerGraph, device: Device, server: Server, *, batch: int = 1,
         local_iters: int = 1, aggregate: bool = True,
         labels: str = "server") -> list[frozenset[str]]:
    """Device-side sets on the lower convex hull of (compute seconds, bits); see module doc."""
    return [p.device_side for p in hull_points(graph, device, server, batch=batch,
                                               local_iters=local_iters, aggregate=aggregate,
                                               labels=labels)]


def _search(par: _Parametric) -> list[tuple[np.ndarray, float, float]]:
    left, right = par.solve(1.0, 0.0), par.solve(0.0, 1.0)
    found = [left, right]
    stack = [(left, right)]
    while stack:
        p, q = stack.pop()
        da, dd = q[1] - p[1], p[2] - q[2]
        if da <= 0 or dd <= 0:  # same point, or one dominates: no hull edge between them
            continue
        lam = da / dd
        r = par.solve(1.0, lam)
        line = p[1] + lam * p[2]
        if r[1] + lam * r[2] < line - _TOL * abs(line):
            found.append(r)
            stack += [(p, r), (r, q)]
    return found


def _lower_hull(pts: list[tuple[np.ndarray, float, float]]) -> list[tuple[np.ndarray, float,
                                                                         float]]:
    """Lower-left convex hull (Andrew's monotone chain) of the points, dominated ones removed."""
    pts = sorted(pts, key=lambda p: (p[1], p[2]))
    out: list[tuple[np.ndarray, float, float]] = []
    for p in pts:
        if out and p[2] >= out[-1][2]:  # not lower than a point with less compute
            continue
        while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
            out.pop()
        out.append(p)
    return out


def _cross(o: tuple, a: tuple, b: tuple) -> float:
    return (a[1] - o[1]) * (b[2] - o[2]) - (a[2] - o[2]) * (b[1] - o[1])


def _check(graph: object, device: object, server: object, batch: object, local_iters: object,
           labels: object) -> None:
    if not isinstance(graph, LayerGraph):
        raise InputError("graph", type(graph).__name__, "a splitopt LayerGraph")
    if not isinstance(device, Device) or not isinstance(server, Server):
        raise InputError("device/server", (type(device).__name__, type(server).__name__),
                         "a splitopt Device and Server")
    for name, v in (("batch", batch), ("local_iters", local_iters)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(name, v, "an integer >= 1")
    if labels not in ("server", "device"):
        raise InputError("labels", labels, "'server' or 'device'")
    check_connected(graph)
