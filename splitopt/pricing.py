"""Vectorised plan pricing from an option table (the arrays a solver already holds).

For device k on option o with bandwidth share beta_k and server share phi_k (docs/cost_model.md, the
option table of :mod:`splitopt.model.options`):

    device_compute = a_dev[k,o]             server_compute = a_srv[k,o] / phi_k
    uplink = up[k,o] / beta_k               downlink = dn[k,o] / beta_k
    aggregation = agg[k,o] / beta_k         round = a_dev + a_srv / phi + (up + dn + agg) / beta
    iteration = (a_dev + a_srv / phi + (up + dn) / beta) / I
    memory = mem[k,o]   energy = e_comp[k,o] + e_tx[k,o] / beta_k   comm = comm[k,o]

which is :func:`splitopt.costs.device_phases` term by term, for all devices in a few array
operations. The scalar :func:`splitopt.plan.evaluate` stays the independent reference: the tests
check that both agree on random plans (tests/test_planner.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from splitopt.costs import Phases
from splitopt.plan import DevicePlan, DeviceRows, PlanCosts

OPTION_ARRAYS = ("a_dev", "a_srv", "up", "dn", "agg", "mem", "comm", "e_comp", "e_tx")
FIELDS = ("device_compute_s", "server_compute_s", "uplink_s", "downlink_s", "aggregation_s",
          "iteration_s", "round_s", "memory_bytes", "energy_j", "comm_bytes")


class PhaseTable(Mapping):
    """Per-device :class:`~splitopt.costs.Phases` held as one (N, 10) array.

    A read-only mapping by device name that builds a Phases object only when one is looked up;
    ``values`` may be a callable that makes the array on first use (a plan's phases are often
    never read).
    """

    def __init__(self, names: Sequence[str], values: np.ndarray | Callable[[], np.ndarray]):
        self.names = names if isinstance(names, list) else list(names)
        self._values = values
        self._row: dict[str, int] | None = None

    @property
    def array(self) -> np.ndarray:
        """The (N, 10) phases in FIELDS order."""
        if callable(self._values):
            self._values = self._values()
        return self._values

    def __getitem__(self, name: str) -> Phases:
        if self._row is None:
            self._row = dict(zip(self.names, range(len(self.names))))
        return Phases(*map(float, self.array[self._row[name]]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def column(self, field: str) -> np.ndarray:
        """One phase for every device, in device order (e.g. ``column("round_s")``)."""
        return self.array[:, FIELDS.index(field)]


def taken(options, rows: np.ndarray, option: np.ndarray) -> dict[str, np.ndarray]:
    """Each option array (OPTION_ARRAYS) at device ``rows[i]``'s option ``option[i]`` (copies)."""
    flat = flat_index(rows, option, len(options.cut))
    return {k: pick(getattr(options, k), flat) for k in OPTION_ARRAYS}


def flat_index(rows: np.ndarray, option: np.ndarray, n_options: int) -> np.ndarray:
    """Positions of (rows[i], option[i]) in a C-ordered (N, n_options) array, for :func:`pick`."""
    return np.asarray(rows, dtype=np.int64) * n_options + np.asarray(option, dtype=np.int64)


