"""The reference cost model (docs/cost_model.md), vectorised over devices x candidate cuts.

For device k, cut S, batch b, bandwidth share beta and server share phi:

    T_dev  = b * sec_dev_k(S)                 sec_dev_k(S)  = sum_{v in S}  (fwd+bwd)(v) / f_k
    T_srv  = b * sec_srv(S) / phi             sec_srv(S)    = sum_{v notin S} (fwd+bwd)(v) / f_s
    T_up   = (b * bnd(S) + tied(S)) * 8 / r_up   bnd(S)        = sum_{u in dS} out_bytes(u)
    T_dn   = (b * bnd(S) + tied(S)) * 8 / r_dn   tied(S)       = weights tied across the cut
    T_iter = T_dev + T_up + T_dn + T_srv
    T_agg  = 8 * W(S) * (1/r_up + 1/r_dn)     (split-federated rounds; FL-mode devices: W(V))
    T_k    = I * T_iter + T_agg  =  A_dev + A_srv / phi + D / beta

with r = beta * B * s. Measured per-node times replace FLOPs / speed node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from typing import Any

import numpy as np

from splitopt.errors import GraphError, InputError
from splitopt.graph import LayerGraph
from splitopt.system import Channel, Device, Link, Server, Training

BITS = 8.0


@dataclass(frozen=True)
class CutTable:
    """Per-cut aggregates of candidate device-side sets of one graph.

    ``masks`` is a (C, V) boolean matrix in the graph's topological order; every other array has
    one entry per cut.
    """

    graph: LayerGraph
    masks: np.ndarray

    @classmethod
    def from_sets(cls, graph: LayerGraph, sets: Sequence[frozenset[str] | set[str]]) -> CutTable:
        """Table of the given device-side sets, each validated as a split.

        Every set must hold the inputs and be predecessor-closed (the output node is allowed: a
        set holding every node is FL mode). Raises :class:`~splitopt.errors.GraphError` naming
        the first bad set otherwise, instead of pricing it silently.
        """
        masks = np.zeros((len(sets), len(graph)), dtype=bool)
        for c, s in enumerate(sets):
            masks[c] = graph.mask(s)
        return cls.from_masks(graph, masks)

    @classmethod
    def from_masks(cls, graph: LayerGraph, masks: np.ndarray) -> CutTable:
        """Table of device-side sets given as (C, V) node masks, each validated as a split."""
        src, dst = graph.edge_index
        bad = (masks[:, dst] & ~masks[:, src]).any(axis=1)
        bad |= ~masks[:, [graph.index[i] for i in graph.inputs]].all(axis=1)
        for c in np.flatnonzero(bad)[:1]:
            try:
                graph.check_split(graph.names_of(masks[c]), labels_on_device=True)
            except GraphError as err:
                raise GraphError(f"sets[{c}]", err.value, err.allowed, err.fix) from None
        return cls(graph, masks)

    @classmethod
    def chain(cls, graph: LayerGraph, *, labels_on_device: bool = False) -> CutTable:
        """The topological-order prefixes (all splits of a chain).

        With labels on the device the whole graph (FL mode) is the last candidate.
        """
        # graph.chain_prefixes() as masks: the prefix ending at node i, for every i from the
        # last input up to the node before the output (topological order)
        v = len(graph)
        last_input = max(graph.index[i] for i in graph.inputs)
        ends = np.arange(last_input, graph.index[graph.output])
        masks = np.arange(v)[None, :] <= ends[:, None]
        if labels_on_device:
            masks = np.vstack([masks, np.ones((1, v), dtype=bool)])
        # (no from_masks check: a prefix of a topological order holds every predecessor of its
        # nodes and, from the last input on, every input)
        return cls(graph, masks)

    def __len__(self) -> int:
        return self.masks.shape[0]

    def sets(self) -> list[frozenset[str]]:
        """The device-side sets as frozensets of node names."""
        return [self.graph.names_of(m) for m in self.masks]

    @cached_property
    def boundary_bytes(self) -> np.ndarray:
        """Bytes per sample crossing the cut (each boundary tensor once)."""
        return self.graph.boundary_mask(self.masks).astype(float) @ self.graph.out_bytes

    @cached_property
    def tied_bytes(self) -> np.ndarray:
        """Bytes of weights tied across each cut (``graph.meta["tied"]``: one user each side).

        Training such a cut keeps a copy of the weight on each side and sends each side's
        gradient to the other once per iteration (``splitopt.execute.split_parts``): ``8 *
        tied_bytes`` bits up and as many down per iteration, not per sample (docs/cost_model.md,
        "Weights tied across the cut").
        """
        first, later, nbytes = tied_pairs(self.graph)
        return (self.masks[:, first] != self.masks[:, later]).astype(float) @ nbytes

    @cached_property
    def param_bytes(self) -> np.ndarray:
        """W(S): device-side parameter bytes, each copy of a weight the device holds once.

        A node's ``param_bytes`` counts a tied weight at its first user only; a device side
        that holds a later user without the first holds a copy too, counted here.
        """
        first, later, nbytes = tied_pairs(self.graph)
        held = (self.masks[:, later] & ~self.masks[:, first]).astype(float) @ nbytes
        return self.masks.astype(float) @ self.graph.param_bytes + held

    @cached_property
    def act_bytes(self) -> np.ndarray:
        """Device-side activation bytes per sample kept for backward.

        Uses each node's ``act_bytes`` (= ``out_bytes`` except on contracted blocks, which keep
        every member's activation although only their exit tensors cross a cut).
        """
        return self.masks.astype(float) @ self.graph.act_bytes

    def dev_seconds(self, device: Device) -> np.ndarray:
        """Seconds per sample of forward + backward of the device side on ``device``."""
        return self.masks.astype(float) @ self.graph.train_seconds(device.cls, device.flops)

    def srv_seconds(self, server: Server) -> np.ndarray:
        """Seconds per sample of the server side at the server's full speed."""
        per_node = self.graph.train_seconds(server.device_class, server.flops)
        return (~self.masks).astype(float) @ per_node


