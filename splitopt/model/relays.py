"""Several cuts per device: a path of relay tiers (device -> edge -> ... -> server).

``Problem(scenario, relays=[Relay(...), ...], server_share=False)`` puts R relay tiers between
every device and the server, each device on its own path (each relay priced at its full speed,
as a dedicated server is). The device's option (its cut) is tier 0's set S_0 as before; binaries
x[k,t,v] = [tau(v) <= t] (t = 1..R) place the rest, so every device has R + 1 nested cuts
S_0 <= S_1 <= ... <= S_R, and the server takes what no tier holds. With on(k,v) the device-side
indicator (linear in the one-hot options), b the batch, I the local iterations, sec_t(v) the
forward + backward seconds per sample of v on relay t, srv(v) on the server, out(u) the bytes u
sends and (up_t, dn_t) the link from relay t to the next tier:

    on(k,v) <= x[k,1,v] <= ... <= x[k,R,v] <= selected(k)                       (nested cuts)
    x[k,t,w] <= x[k,t,u]  for every edge (u, w)                (each S_t predecessor-closed)
    y[k,t,u] >= x[k,t,u] - x[k,t,w]  for every edge (u, w)           (u's output crosses link t)
    T_k = (the device, its link and the server as before)
          + b I [ sum_t sum_v sec_t(v) (x[k,t,v] - x[k,t-1,v]) - sum_v srv(v) (x[k,R,v] - on(k,v))
                  + sum_t sum_u 8 out(u) (1/up_t + 1/dn_t) y[k,t,u] ]
    M_{k,t} = sum_v ((2+o) W(v) + b act(v)) (x[k,t,v] - x[k,t-1,v]) <= memory of relay t

(x[k,0,v] = on(k,v)). The link from the device to relay 1 is the device's own channel (the
builder's ``d / beta_k``); a tensor crossing several links pays each. Every term is linear, so the
exact paths solve it as a MILP. The plan records the relays' nodes in ``plan.meta["relays"]``
({device: {relay: [node names]}}); the guard re-prices them from that record (:meth:`fill`).
This is the multi-tier split of formulations/multitier.py (JMSNAS, arXiv:2111.08206, as
reconstructed from its abstract) in the builder's terms. The executors run two tiers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.errors import InputError
from splitopt.model.expr import Expr, total

if TYPE_CHECKING:
    from splitopt.model.problem import Problem

BITS = 8.0


@dataclass(frozen=True)
class Relay:
    """One tier between the devices and the server, and its link to the next tier (bit/s)."""

    name: str
    flops: float
    up_bps: float
    dn_bps: float
    memory_bytes: float = math.inf
    device_class: str | None = None

    def __post_init__(self) -> None:
        for field, v in (("flops", self.flops), ("up_bps", self.up_bps),
                         ("dn_bps", self.dn_bps)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise InputError(f"relay {self.name!r}.{field}", v, "a finite number > 0")
        if not (isinstance(self.memory_bytes, (int, float)) and self.memory_bytes > 0):
            raise InputError(f"relay {self.name!r}.memory_bytes", self.memory_bytes,
                             "a number > 0 (math.inf: unlimited)")


class Relays:
    """The relay placement columns of a Problem (see the module docstring)."""

    def __init__(self, p: Problem, relays: Any):
        if isinstance(relays, (str, bytes)) or not all(isinstance(r, Relay) for r in relays) \
                or not relays:
            raise InputError("relays", relays, "a non-empty list of splitopt.model.Relay")
        if p.server_share is not None:
            raise InputError("relays", "server_share=True", "server_share=False",
                             "Relays move work off the server at its full speed; "
                             "pass server_share=False.")
        if len(p.batches) != 1:
            raise InputError("relays", p.batches, "one batch size")
        if p.scenario.training.schedule != "parallel":
            raise InputError("relays", p.scenario.training.schedule, "a parallel schedule")
        names = [r.name for r in relays]
        if len(set(names)) != len(names):
            raise InputError("relays", names, "distinct relay names")
        sc, g = p.scenario, p.scenario.graph
        self.p, self.relays, self.R, self.V = p, tuple(relays), len(relays), len(g)
        per = float(p.batches[0]) * float(sc.training.local_iters)
        self.sec = np.stack([g.train_seconds(r.device_class, r.flops) for r in relays]) * per
        self.srv = g.train_seconds(sc.server.device_class, sc.server.flops) * per
        self.link = np.array([BITS * (1 / r.up_bps + 1 / r.dn_bps) for r in relays]) * per
        copies = 2 + sc.training.optimizer_copies
        self.mem = copies * g.param_bytes + float(p.batches[0]) * g.act_bytes
        self.edges = np.array([(g.index[u], g.index[w]) for u, w in g.edges],
                              dtype=np.int64).reshape(-1, 2)
        n, block = p.n_devices, self.R * self.V
        self.x = p.add_variable("relay_place", n * block, ub=1.0, integer=True)
        self.y = p.add_variable("relay_cross", n * block, ub=1.0)
        for k in range(n):
            self._rows(k)

    # ------------------------------------------------------------------ columns and rows
    def _col(self, var: Any, k: int, t: int, v: Any) -> Any:
        """Column of (device k, relay t = 1..R, node v)."""
        return var.offset + (k * self.R + (t - 1)) * self.V + v

    def _at(self, k: int, t: int, v: int) -> Expr:
        """x[k,t,v]: node v on tiers <= t (t = 0: the device side, from the options)."""
        if t == 0:
            return self.p.on_device(k, v)
        return Expr(np.array([self._col(self.x, k, t, v)], dtype=np.int64), np.ones(1))

    def _block(self, var: Any, k: int, t: int, coef: np.ndarray) -> Expr:
        cols = self._col(var, k, t, np.arange(self.V, dtype=np.int64))
        return Expr(cols.astype(np.int64), np.asarray(coef, dtype=float))

    def _rows(self, k: int) -> None:
        p, rows = self.p, []
        sel = p.selected[k]
        for t in range(1, self.R + 1):
            for v in range(self.V):
                rows.append(self._at(k, t - 1, v) <= self._at(k, t, v))
                if t == self.R:
                    rows.append(self._at(k, t, v) <= sel)
            for u, w in self.edges:
                rows.append(self._at(k, t, int(w)) <= self._at(k, t, int(u)))
                cross = Expr(np.array([self._col(self.y, k, t, int(u))], dtype=np.int64),
                             np.ones(1))
                rows.append(cross >= self._at(k, t, int(u)) - self._at(k, t, int(w)))
        p.add(rows, name=f"relays:{p.device_name(k)}")
        for t, r in enumerate(self.relays, start=1):
            if math.isfinite(r.memory_bytes):
                # in units of the capacity: byte-sized rows at HiGHS's 1e-9 tolerance once
                # made its presolve call a feasible instance infeasible (model/recompute.py)
                p.add(self.memory(k, t) / r.memory_bytes <= 1.0,
                      name=f"memory:{p.device_name(k)}@{r.name}")

    # ------------------------------------------------------------------ terms
    def _on(self, k: int, coef: np.ndarray) -> Expr:
        """sum_v coef[v] on(k, v) (over the options)."""
        o = self.p.options
        lin = np.append(self.p.table.masks.astype(float) @ coef, 0.0)[o.cut]
        return self.p.option_expr(k, lin)

    def _tier(self, k: int, t: int, coef: np.ndarray) -> Expr:
        """sum_v coef[v] (x[k,t,v] - x[k,t-1,v]): what tier t holds, weighted."""
        below = self._on(k, coef) if t == 1 else self._block(self.x, k, t - 1, coef)
        return self._block(self.x, k, t, coef) - below

    def compute_s(self, k: int | str) -> Expr:
        """Seconds per round device k's relays compute."""
        i = self.p.device_index(k)
        return total(self._tier(i, t, self.sec[t - 1]) for t in range(1, self.R + 1))

    def links_s(self, k: int | str) -> Expr:
        """Seconds per round on the links from relay 1 onwards (each crossing paid per link)."""
        i = self.p.device_index(k)
        out = self.p.scenario.graph.out_bytes
        return total(self._block(self.y, i, t, self.link[t - 1] * out)
                     for t in range(1, self.R + 1))

    def server_saved_s(self, k: int | str) -> Expr:
        """Server seconds per round that device k's relays take over (>= 0)."""
        i = self.p.device_index(k)
        return self._block(self.x, i, self.R, self.srv) - self._on(i, self.srv)

    def seconds(self, k: int | str) -> Expr:
        """What the relays add to device k's round time (may be negative: server work moved)."""
        return self.compute_s(k) + self.links_s(k) - self.server_saved_s(k)

    def memory(self, k: int | str, t: int) -> Expr:
        """Bytes relay t (1..R) holds for device k."""
        if not (isinstance(t, int) and 1 <= t <= self.R):
            raise InputError("relay", t, f"a relay number in [1, {self.R}]")
        return self._tier(self.p.device_index(k), t, self.mem)

    # ------------------------------------------------------------------ plans
    def annotate(self, plan: Any, values: Any) -> Any:
        """The plan with each relay's nodes in ``meta["relays"]`` (from the solver's x)."""
        if not values or "relay_place" not in values:
            return plan
        x = np.asarray(values["relay_place"], dtype=float).reshape(-1, self.R, self.V) > 0.5
        g = self.p.scenario.graph
        by_name = {d.device: d for d in plan.devices}
        out: dict[str, dict[str, list[str]]] = {}
        for k in range(self.p.n_devices):
            d = by_name.get(self.p.device_name(k))
            if d is None or not d.selected:
                continue
            held = g.mask(d.device_side)
            per: dict[str, list[str]] = {}
            for t, r in enumerate(self.relays):
                per[r.name] = [g.names[v] for v in np.flatnonzero(x[k, t] & ~held)]
                held = held | x[k, t]
            out[d.device] = per
        return replace(plan, meta={**plan.meta, "relays": out, "relays_s": self._seconds(plan, x)})

    def _seconds(self, plan: Any, x: np.ndarray) -> dict[str, float]:
        """{device: seconds per round the relays add} (beside ``plan.predicted``'s two tiers)."""
        g = self.p.scenario.graph
        by_name = {d.device: d for d in plan.devices}
        out: dict[str, float] = {}
        for k in range(self.p.n_devices):
            d = by_name.get(self.p.device_name(k))
            if d is None or not d.selected:
                continue
            side = held = g.mask(d.device_side)
            added = 0.0
            for t in range(self.R):
                now = held | x[k, t]
                crossing = np.zeros(self.V, dtype=bool)
                if len(self.edges):
                    u, w = self.edges[:, 0], self.edges[:, 1]
                    np.logical_or.at(crossing, u, now[u] & ~now[w])
                added += float(self.sec[t] @ (now & ~held)) + self.link[t] * float(
                    g.out_bytes @ crossing)
                held = now
            out[d.device] = added - float(self.srv @ (held & ~side))
        return out

    def fill(self, plan: Any, x: np.ndarray) -> list[tuple[str, bool, str]]:
        """Put the plan's recorded relay placement into ``x``, crossings priced afresh."""
        rec = dict(plan.meta.get("relays", {}))
        g = self.p.scenario.graph
        by_name = {d.device: d for d in plan.devices}
        bad: list[str] = []
        for var in (self.x, self.y):
            x[var.offset:var.offset + var.size] = 0.0
        for k in range(self.p.n_devices):
            d = by_name.get(self.p.device_name(k))
            if d is None or not d.selected:
                continue
            held = g.mask(d.device_side) if d.device_side else np.zeros(self.V, dtype=bool)
            per = rec.get(d.device, {})
            unknown = set(per) - {r.name for r in self.relays}
            if unknown or not all(isinstance(v, (list, tuple)) for v in per.values()):
                bad.append(f"{d.device}: relays {sorted(map(str, unknown))[:3]} unknown")
                continue
            for t, r in enumerate(self.relays, start=1):
                given = per.get(r.name, ())
                nodes = [v for v in given if v in g.index]
                if len(nodes) != len(given) or held[[g.index[v] for v in nodes]].any():
                    bad.append(f"{d.device}@{r.name}: nodes unknown or held below")
                held = held | g.mask(nodes) if nodes else held
                x[self._col(self.x, k, t, np.arange(self.V))] = held
                if len(self.edges):
                    u, w = self.edges[:, 0], self.edges[:, 1]
                    crossing = np.zeros(self.V)
                    np.maximum.at(crossing, u, (held[u] & ~held[w]).astype(float))
                    x[self._col(self.y, k, t, np.arange(self.V))] = crossing
        return [("relay placement recorded for known relays", not bad, "; ".join(bad[:3]))]
