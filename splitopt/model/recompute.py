"""Keep or recompute: a device may drop activations of its layers and recompute them in backward.

``Problem(scenario, recompute=True)`` (chain graphs, one batch size, a parallel round) adds, for
every device k and every recomputable layer v (a chain position that is neither the input nor the
last node), a binary r[k,v] (1: layer v's activation is dropped after the forward pass and
recomputed in the backward pass, as ``torch.utils.checkpoint`` does) and a continuous live[k,v]
(bytes; stored in units of A = b sum_v act(v), so that every row is of order 1). With
``on(k,v) = sum_o z[k,o] [v in cut(o)]`` (linear in the one-hot options), b the batch, I the
local iterations, act(v) the activation bytes per sample and fwd_k(v) the forward
seconds per sample of layer v on device k:

    r[k,v] <= on(k,v)                                       (only device-side layers are dropped)
    T_k   = sum_o z[k,o] T[k,o] + sum_v b I fwd_k(v) r[k,v]            (one extra forward per layer)
    E_k   = ... + P_comp,k sum_v b I fwd_k(v) r[k,v]
    M_k   = max( sum_o z[k,o] M[k,o] - sum_v b act(v) r[k,v],                      (end of forward)
                 max_v  sum_o z[k,o] F[k,o] + live[k,v] )           (while v's run is recomputed)
    live[k,v] >= b sum_{u<v} act(u) (1 - r[k,u]) + b act(v) - A (1 - r[k,v])
    live[k,v] >= live[k,v-1] + b act(v) - 2 A (2 - r[k,v] - r[k,v-1])       (0 <= live <= A)

F[k,o] = M[k,o] - b act(cut(o)) is what memory holds besides activations (weights, gradients,
optimiser state, workspace). A run of dropped layers [i, j] is recomputed from the kept activation
before it while the layers after it have already freed theirs, so the memory then is the kept
activations before i plus the run's; the live rows make live[k,v] at least that at every v of a
run (its largest at the run's end), and a sub-run's value never exceeds its whole run's. This is
SmartSplit's model (arXiv:2410.11577, as reconstructed in formulations/smartsplit.py) stated in
the builder's one-hot options: every term is linear, so ``M_k <= budget`` and ``min T`` are
exact. The max is exact where memory is bounded or minimised (live is only bounded below).

A plan records the dropped layers in ``plan.meta["recompute"]`` ({device: [node names]}); the
guard re-prices them from that record (:meth:`Recompute.fill`). The executors keep every
activation: they do not run recomputation (see docs/builder.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitopt.errors import InputError
from splitopt.model.expr import Expr, maximum

if TYPE_CHECKING:
    from splitopt.model.problem import Problem


class Recompute:
    """The keep/recompute columns of a Problem; ``p.recompute[k, node]`` is the binary r[k,v]."""

    def __init__(self, p: Problem):
        sc, g = p.scenario, p.scenario.graph
        if not g.is_chain:
            raise InputError("recompute", g.name or "graph", "a chain graph",
                             "Contract the DAG into a chain of blocks with graph.contract().")
        if len(p.batches) != 1:
            raise InputError("recompute", p.batches, "one batch size",
                             "Activation bytes scale with the batch; fix batch= to one size.")
        if sc.training.schedule != "parallel":
            raise InputError("recompute", sc.training.schedule, "a parallel schedule",
                             "Recomputation is priced for parallel rounds only.")
        self.p = p
        names = g.names
        self.layers = np.array([v for v, name in enumerate(names)
                                if name not in g.inputs and name != g.output], dtype=np.int64)
        self.position = {names[v]: j for j, v in enumerate(self.layers)}
        b, it = float(p.batches[0]), float(sc.training.local_iters)
        self.act = g.act_bytes * b                                  # (V,) bytes, batch included
        fwd = np.stack([g.fwd_seconds(d.cls, d.flops) for d in sc.devices]) * b * it
        self.fwd = fwd[:, self.layers]                              # (N, m) seconds per round
        self.power = np.array([d.power_compute_w for d in sc.devices], dtype=float)
        n, m = p.n_devices, len(self.layers)
        self.m = m
        total_act = float(self.act.sum())
        self.r = p.add_variable("recompute", max(n * m, 1), ub=1.0, integer=True)
        # live bytes in units of all activations (rows of order 1: HiGHS wrongly declared
        # feasible models infeasible with byte-sized big-M coefficients)
        self.scale = max(total_act, 1.0)
        self.live = p.add_variable("recompute_live", max(n * m, 1), ub=1.0)
        o = p.options
        act_side = np.append(p.table.act_bytes, 0.0)[o.cut] * b     # (O,) activation bytes kept
        self._fixed = o.mem - act_side[None, :]                     # (N, O) F[k, o]
        act_n = self.act / self.scale
        for k in range(n):
            rows = []
            for j, v in enumerate(self.layers):
                r = self._r(k, j)
                rows.append(r <= p.on_device(k, int(v)))
                kept_before = float(act_n[:v].sum()) - Expr(
                    self._cols(k, range(j)), act_n[self.layers[:j]].astype(float))
                rows.append(self._live(k, j) >= kept_before + float(act_n[v]) - (1 - r))
                if j and self.layers[j - 1] == v - 1:
                    rows.append(self._live(k, j) >= self._live(k, j - 1) + float(act_n[v])
                                - 2 * (2 - r - self._r(k, j - 1)))
            p.add(rows, name=f"recompute:{p.device_name(k)}")

    # ------------------------------------------------------------------ columns
    def _cols(self, k: int, js: Any) -> np.ndarray:
        return np.array([self.r.offset + k * self.m + j for j in js], dtype=np.int64)

    def _j(self, node: int | str) -> int:
        g = self.p.scenario.graph
        name = None
        if isinstance(node, str):
            name = node
        elif isinstance(node, (int, np.integer)) and not isinstance(node, bool) \
                and 0 <= node < len(g):
            name = g.names[int(node)]
        if name not in self.position:
            raise InputError("recompute layer", node, f"one of {list(self.position)[:8]}",
                             "The input and the last node are never recomputed.")
        return self.position[name]

    def __getitem__(self, key: tuple[int | str, int | str]) -> Expr:
        """r[k, v]: 1 when device k recomputes layer v (``key``: (device, node name or index))."""
        if not (isinstance(key, tuple) and len(key) == 2):
            raise InputError("recompute[...]", key, "a (device, node) pair",
                             "e.g. p.recompute['d0', 'conv1']")
        return self._r(self.p.device_index(key[0]), self._j(key[1]))

    def _r(self, k: int, j: int) -> Expr:
        return Expr(self._cols(k, [j]), np.ones(1))

    def _live(self, k: int, j: int) -> Expr:
        return Expr(np.array([self.live.offset + k * self.m + j], dtype=np.int64), np.ones(1))

    def fix(self, k: int | str | None, node: int | str, on: bool) -> None:
        """Force device k (every device when None) to recompute ``node`` (True) or keep it."""
        j = self._j(node)
        ks = range(self.p.n_devices) if k is None else [self.p.device_index(k)]
        for i in ks:
            col = self.r.offset + i * self.m + j
            self.p.col_lb[col] = self.p.col_ub[col] = 1.0 if on else 0.0

    def forbid(self, k: int | str | None = None) -> None:
        """No recomputation on device k (every device when None)."""
        for j in range(self.m):
            self.fix(k, self.p.scenario.graph.names[int(self.layers[j])], False)

    # ------------------------------------------------------------------ terms
    def seconds(self, k: int | str) -> Expr:
        """Extra forward seconds per round of device k's recomputed layers."""
        i = self.p.device_index(k)
        return Expr(self._cols(i, range(self.m)), self.fwd[i].astype(float))

    def saved_bytes(self, k: int | str) -> Expr:
        """Activation bytes device k does not keep at the end of its forward pass."""
        i = self.p.device_index(k)
        return Expr(self._cols(i, range(self.m)), self.act[self.layers].astype(float))

    def energy(self, k: int | str) -> Expr:
        """Compute energy (J) of device k's extra forwards: P_comp times their seconds."""
        i = self.p.device_index(k)
        return self.seconds(i) * float(self.power[i])

    def memory(self, k: int | str) -> Expr:
        """M_k with recomputation: the end of the forward pass, or a run while it is recomputed."""
        i = self.p.device_index(k)
        end = self.p.option_expr(i, self.p.options.mem[i]) - self.saved_bytes(i)
        if not self.m:
            return end
        fixed = self.p.option_expr(i, self._fixed[i])
        return maximum([end, *(fixed + self._live(i, j) * self.scale for j in range(self.m))])

    # ------------------------------------------------------------------ plans
    def dropped(self, values: Any) -> dict[str, list[str]]:
        """{device: [recomputed node names]} from solver values (``result.values``)."""
        if not values or "recompute" not in values:
            return {}
        r = np.asarray(values["recompute"], dtype=float)[:self.p.n_devices * self.m]
        names = self.p.scenario.graph.names
        out: dict[str, list[str]] = {}
        for k in range(self.p.n_devices):
            js = np.flatnonzero(r[k * self.m:(k + 1) * self.m] > 0.5)
            if len(js):
                out[self.p.device_name(k)] = [names[int(self.layers[j])] for j in js]
        return out

    def annotate(self, plan: Any, values: Any) -> Any:
        """The plan with its recomputed layers in ``meta["recompute"]`` and their seconds."""
        rec = self.dropped(values)
        k_of = {self.p.device_name(k): k for k in range(self.p.n_devices)}
        secs = {d: float(sum(self.fwd[k_of[d], self.position[v]] for v in vs))
                for d, vs in rec.items()}
        return replace(plan, meta={**plan.meta, "recompute": rec, "recompute_s": secs})

    def fill(self, plan: Any, x: np.ndarray) -> list[tuple[str, bool, str]]:
        """Put the plan's recorded recomputation into ``x`` and its live bytes, priced afresh.

        The guard's re-pricing: r from ``plan.meta["recompute"]``, live[k,v] the bytes held while
        v's run is recomputed (kept activations before the run plus the run's up to v), computed
        here from the record and the device side, not from the solver's columns.
        """
        rec = dict(plan.meta.get("recompute", {}))
        by_name = {d.device: d for d in plan.devices}
        bad: list[str] = []
        x[self.r.offset:self.r.offset + self.r.size] = 0.0
        x[self.live.offset:self.live.offset + self.live.size] = 0.0
        for dev, nodes in rec.items():
            if dev not in by_name or not isinstance(nodes, (list, tuple)):
                bad.append(f"{dev}: not a device of the plan")
                continue
            k, d = self.p.device_index(dev), by_name[dev]
            if not set(nodes) <= set(d.device_side) or not set(nodes) <= set(self.position):
                bad.append(f"{dev}: recomputes {sorted(set(nodes))[:4]} outside its device side")
                continue
            drop = np.zeros(self.m, dtype=bool)
            drop[[self.position[v] for v in nodes]] = True
            x[self.r.offset + k * self.m + np.flatnonzero(drop)] = 1.0
            x[self.live.offset + k * self.m:self.live.offset + (k + 1) * self.m] = \
                self._live_bytes(drop) / self.scale
        return [("recomputed layers on the device side", not bad, "; ".join(bad[:3]))]

    def _live_bytes(self, drop: np.ndarray) -> np.ndarray:
        """Bytes live while each dropped layer's run is recomputed (0 for kept layers)."""
        kept = np.ones(len(self.act), dtype=bool)
        kept[self.layers[drop]] = False
        out = np.zeros(self.m)
        for j in np.flatnonzero(drop):
            v = int(self.layers[j])
            start = v
            while start - 1 >= 0 and not kept[start - 1]:
                start -= 1
            out[j] = float(self.act[:start][kept[:start]].sum() + self.act[start:v + 1].sum())
        return out