def tied_pairs(graph: LayerGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first user, later user, bytes) of each weight two nodes share (``graph.meta["tied"]``).

    Node indices in the graph's topological order; pairs naming a node the graph does not
    have (a block-contracted copy) are left out. A weight used by three nodes is listed as two
    pairs with the same first user; the pricing then counts each separated pair once.
    """
    rows = [(graph.index[u], graph.index[w], float(b))
            for u, w, b in graph.meta.get("tied", []) if u in graph and w in graph]
    if not rows:
        e = np.zeros(0, dtype=np.intp)
        return e, e, np.zeros(0)
    first, later, nbytes = zip(*rows)
    return (np.array(first, dtype=np.intp), np.array(later, dtype=np.intp),
            np.array(nbytes, dtype=float))


def per_bit_seconds(device: Device, channel: Channel) -> float:
    """Seconds per bit up plus per bit down at bandwidth share 1 (then divide by the share)."""
    return 1.0 / (channel.bandwidth_up_hz * device.spectral_eff_up) + 1.0 / (
        channel.bandwidth_dn_hz * device.spectral_eff_dn)


@dataclass(frozen=True)
class RoundTerms:
    """T[k, c] = a_dev + a_srv / phi_k + d / beta_k for every device k and candidate cut c.

    ``mem`` and the energy parts are also (N, C); energy = e_comp + e_tx / beta.
    """

    a_dev: np.ndarray
    a_srv: np.ndarray
    mem: np.ndarray
    e_comp: np.ndarray
    #: (N, C) bits each way per round (activations, tied gradients, the aggregation)
    bits: np.ndarray
    #: (N, 1) seconds per bit up / down at the whole band (divide by the share)
    s_up: np.ndarray
    s_dn: np.ndarray
    #: (N, 1) transmit power (W)
    p_tx: np.ndarray

    @cached_property
    def d(self) -> np.ndarray:
        """Seconds per round at the whole band (divide by beta); made when first read."""
        return self.bits * (self.s_up + self.s_dn)

    @cached_property
    def e_tx(self) -> np.ndarray:
        """Transmit energy per round at the whole band (J, divide by beta); made when first read."""
        return self.p_tx * self.bits * self.s_up

    def round_time(self, beta: np.ndarray | float, phi: np.ndarray | float = 1.0) -> np.ndarray:
        """T[k, c] for bandwidth shares ``beta`` (N,) and server shares ``phi`` (N,)."""
        beta = np.asarray(beta, dtype=float).reshape(-1, 1)
        phi = np.asarray(phi, dtype=float).reshape(-1, 1)
        return self.a_dev + self.a_srv / phi + self.d / beta


def round_terms(devices: Sequence[Device], server: Server, channel: Channel, training: Training,
                table: CutTable, *, batch: np.ndarray | int | None = None,
                aggregate: bool | None = None) -> RoundTerms:
    """Coefficients of each device's round time for every candidate cut (docs/cost_model.md).

    ``batch`` is one size for all devices or one per device (default: the training batch size).
    A candidate that holds the whole graph is FL mode and always pays the model's aggregation.
    """
    n = len(devices)
    b = np.asarray(training.batch_size if batch is None else batch, dtype=float)
    # one batch size for all: what depends on the cut only is priced per cut (a row), then
    # spread over the devices (the same floats as the per-device products)
    one = b.ndim == 0
    b = float(b) if one else np.broadcast_to(b, (n,)).reshape(-1, 1)
    it = float(training.local_iters)
    agg = training.aggregate if aggregate is None else aggregate
    full = table.masks.all(axis=1)
    agg_bytes = np.where(full | agg, table.param_bytes, 0.0)
    sec_srv = table.srv_seconds(server)
    which, reps = compute_groups(table.graph, devices)  # compute seconds once per group
    a_dev = _dev_seconds(table, reps)  # (a new array: scaled in place)
    if one:  # scaled per group, then spread; per-device batches: spread, then scaled
        a_dev *= b
        a_dev *= it
        a_dev = a_dev[which]
    else:
        a_dev = a_dev[which]
        a_dev *= b
        a_dev *= it
    a_srv = sec_srv * b
    a_srv *= it
    # activations up / gradients down per sample, the tied gradients each way per iteration
    bits = it * BITS * (b * table.boundary_bytes + table.tied_bytes) + BITS * agg_bytes
    if one:  # (rows the same for every device: (N, C) views)
        a_srv = np.tile(a_srv, (n, 1))
        bits = np.broadcast_to(bits, (n, len(bits)))
    # seconds per bit of every device, in arrays
    up = 1.0 / (channel.bandwidth_up_hz * column(devices, "spectral_eff_up")).reshape(-1, 1)
    dn = 1.0 / (channel.bandwidth_dn_hz * column(devices, "spectral_eff_dn")).reshape(-1, 1)
    mem = (2 + training.optimizer_copies) * table.param_bytes + b * table.act_bytes
    mem = mem + column(devices, "workspace_bytes").reshape(-1, 1)
    p_comp = column(devices, "power_compute_w").reshape(-1, 1)
    p_tx = column(devices, "power_tx_w").reshape(-1, 1)
    return RoundTerms(a_dev=a_dev, a_srv=a_srv, mem=mem, e_comp=p_comp * a_dev, bits=bits,
                      s_up=up, s_dn=dn, p_tx=p_tx)


def _dev_seconds(table: CutTable, devices: Sequence[Device]) -> np.ndarray:
    """``table.dev_seconds`` of every device, (N, C), the same floats.

    Without its per-call work (a Python pass per device: 9 ms of a 1000-device Problem) where no
    node has measured times: ``train_seconds`` is then ``train_flops / flops``, elementwise as here.
    """
    if len(table.graph.timed_indices):
        return np.stack([table.dev_seconds(d) for d in devices])
    masks = table.masks.astype(float)
    secs = table.graph.train_flops / column(devices, "flops")[:, None]
    return np.stack([masks @ row for row in secs])  # one product per device, as dev_seconds


def column(devices: Sequence[Device], field: str) -> np.ndarray:
    """One numeric Device field of every device, as a float array."""
    return np.fromiter(map(attrgetter(field), devices), dtype=float, count=len(devices))


#: fleets above this many devices are grouped by FLOP/s with ``np.unique`` (a sort); smaller ones
#: with a dict (first seen, first group: a few microseconds against about 10 for the sort)
_GROUP_IN_ARRAYS_FROM = 2048


def compute_groups(graph: LayerGraph, devices: Sequence[Device]) -> tuple[np.ndarray,
                                                                          list[Device]]:
    """Each device's compute group, and one device per group.

    Devices of a group have equal compute seconds on every node of ``graph``
    (``graph.train_seconds``).

    The seconds depend on the FLOP/s, and on the class only where the graph has measured times:
    without any, devices are grouped by FLOP/s alone (in arrays on large fleets); with some, by
    (class, FLOP/s).
    """
    flops = [d.flops for d in devices]
    if not len(graph.timed_indices) and len(flops) > _GROUP_IN_ARRAYS_FROM:
        _, first, which = np.unique(np.array(flops, dtype=float), return_index=True,
                                    return_inverse=True)
        return which.reshape(-1), [devices[i] for i in first.tolist()]
    rows: dict[Any, int] = {}
    keys = flops if not len(graph.timed_indices) else zip([d.cls for d in devices], flops)
    group = [rows.setdefault(k, len(rows)) for k in keys]
    reps = dict(zip(group, devices))
    return np.array(group, dtype=np.int64), [reps[r] for r in range(len(rows))]


@dataclass(frozen=True)
class Phases:
    """One device's predicted costs in one round, by phase (seconds, bytes, joules)."""

    device_compute_s: float
    server_compute_s: float
    uplink_s: float
    downlink_s: float
    aggregation_s: float
    iteration_s: float
    round_s: float
    memory_bytes: float
    energy_j: float
    comm_bytes: float

    def to_dict(self) -> dict[str, float]:
        """Plain dictionary of the fields."""
        return dict(self.__dict__)