def pick(x: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``x[rows, option]`` by :func:`flat_index` positions.

    A 1-D take: 4-5x faster than a 2-D fancy index on 10^4 rows.
    """
    x = np.asarray(x)
    if not x.flags.c_contiguous:  # (a broadcast view: reshape would copy all of it)
        return x[flat // x.shape[1], flat % x.shape[1]]
    return x.reshape(-1)[flat]


def phases_of(t: Mapping[str, np.ndarray], beta: np.ndarray, phi: np.ndarray,
              local_iters: int) -> np.ndarray:
    """(N, 10) phases (FIELDS order) from the devices' option costs ``t`` (see :func:`taken`)."""
    a_dev, srv = t["a_dev"], t["a_srv"] / phi
    t_up, t_dn, t_agg = t["up"] / beta, t["dn"] / beta, t["agg"] / beta
    iteration = (a_dev + srv + t_up + t_dn) / float(local_iters)
    return np.column_stack([a_dev, srv, t_up, t_dn, t_agg, iteration,
                            a_dev + srv + t_up + t_dn + t_agg, t["mem"],
                            t["e_comp"] + t["e_tx"] / beta, t["comm"]])


def round_latency(round_s: np.ndarray, fl: np.ndarray, in_turn: bool) -> float:
    """FL-mode devices in parallel; split devices in parallel (max) or in turn (sum)."""
    if not len(round_s):
        return 0.0
    split = round_s[~fl]
    part = (split.sum() if in_turn else split.max()) if len(split) else 0.0
    return float(max(part, round_s[fl].max() if fl.any() else 0.0))


def _kept(x: Any, dtype: Any) -> np.ndarray:
    """``x`` as an array the caller cannot change later: itself when read-only, else a copy."""
    x = np.asarray(x, dtype=dtype)
    return x if not x.flags.writeable else np.array(x)


def price_options(scenario, options, names: Sequence[str], option: np.ndarray,
                  beta: np.ndarray, phi: np.ndarray | None, rounds: float, *,
                  fixed_table: bool = False) -> PlanCosts:
    """The plan's predicted costs (a :class:`~splitopt.plan.PlanCosts`) from the option table.

    ``phi`` None: every device has the whole server (phi = 1). Devices on the "not selected"
    option (cut -1) are left out, as :func:`splitopt.plan.evaluate` does. The per-device phases
    are made when first read: from the table then when ``fixed_table`` (nothing changes it, as a
    Problem's), else from copies of the devices' figures taken now (a Planner's rows change).
    """
    option = _kept(option, np.int64)  # (read when the phases are made: copies unless frozen)
    sel = options.cut[option] >= 0
    beta = _kept(beta, float)
    phi = np.ones(len(option)) if phi is None else _kept(phi, float)
    every = bool(sel.all())
    ks = np.arange(len(option)) if every else np.flatnonzero(sel)
    opt, b, f = (option, beta, phi) if every else (option[sel], beta[sel], phi[sel])
    flat = flat_index(ks, opt, len(options.cut))
    t = None if fixed_table else taken(options, ks, opt)
    get = (lambda k: pick(getattr(options, k), flat)) if t is None else t.__getitem__
    round_s = get("a_dev") + get("a_srv") / f + (get("up") + get("dn") + get("agg")) / b
    tr = scenario.training
    in_turn = tr.schedule == "sequential" or getattr(scenario.server, "serving", "") == "sequential"
    latency = round_latency(round_s, options.is_fl[opt], in_turn)
    # a copy: the caller's list may change later (Planner.names on a join or leave)
    kept = list(names) if every else [n for n, s in zip(names, sel, strict=True) if s]
    total = latency * rounds if np.isfinite(rounds) else np.inf
    phases = (partial(phases_of, t, b, f, tr.local_iters) if t is not None else
              lambda: phases_of(taken(options, ks, opt), b, f, tr.local_iters))
    return PlanCosts(PhaseTable(kept, phases), latency, float(rounds), float(total))


class DevicePlans:
    """A plan's devices for many devices at new shares, validated once per option.

    ``DevicePlan.__post_init__`` checks every node name of the device side (about 10-20 us for a
    50-node side). Here one DevicePlan per option is built and validated, and the fleet is held
    as columns (:class:`~splitopt.plan.DeviceRows`: names, each device's option, its shares); a
    device's own DevicePlan is made only when someone reads ``plan.devices``.
    """

    def __init__(self, table, options):
        self.table, self.options = table, options
        self._template: dict[int, DevicePlan] = {}

    def template(self, o: int) -> DevicePlan:
        """The validated DevicePlan of option o (name and shares are placeholders)."""
        t = self._template.get(o)
        if t is None:
            c = int(self.options.cut[o])
            side = self.table.graph.names_of(self.table.masks[max(c, 0)])
            t = self._template[o] = DevicePlan(
                "template", side, 1.0, 1.0, int(self.options.batch[o]),
                "fl" if self.options.is_fl[o] else "split", c >= 0)
        return t

    def build(self, names: Sequence[str], option: np.ndarray, beta: np.ndarray,
              phi: np.ndarray | None) -> DeviceRows:
        """Every device's DevicePlan, as columns.

        ``names`` are a Scenario's device names (validated there). Shares are clipped into
        [1e-12, 1], as the decoder does; ``phi`` None: server share 1.
        """
        beta = np.clip(np.asarray(beta, dtype=float), 1e-12, 1.0)
        phis = np.ones(len(beta)) if phi is None else np.clip(np.asarray(phi, dtype=float),
                                                               1e-12, 1.0)
        if not (np.isfinite(beta).all() and (phi is None or np.isfinite(phis).all())):
            raise ValueError("shares must be finite")
        option = np.asarray(option, dtype=np.int64)
        count = np.bincount(option, minlength=len(self.options.cut))  # (no sort: O(N))
        used = np.flatnonzero(count)
        slot = np.cumsum(count > 0) - 1  # option -> its place among the used ones
        return DeviceRows(names, [self.template(o) for o in used.tolist()], slot[option], beta,
                          phis, names_checked=True)  # (a validated Scenario's names)


class MutableOptions:
    """The problem's option table as mutable (N, O) arrays, one row per device.

    ``cut``, ``batch`` and ``is_fl`` are shared by all devices (model.options.OptionTable).
    """

    def __init__(self, o: Any):
        self.cut, self.batch, self.is_fl = o.cut, o.batch, o.is_fl
        for key in OPTION_ARRAYS:  # the table's own arrays until a row changes (copy on write)
            setattr(self, key, np.asarray(getattr(o, key), dtype=float))
        self._owned = False

    def rows(self, one: Any) -> dict[str, np.ndarray]:
        """The arrays of a one-device option table, as one row each."""
        return {k: np.asarray(getattr(one, k), dtype=float)[0] for k in OPTION_ARRAYS}

    def set(self, k: int, row: dict[str, np.ndarray]) -> None:
        """Device k's rows change (the arrays are copied at the first change)."""
        if not self._owned:
            for key in OPTION_ARRAYS:
                setattr(self, key, np.array(getattr(self, key)))
            self._owned = True
        for key, v in row.items():
            getattr(self, key)[k] = v

    def append(self, row: dict[str, np.ndarray]) -> None:
        """A device's rows are added last."""
        for key, v in row.items():
            setattr(self, key, np.vstack([getattr(self, key), v[None]]))
        self._owned = True

    def delete(self, k: int) -> None:
        """Device k's rows are removed."""
        for key in OPTION_ARRAYS:
            setattr(self, key, np.delete(getattr(self, key), k, 0))
        self._owned = True
