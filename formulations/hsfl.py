"""HSFL: hybrid split and federated learning -- modes, integer batch sizes, bandwidth, SL cuts.

Paper: "Accelerating Wireless Distributed Learning via Hybrid Split and Federated Learning
Optimization", arXiv:2511.19851 (https://arxiv.org/abs/2511.19851).

What is taken from the paper (its abstract, the only text we had): devices train either in FL mode
or in SL mode, the SL devices sequentially through the server; the learning modes, the batch sizes
and the communication resources are chosen together to shorten the delay to a target accuracy,
which depends on the modes and batch sizes through convergence; a relaxation solved by block
coordinate descent followed by rounding. What is our reconstruction: every equation below (the
reference cost model's, docs/cost_model.md), the time-shared band of the SL devices, the convergence
surrogate's form (:mod:`splitopt.formulations._hsfl_surrogate`: the framework's, not the paper's
theorem), the BCD's blocks and rounding (:mod:`splitopt.formulations._hsfl_bcd`), the per-device
SL cuts, and the exact solve.

Each device k trains in FL mode (whole model local, in parallel with the others) or SL mode (split
at its cut S_k, the SL devices in turn through one shared server model), with an integer batch b_k.
FL devices hold a bandwidth share beta_k for the round; the SL devices take turns, and the one
transmitting uses the band the FL devices leave, beta_s = 1 - sum_FL beta_k (time-sharing: a
waiting SL device holds no band). Under the reference cost model:

    FL:  T_k = I * b_k * dev_k(V)                    + 8 * W(V) * p_k / beta_k
    SL:  T_k = I * b_k * (dev_k(S_k) + srv(S_k))  + (I * b_k * 8 * bnd(S_k) + 8 W(S_k)) p_k / beta_s
    round latency   L = max( max_{k in FL} T_k,  sum_{k in SL} T_k )   (costs.round_latency)
    rounds-to-target  R = h(P),   P = sum_k pen_k(mode_k, b_k)
    minimise  R * L   over modes, batches and cuts (memory-feasible), beta.

For fixed discrete choices the least L is the root of
sum_{FL} d_k / (L - a_k) + (sum_{SL} d_k) / (L - sum_{SL} a_k) = 1: the SL group is one virtual
device (sum a, sum d). Exact solve (:mod:`splitopt.solving.hsfl_bb`): for a fixed latency
L the least penalty P*(L) is a MILP (exact: a McCormick product with a binary), P* is a
nonincreasing step function, and a branch and bound over intervals [L1, L2] of L with bound
L1 * h(P*(L2)) closes the gap to ``tol``. Any surrogate R = h(sum_k pen_k(mode, b)) with h
nondecreasing can replace the default (subclass :class:`Surrogate`).

Baseline (:meth:`HSFL.baseline`): block coordinate descent on the relaxed problem (continuous
batches; blocks: bandwidth, batches, modes, the common SL cut) followed by rounding the batch
sizes -- our reading of the abstract's method, pricing the band as the system uses it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from splitopt.formulations._hsfl_surrogate import (
    Surrogate,
    estimate_surrogate,
    estimate_surrogate_from_rounds,
    rounds_to_target,
)

from splitopt.costs import CutTable, round_terms
from splitopt.errors import InfeasibleError, InputError
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario
from splitopt.solving.hsfl_bb import (
    Config,
    config_latency,
    least_penalty_config,
    penalty_of,
)
from splitopt.solving.hsfl_bb import DelayData as HSFLData

__all__ = ["HSFL", "Config", "HSFLData", "Surrogate", "config_latency", "estimate_surrogate",
           "estimate_surrogate_from_rounds", "penalty_of", "rounds_to_target"]


@dataclass(frozen=True)
class HSFL:
    """HSFL (arXiv:2511.19851): exact delay-to-target and a BCD + rounding baseline (our reading).

    Parameters
    ----------
    surrogate
        Rounds-to-target model (default :class:`Surrogate`).
    data_share
        Each device's data share rho_k (default equal); normalised to sum 1.
    batches
        Allowed integer batch sizes (default 1 .. the scenario's batch size).
    candidates
        SL cut candidates: ``"chain"`` (topological prefixes) or a list of device-side sets.
    per_device_cuts
        Each SL device picks its own cut (default); ``False``: one cut for every SL device (the
        setting as we read the abstract, and the BCD baseline's).
    tol
        Relative optimality tolerance of the exact branch and bound.

    """

    surrogate: Surrogate = field(default_factory=Surrogate)
    data_share: Sequence[float] | None = None
    batches: Sequence[int] | None = None
    candidates: Any = "chain"
    tol: float = 1e-4
    memory: bool = True
    per_device_cuts: bool = True

    name = "hsfl"
    paper = "arXiv:2511.19851"

    def scenario_for(self, scenario: Scenario) -> Scenario:
        """The scenario with SL devices in turn (FL devices in parallel), one FedAvg a round.

        The HSFL executor uploads and downloads every device's model each round.
        """
        if not isinstance(scenario, Scenario):
            raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
        tr = scenario.training.model_copy(update={"schedule": "sequential", "aggregate": True})
        return scenario if tr == scenario.training else scenario.replace(training=tr)

    def rho(self, scenario: Scenario) -> np.ndarray:
        """Data shares, summing to 1."""
        n = scenario.n_devices
        if self.data_share is None:
            return np.full(n, 1.0 / n)
        r = np.asarray(self.data_share, dtype=float)
        if r.shape != (n,) or not np.all(np.isfinite(r)) or np.any(r < 0) or r.sum() <= 0:
            raise InputError("data_share", self.data_share, f"{n} numbers >= 0, not all 0")
        return r / r.sum()

    def data(self, scenario: Scenario) -> HSFLData:
        """Price every (mode, batch) and (SL cut, batch) option for every device."""
        scen = self.scenario_for(scenario)
        g = scen.graph
        if isinstance(self.candidates, str):
            if self.candidates != "chain":
                raise InputError("candidates", self.candidates, "'chain' or a list of sets")
            sl = g.chain_prefixes()
        else:
            sl = [g.check_split(s) for s in self.candidates]
        table = CutTable.from_sets(g, [*sl, frozenset(g.names)])
        bs = self._batches(scen)
        cap = np.array([d.memory_bytes if self.memory else np.inf for d in scen.devices])
        a, d, ok = [], [], []
        for b in bs:
            rt = round_terms(scen.devices, scen.server, scen.channel, scen.training, table,
                             batch=int(b))
            a.append(rt.a_dev + rt.a_srv)
            d.append(rt.d)
            ok.append(rt.mem <= cap[:, None])
        a_, d_, ok_ = (np.stack(x, axis=-1) for x in (a, d, ok))  # (N, C+1, B)
        rho = self.rho(scen)[:, None]
        sur = self.surrogate
        return HSFLData(sl, bs, a_[:, -1], d_[:, -1], ok_[:, -1],
                        np.moveaxis(a_[:, :-1], 1, 0), np.moveaxis(d_[:, :-1], 1, 0),
                        np.moveaxis(ok_[:, :-1], 1, 0),
                        sur.penalty(rho, True, bs[None, :]), sur.penalty(rho, False, bs[None, :]),
                        rho[:, 0])

    def _batches(self, scen: Scenario) -> np.ndarray:
        vals = (range(1, scen.training.batch_size + 1) if self.batches is None
                else list(self.batches))
        if not vals or any(not isinstance(b, (int, np.integer)) or b < 1 for b in vals):
            raise InputError("batches", self.batches, "a non-empty list of integers >= 1")
        return np.array(sorted({int(b) for b in vals}), dtype=float)

    def _check_memory(self, scenario: Scenario, data: HSFLData) -> None:
        """Every device has some mode, cut and batch size that fits its memory, else say which."""
        scen = self.scenario_for(scenario)
        fits = data.ok_fl.any(axis=1) | data.ok_sl.any(axis=(0, 2))
        for k in np.flatnonzero(~fits)[:1]:
            dev = scen.devices[int(k)]
            table = CutTable.from_sets(scen.graph, [*data.sets, frozenset(scen.graph.names)])
            need = round_terms([dev], scen.server, scen.channel, scen.training, table,
                               batch=int(data.batches[0])).mem.min()
            raise InfeasibleError(
                f"{self.name}: device {dev.name!r} memory_bytes {dev.memory_bytes:.6g}: no mode, "
                f"cut and batch size fits; the least need is {need:.6g} bytes (batch "
                f"{int(data.batches[0])}). Give the device more memory_bytes, allow smaller "
                "batches, or leave the device out.")

    # ------------------------------------------------------------------ pricing a configuration
    def latency(self, data: HSFLData, cfg: Config) -> tuple[float, np.ndarray]:
        """Least round latency of a configuration and its bandwidth shares (exact)."""
        return config_latency(data, cfg)

    def objective(self, data: HSFLData, cfg: Config) -> float:
        """Delay to target h(P) * L of a configuration."""
        pen = penalty_of(data, cfg)
        r = self.surrogate.rounds(pen)
        return r * config_latency(data, cfg)[0] if math.isfinite(r) else math.inf

    # ------------------------------------------------------------------ solving
    def solve(self, scenario: Scenario, *, time_limit: float | None = None) -> Plan:
        """The exact optimum (branch and bound over latency intervals; gap <= tol).

        With ``time_limit`` (seconds, wall clock) it stops there and returns its best plan with
        the proven bound (status ``time_limit``). The plan is checked (re-priced, memory, shares)
        before it is called optimal.
        """
        from splitopt.solving.hsfl_bb import branch_and_bound

        if time_limit is not None and not (isinstance(time_limit, (int, float))
                                           and time_limit > 0):
            raise InputError("time_limit", time_limit, "a number of seconds > 0")
        t0 = time.perf_counter()
        data = self.data(scenario)
        self._check_memory(scenario, data)
        start = least_penalty_config(data)
        if not math.isfinite(self.objective(data, start)):
            raise InfeasibleError(
                f"{self.name}: the target is out of reach for every choice of modes and batch "
                "sizes (the surrogate's denominator eps - P is <= 0 even at the least penalty); "
                "raise eps (a looser target) or allow larger batch sizes")
        base = self.baseline(scenario, data=data)
        # HiGHS overshoots its own limit by a few percent and the plan is priced after the
        # search: the search gets 85% of what is left, so the whole solve stays within the limit
        left = (None if time_limit is None
                else max(0.85 * (time_limit - (time.perf_counter() - t0)), 1e-3))
        if self.objective(data, base.meta["config"]) <= self.objective(data, start):
            start = base.meta["config"]
        out = branch_and_bound(data, self.surrogate.rounds, start, self.groups(data),
                               tol=self.tol, time_limit=left)
        meta = {"formulation": self.name, "paper": self.paper, "milps": out.extras["milps"],
                "nodes": out.extras["nodes"], "solve_s": time.perf_counter() - t0}
        plan = self.plan(scenario, data, out.extras["config"], method="hsfl-exact",
                         status=out.termination, bound=out.bound, meta=meta)
        return self._checked(scenario, plan)

    def problem(self, scenario: Scenario) -> Any:
        """HSFL on the public builder: a :class:`splitopt.model.Problem` with its objective set.

        Options: FL at each batch size, SL at each candidate cut and batch size
        (``modes=True``), every device's memory as a row, the SL devices in turn at the whole
        server (``server_share=False`` on :meth:`scenario_for`'s sequential schedule); the
        objective h(P) * L with P the surrogate's penalty of each device's mode and batch
        (:mod:`splitopt.model.delay`). :func:`splitopt.solving.solve` takes it by the
        ``delay-to-target`` path. Per-device SL cuts only (``per_device_cuts=True``).
        """
        from splitopt.model import Problem
        from splitopt.model.delay import minimize_delay_to_target, mode_batch_penalty
        from splitopt.model.problems import add_memory_limits

        if not self.per_device_cuts:
            raise InputError("per_device_cuts", False, "True for the builder Problem",
                             "A common SL cut is solved by HSFL(per_device_cuts=False).solve.")
        scen = self.scenario_for(scenario)
        sets = (scen.graph.chain_prefixes() if isinstance(self.candidates, str)
                else list(self.candidates))
        p = Problem(scen, cuts=sets, batch=self._batches(scen).astype(int).tolist(), modes=True,
                    server_share=False)
        if self.memory:
            add_memory_limits(p)
        rho, sur = self.rho(scen), self.surrogate
        minimize_delay_to_target(
            p, mode_batch_penalty(p, lambda k, fl, b: sur.penalty(rho[k], fl, b)), sur.rounds)
        return p

    def solve_builder(self, scenario: Scenario, *, time_limit: float | None = None,
                      backend: str | None = None) -> Any:
        """The exact optimum through the builder (:meth:`problem`, :func:`splitopt.solving.solve`).

        The Result's plan carries the surrogate's rounds (``plan.rounds`` = h(P), so
        ``plan.predicted.total_delay_s`` is the objective) and is re-priced under
        :meth:`scenario_for` by :func:`splitopt.formulations.edgesplit.verification` on top of
        the builder's guard.
        """
        from splitopt.formulations.edgesplit import verification

        from splitopt.backends.results import Result
        from splitopt.solving import solve as solve_problem
        from splitopt.solving.verify import checked_status

        t0 = time.perf_counter()
        p = self.problem(scenario)
        data = self.data(scenario)
        base = self.baseline(scenario, data=data).meta["config"]  # BCD's plan starts the search
        o, full = p.options, int(np.flatnonzero(np.asarray(p.table.masks).all(axis=1))[0])
        cut = [full if fl else p.cut.index_of(data.sets[c]) for c, fl in zip(base.cut, base.fl)]
        warm = np.array([np.flatnonzero((o.cut == c) & (o.batch == data.batches[b]))[0]
                         for c, b in zip(cut, base.batch)])
        left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 1e-3)
        res = solve_problem(p, backend=backend, time_limit=left, gap=self.tol,
                            warm_start=Result("feasible", options=warm))
        if res.plan is None:
            return res
        rows = np.arange(p.n_devices)
        rounds = self.surrogate.rounds(float(p.objective.penalty[rows, res.options].sum()))
        scen = self.scenario_for(scenario)
        plan = replace(res.plan, rounds=rounds, method="hsfl-delay-to-target").priced(scen)
        plan = replace(plan, objective=res.objective, bound=res.bound)
        v = verification(scen, plan, memory=self.memory)  # under HSFL's own pricing scenario
        return replace(res, termination=checked_status(res.termination, v), plan=plan,
                       extras={"rounds": rounds, "repriced_hsfl": v.to_dict()})

    def groups(self, data: HSFLData) -> list[np.ndarray]:
        """The SL cut groups the search runs over: all cuts at once, or one cut each."""
        n_cut = data.a_sl.shape[0]
        if self.per_device_cuts:
            return [np.arange(n_cut)]
        return [np.array([c]) for c in range(n_cut)]

    def _checked(self, scenario: Scenario, plan: Plan) -> Plan:
        """The verified-answer guard (:func:`splitopt.formulations.edgesplit.checked`)."""
        from splitopt.formulations.edgesplit import checked

        return checked(self.scenario_for(scenario), plan, memory=self.memory)

    def baseline(self, scenario: Scenario, *, data: HSFLData | None = None,
                 max_iter: int = 30) -> Plan:
        """Block coordinate descent on the relaxed problem, then rounding.

        Our reading of the abstract's method (:mod:`splitopt.formulations._hsfl_bcd`).
        """
        from splitopt.formulations._hsfl_bcd import bcd_round

        t0 = time.perf_counter()
        data = data if data is not None else self.data(scenario)
        self._check_memory(scenario, data)
        cfg = bcd_round(self, data, max_iter=max_iter)
        meta = {"formulation": self.name, "solve_s": time.perf_counter() - t0}
        return self.plan(scenario, data, cfg, method="hsfl-bcd-rounding", meta=meta)

    def plan(self, scenario: Scenario, data: HSFLData, cfg: Config, *, method: str,
             status: str = "feasible", bound: float | None = None,
             meta: dict[str, Any] | None = None) -> Plan:
        """A priced Plan of a configuration (rounds = the surrogate's rounds-to-target)."""
        scen = self.scenario_for(scenario)
        lat, beta = config_latency(data, cfg)
        rounds = self.surrogate.rounds(penalty_of(data, cfg))
        if not math.isfinite(rounds):
            raise InfeasibleError(f"{self.name}: the target is out of reach for this choice of "
                                  "modes and batch sizes (surrogate denominator <= 0)")
        full = frozenset(scen.graph.names)
        # SL devices in turn each have the whole server (server_share None: not divided)
        devs = tuple(DevicePlan(dv.name, full if cfg.fl[k] else data.sets[int(cfg.cut[k])],
                                float(min(beta[k], 1.0)), None,
                                int(data.batches[cfg.batch[k]]), "fl" if cfg.fl[k] else "split")
                     for k, dv in enumerate(scen.devices))
        cfg_doc = {"cut": cfg.cut.tolist(), "fl": cfg.fl.tolist(), "batch": cfg.batch.tolist()}
        plan = Plan(devs, rounds=rounds, status=status, method=method,
                    meta={**(meta or {}), "config": cfg, "config_doc": cfg_doc,
                          "round_latency_s": lat}).priced(scen)
        assert plan.predicted is not None
        return replace(plan, objective=plan.predicted.total_delay_s, bound=bound)