def device_phases(graph: LayerGraph, device_side: frozenset[str] | set[str], device: Device,
                  server: Server, link: Link, training: Training, *, batch: int | None = None,
                  server_share: float = 1.0, aggregate: bool | None = None) -> Phases:
    """Price one device's round with its device-side set and its rates (scalar reference path)."""
    if not 0 < server_share <= 1:
        raise InputError("server_share", server_share, "a number in (0, 1]")
    table = CutTable.from_sets(graph, [device_side])
    b = float(training.batch_size if batch is None else batch)
    it = float(training.local_iters)
    full = bool(table.masks[0].all())
    agg = full or (training.aggregate if aggregate is None else aggregate)
    w = float(table.param_bytes[0]) if agg else 0.0
    bnd = float(table.boundary_bytes[0])
    per_iter = b * bnd + float(table.tied_bytes[0])  # bytes each way per iteration
    t_dev = b * float(table.dev_seconds(device)[0])
    t_srv = b * float(table.srv_seconds(server)[0]) / server_share
    t_up, t_dn = BITS * per_iter / link.up_bps, BITS * per_iter / link.dn_bps
    t_agg = BITS * w * link.seconds_per_bit
    t_iter = t_dev + t_srv + t_up + t_dn
    mem = ((2 + training.optimizer_copies) * float(table.param_bytes[0])
           + b * float(table.act_bytes[0]) + device.workspace_bytes)
    up_s = it * t_up + BITS * w / link.up_bps
    energy = device.power_compute_w * it * t_dev + device.power_tx_w * up_s
    return Phases(device_compute_s=it * t_dev, server_compute_s=it * t_srv, uplink_s=it * t_up,
                  downlink_s=it * t_dn, aggregation_s=t_agg, iteration_s=t_iter,
                  round_s=it * t_iter + t_agg, memory_bytes=mem, energy_j=energy,
                  comm_bytes=it * 2 * per_iter + 2 * w)


