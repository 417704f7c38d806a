"""An independent vectorised re-pricer for the verified-answer guard on large fleets.

The guard must not trust the arrays the solver used (the option table of
:mod:`splitopt.model.options`, built by ``costs.round_terms``). For small fleets it re-prices a
plan with the scalar :func:`splitopt.plan.evaluate` (``costs.device_phases`` device by device);
above :data:`SCALAR_UP_TO` devices that costs milliseconds per device, so :func:`reprice` computes
the same formulas (docs/cost_model.md, ``costs.device_phases`` line by line) from the **plan**
alone: each distinct device-side set of the plan is validated (``graph.check_split``) and gets its
own CutTable row, compute seconds from each device's FLOP/s (``graph.train_seconds`` per
distinct (class, FLOP/s) where nodes carry measured times),
link rates from each device's spectral efficiencies and its share. Nothing is read from the
Problem's option table, so an error in building that table (wrong cut, batch, rate or power)
shows up as a mismatch. tests/test_planner.py::test_vectorised_pricer_equals_evaluate checks it
against ``evaluate()`` on random plans; tests/test_solving_reprice.py that the guard catches a
wrong table.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from splitopt.costs import BITS, CutTable, column, compute_groups, takes_turns
from splitopt.errors import InputError

#: at most this many devices: the guard re-prices with the scalar ``evaluate()`` (every problem of
#: the property suite and of the small tests); above, with :func:`reprice`. ``evaluate`` costs
#: about 50 us per device (5 ms at 100 devices, 3x the whole bare-numpy solve there), ``reprice``
#: about 1-5 us
SCALAR_UP_TO = 32

FIELDS = ("round_s", "memory_bytes", "energy_j", "comm_bytes")


class Repriced:
    """Per-device re-priced costs (arrays in the plan's selected-device order) and the latency."""

    def __init__(self, names: list[str], values: dict[str, np.ndarray], latency: float):
        self.names, self.values, self.round_latency_s = names, values, latency

    @cached_property
    def row(self) -> dict[str, int]:
        """Each device's index in the arrays."""
        return {n: i for i, n in enumerate(self.names)}


def plan_columns(plan: Any) -> tuple[list[str], list[Any], np.ndarray, np.ndarray,
                                      np.ndarray | None]:
    """The selected devices of ``plan`` as columns: (names, decisions, which, beta, phi).

    Device i (of the selected ones) made ``decisions[which[i]]`` (a DevicePlan whose side,
    batch and mode it shares) at shares ``beta[i]``, ``phi[i]`` (NaN: no server share planned;
    ``phi`` None when no device has one). Read from the plan's own columns when it has them
    (:class:`~splitopt.plan.DeviceRows`), else from its DevicePlans.
    """
    from splitopt.plan import DeviceRows

    devs = plan.devices
    if isinstance(devs, DeviceRows):
        chosen = np.array([d.selected for d in devs.decisions], dtype=bool)[devs.which]
        keep = None if chosen.all() else np.flatnonzero(chosen)
        names = devs.names if keep is None else [devs.names[k] for k in keep.tolist()]
        which, beta = (devs.which, devs.beta) if keep is None else (devs.which[keep],
                                                                    devs.beta[keep])
        phi = None if devs.phi is None else devs.phi if keep is None else devs.phi[keep]
        return names, list(devs.decisions), which, beta, phi
    sel = [d for d in devs if d.selected]
    first: dict[tuple, int] = {}
    which = np.array([first.setdefault((d.device_side, d.batch_size, d.mode), i)
                      for i, d in enumerate(sel)], dtype=np.int64)
    order, which = np.unique(which, return_inverse=True)
    phis = [d.server_share for d in sel]
    return ([d.device for d in sel], [sel[i] for i in order.tolist()], which.astype(np.int64),
            np.array([d.bandwidth_share for d in sel], dtype=float),
            None if all(f is None for f in phis) else
            np.array([np.nan if f is None else f for f in phis], dtype=float))


def reprice(scenario: Any, plan: Any, fields: tuple[str, ...] = FIELDS) -> Repriced:
    """Price ``plan`` under ``scenario`` in arrays (see the module docstring).

    ``fields``: the per-device figures wanted (the latency is always priced); each Device field
    read costs a pass over the fleet (0.3 ms at 1e4 devices), so a check that needs only the
    round time and memory skips the energy's.

    Raises ``ValueError`` for what ``evaluate()`` would refuse and this does not model (a shared
    server with unplanned server shares): the caller then uses ``evaluate()``.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InputError("fields", unknown, f"names among {', '.join(FIELDS)}")
    g, tr, ch, srv = scenario.graph, scenario.training, scenario.channel, scenario.server
    serving = getattr(srv, "serving", "dedicated")
    names, decisions, which, beta, f_ = plan_columns(plan)
    if serving == "shared" and (f_ is None or np.isnan(f_).any()):
        raise ValueError("unplanned server shares")
    labels = tr.labels == "device"
    whole = frozenset(g.names)
    side_of: dict[Any, int] = {}  # each distinct side once (a fleet's plan has a few)
    fl_of = np.array([d.mode == "fl" for d in decisions], dtype=bool)
    side_key = np.array([side_of.setdefault(whole if f else d.device_side, len(side_of))
                         for f, d in zip(fl_of.tolist(), decisions)], dtype=np.int64)
    if not len(names):
        return Repriced([], {f: np.zeros(0) for f in FIELDS}, 0.0)
    sides = [s if s is whole else g.check_split(s, labels_on_device=labels) for s in side_of]
    table = CutTable(g, np.stack([g.mask(s) for s in sides]))  # (each validated just above)
    fl = fl_of[which]
    every = scenario.devices
    devs = every if names == scenario.device_names() else [scenario.device(n) for n in names]
    # what depends on the decision only (side, batch, mode), once per decision
    key = side_key
    b = np.array([tr.batch_size if d.batch_size is None else d.batch_size for d in decisions],
                 dtype=float)
    masks = table.masks.astype(float)
    if len(g.timed_indices):  # measured times replace FLOPs / speed node by node: per group
        pk, prof = compute_groups(g, devs)  # equal compute seconds within a group
        per_sample = np.column_stack([masks @ g.train_seconds(dv.cls, dv.flops)
                                      for dv in prof])  # sides x groups
        t_dev_d = b[:, None] * per_sample[key]  # decisions x groups: b * seconds per sample
        t_dev = t_dev_d[which, pk]
    else:  # each device's own FLOP/s: b * (FLOPs of the side) / flops
        t_dev = (b * (masks @ g.train_flops)[key])[which]
        t_dev /= column(devs, "flops")
    t_srv_d = b * ((~table.masks).astype(float) @ g.train_seconds(srv.device_class, srv.flops))[key]
    it = float(tr.local_iters)
    full = table.masks.all(axis=1)[key]
    w_d = np.where(full | bool(tr.aggregate), table.param_bytes[key], 0.0)
    per_iter_d = b * table.boundary_bytes[key] + table.tied_bytes[key]  # bytes each way
    mem_d = (2 + tr.optimizer_copies) * table.param_bytes[key] + b * table.act_bytes[key]
    comm = (it * 2 * per_iter_d + 2 * w_d)[which]
    # per device: its decision's figures at its own rates and shares (each device field read
    # where it is used, in place where possible: a fleet's arrays are large)
    bits = per_iter_d[which]
    bits *= BITS  # bits each way per iteration
    inv_up = beta * ch.bandwidth_up_hz
    inv_up *= column(devs, "spectral_eff_up")
    np.reciprocal(inv_up, out=inv_up)  # seconds per bit up at the device's share
    inv_dn = beta * ch.bandwidth_dn_hz
    inv_dn *= column(devs, "spectral_eff_dn")
    np.reciprocal(inv_dn, out=inv_dn)
    t_up = bits * inv_up
    round_s = t_dev + t_up
    round_s += bits * inv_dn
    t_srv = t_srv_d[which]
    if f_ is not None:
        t_srv /= np.where(np.isnan(f_), 1.0, f_)
    round_s += t_srv
    round_s *= it
    energy = t_up * it  # the uplink's seconds: iterations, then the aggregation
    if w_d.any():
        w = BITS * w_d[which]
        round_s += w * (inv_up + inv_dn)
        energy += w * inv_up
    values = {"round_s": round_s, "comm_bytes": comm}
    if "energy_j" in fields:
        energy *= column(devs, "power_tx_w")
        energy += it * t_dev * column(devs, "power_compute_w")
        values["energy_j"] = energy
    if "memory_bytes" in fields:
        mem = mem_d[which]
        mem += column(devs, "workspace_bytes")
        values["memory_bytes"] = mem
    # costs.round_latency: FL devices in parallel; split devices in parallel (max) or in turn
    any_fl = bool(fl.any())
    split = round_s[~fl] if any_fl else round_s
    turns = takes_turns(tr.schedule, serving)
    latency = max(float(split.sum() if turns else split.max()) if split.size else 0.0,
                  float(round_s[fl].max()) if any_fl else 0.0)
    return Repriced(names, values, float(latency))
