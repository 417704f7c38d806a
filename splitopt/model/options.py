"""The per-device option table: every (cut, batch size) pair, plus "not selected", priced once.

A device's categorical choice is one option o; with one-hot binaries z[k, o] every cost of the
reference model is linear in z except the ``1/beta`` and ``1/phi`` parts, whose coefficients are
per option too. All arrays are (N devices, O options) and come from
:func:`splitopt.costs.round_terms`,
so the builder prices exactly like :func:`splitopt.plan.evaluate`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from splitopt import limits
from splitopt.costs import BITS, CutTable, round_terms
from splitopt.errors import InputError
from splitopt.model.dvfs import at_levels
from splitopt.scenario import Scenario

PHASES = ("device_compute", "server_compute", "uplink", "downlink", "aggregation")


@dataclass(frozen=True)
class OptionTable:
    """Costs of every option for every device.

    Attributes
    ----------
    cut, batch
        (O,) the cut index into ``table`` (-1: device not selected) and the batch size.
    level
        (O,) the DVFS level (fraction of the rated compute clock; 1 without ``dvfs=``).
    a_dev, a_srv, up, dn, agg
        (N, O) seconds per round: device compute, server compute at the full server (divide by
        phi), activations up / gradients down and model aggregation at the full band (divide by
        beta).
    mem, comm, e_comp, e_tx
        (N, O) memory bytes, bytes sent and received per round, compute energy (J) and transmit
        energy at the full band (J, divide by beta).

    """

    table: CutTable
    cut: np.ndarray
    batch: np.ndarray
    a_dev: np.ndarray
    a_srv: np.ndarray
    up: np.ndarray
    dn: np.ndarray
    agg: np.ndarray
    mem: np.ndarray
    comm: np.ndarray
    e_comp: np.ndarray
    e_tx: np.ndarray
    level: np.ndarray

    @cached_property
    def d(self) -> np.ndarray:
        """Seconds per round at the full band (the D of T = A + D / beta)."""
        return self.up + self.dn + self.agg

    @property
    def n_options(self) -> int:
        """Options per device."""
        return len(self.cut)

    @cached_property
    def is_fl(self) -> np.ndarray:
        """(O,) True for options whose device side is the whole graph (FL mode)."""
        full = np.append(np.asarray(self.table.masks).all(axis=1), False)  # index -1: "off"
        return full[self.cut]

    @property
    def is_off(self) -> np.ndarray:
        """(O,) True for the "not selected" option."""
        return self.cut < 0


def build_options(scenario: Scenario, table: CutTable, batches: Sequence[int],
                  selectable: bool, levels: Sequence[float] = (1.0,)) -> OptionTable:
    """Price every (cut, batch[, DVFS level]) option (and "off" when ``selectable``) per device."""
    devs, ch, tr = scenario.devices, scenario.channel, scenario.training
    n, c = len(devs), len(table)
    full = table.masks.all(axis=1)
    agg_bytes = np.where(full | tr.aggregate, table.param_bytes, 0.0)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("a_dev", "a_srv", "up", "dn", "agg", "mem", "comm",
                                           "e_comp", "e_tx")}
    it = float(tr.local_iters)
    for b in batches:
        rt = round_terms(devs, scenario.server, ch, tr, table, batch=int(b))
        s_up, s_dn = rt.s_up, rt.s_dn  # (N, 1) seconds per bit at the whole band
        # per iteration: activations up and gradients down (per sample), each side's gradient
        # of the weights tied across the cut (once; costs.round_terms)
        per_iter = b * table.boundary_bytes + table.tied_bytes
        act_bits = it * BITS * per_iter
        parts["a_dev"].append(rt.a_dev)
        parts["a_srv"].append(rt.a_srv)
        parts["up"].append(act_bits * s_up)
        parts["dn"].append(act_bits * s_dn)
        parts["agg"].append(np.broadcast_to(BITS * agg_bytes * (s_up + s_dn), (n, c)))
        parts["mem"].append(rt.mem)
        parts["comm"].append(np.broadcast_to(it * 2 * per_iter + 2 * agg_bytes, (n, c)))
        parts["e_comp"].append(rt.e_comp)
        parts["e_tx"].append(rt.e_tx)
    cut = np.tile(np.arange(c), len(batches))
    batch = np.repeat(np.asarray(batches, dtype=np.int64), c)
    # one batch size: round_terms' own arrays, not copies (broadcast ones are made contiguous,
    # except the bytes sent, the same row for every device: a read-only view, 8 bytes per
    # device x option less to write; pricing.pick reads views)
    arrays = {k: (v[0] if k == "comm" and len(v) == 1 and not selectable
                  and tuple(levels) == (1.0,) else
                  np.ascontiguousarray(v[0] if len(v) == 1 else np.hstack(v), dtype=float))
              for k, v in parts.items()}
    level = np.ones(len(cut))
    if tuple(levels) != (1.0,):  # model/dvfs.py: compute seconds / l, compute energy x l^2
        arrays, cut, batch, level = at_levels(arrays, cut, batch, levels)
    if selectable:
        cut = np.append(cut, -1)
        batch = np.append(batch, int(batches[0]))
        level = np.append(level, 1.0)
        arrays = {k: np.hstack([v, np.zeros((n, 1))]) for k, v in arrays.items()}
    return OptionTable(table, cut, batch, **arrays, level=level)


def cut_table(scenario: Scenario, cuts: Any, modes: bool) -> CutTable:
    """The candidate device-side sets of a Problem (``cuts=``; the whole graph too with modes)."""
    g = scenario.graph
    if cuts is None:
        return CutTable.chain(g, labels_on_device=modes)
    if isinstance(cuts, CutTable):
        table = cuts
    elif isinstance(cuts, (str, bytes, Mapping)) or not isinstance(cuts, Iterable) or any(
            isinstance(c, (str, bytes)) or not isinstance(c, Iterable) for c in cuts):
        raise InputError("cuts", cuts, "a CutTable or a list of device-side sets of node names",
                         "e.g. cuts=[{'x'}, {'x', 'a0'}]")
    else:
        sets = [g.check_split(s, labels_on_device=True) for s in cuts]
        if not sets:
            raise InputError("cuts", [], "at least one device-side set")
        table = CutTable.from_sets(g, sets)
    if modes and not table.masks.all(axis=1).any():
        table = CutTable(g, np.vstack([table.masks, np.ones((1, len(g)), dtype=bool)]))
    return table


def batch_sizes(scenario: Scenario, batch: Any) -> list[int]:
    """The allowed batch sizes of a Problem (``batch=``: one, a range or a list), sorted."""
    if batch is None:
        return [scenario.training.batch_size]
    if isinstance(batch, (str, bytes)) or not isinstance(batch, (numbers.Real, Iterable)):
        raise InputError("batch", batch, "an integer >= 1, or a non-empty range/list of them")
    vals = [batch] if isinstance(batch, numbers.Real) else list(batch)
    if not vals:
        raise InputError("batch", batch, "an integer >= 1, or a non-empty range/list of them")
    return sorted({limits.check("batch", b, limits.BATCH) for b in vals})