def iteration_delay(graph: LayerGraph, device_side: frozenset[str] | set[str], device: Device,
                    server: Server, link: Link, batch: int = 1) -> float:
    """T_iter(S) of one iteration: device compute + boundary traffic both ways + server compute."""
    ph = device_phases(graph, device_side, device, server, link,
                       Training(batch_size=batch, local_iters=1, aggregate=False), batch=batch)
    return ph.iteration_s


def combine_rounds(round_s: Sequence[float], modes: Sequence[str], schedule: str) -> float:
    """Round latency: FL-mode devices in parallel; split devices in parallel (max) or in turn (sum).

    HSFL's round = max(slowest FL device, sum over SL devices) is the ``sequential`` case.
    """
    fl = [t for t, m in zip(round_s, modes) if m == "fl"]
    sl = [t for t, m in zip(round_s, modes) if m != "fl"]
    split = (sum(sl) if schedule == "sequential" else max(sl)) if sl else 0.0
    return max([split, *fl])


# ---------------------------------------------------------------- how the server serves devices
def takes_turns(schedule: str, serving: str) -> bool:
    """Whether split devices take turns through the server (sequential schedule or server)."""
    return schedule == "sequential" or serving == "sequential"


def server_shares(serving: str, schedule: str, shares: Sequence[float | None],
                  modes: Sequence[str]) -> list[float]:
    """The server share phi_k each device is priced with (docs/cost_model.md, "Shared resources").

    A share of ``None`` was not planned: under a ``shared`` server with split devices in
    parallel, the split devices without a share divide equally what the planned shares leave;
    devices taking turns, a ``dedicated`` server and FL-mode devices get the whole server (an
    FL-mode device does not use it). Raises :class:`InputError` when the planned shares of a
    shared server sum above 1 or leave nothing for the unplanned ones.
    """
    n_free = sum(1 for s, m in zip(shares, modes) if s is None and m != "fl")
    planned = sum(s for s, m in zip(shares, modes) if s is not None and m != "fl")
    shared = serving == "shared" and not takes_turns(schedule, serving)
    partial = any(s is not None and s < 1 for s, m in zip(shares, modes) if m != "fl")
    if not shared and not partial:
        return [1.0 if s is None else float(s) for s in shares]
    if planned > 1 + 1e-6 or (shared and n_free and planned >= 1 - 1e-12):
        raise InputError("plan server_shares", round(planned, 9),
                         "a sum <= 1 over the selected split devices"
                         + (" (server.serving: shared)" if shared else "")
                         + (", with some left for the devices without a share" if n_free else ""),
                         "Give each split device its server_share, or set server.serving: "
                         "dedicated in the scenario if every device has the server to itself.")
    if not shared:  # planned fractions of the server: they must fit together, as above
        return [1.0 if s is None else float(s) for s in shares]
    rest = (1.0 - planned) / n_free if n_free else 0.0
    return [(rest if s is None else float(s)) if m != "fl" else (1.0 if s is None else float(s))
            for s, m in zip(shares, modes)]


def check_bandwidth(schedule: str, serving: str, shares: Sequence[float],
                    modes: Sequence[str]) -> None:
    """Bandwidth shares fit the band: split devices taking turns reuse one share (time-sharing).

    While one of them transmits the others wait, so their band counts once (the largest);
    FL-mode devices and split devices in parallel each hold their own.
    """
    turns = takes_turns(schedule, serving)
    own = sum(b for b, m in zip(shares, modes) if m == "fl" or not turns)
    turn = max([b for b, m in zip(shares, modes) if m != "fl" and turns], default=0.0)
    if own + turn > 1 + 1e-6:
        raise InputError("plan bandwidth_shares", round(own + turn, 9),
                         "a sum <= 1 over the selected devices (split devices taking turns "
                         "count once, at their largest share)")


def round_latency(round_s: Sequence[float], modes: Sequence[str], schedule: str,
                  serving: str) -> float:
    """Round latency under the scenario's schedule and serving (split devices in turn: a sum)."""
    return combine_rounds(round_s, modes,
                          "sequential" if takes_turns(schedule, serving) else "parallel")
