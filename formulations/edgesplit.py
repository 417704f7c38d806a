"""EdgeSplit: parallel split learning over heterogeneous edge devices.

Paper: "Resource-efficient Parallel Split Learning in Heterogeneous Edge Computing",
arXiv:2403.15815 (https://arxiv.org/abs/2403.15815).

What is taken from the paper (its abstract, the only text we had): parallel split learning on
heterogeneous edge devices, each device with its own model partition, the partitions and the
bandwidth chosen together to shorten training. What is our reconstruction: every equation below
(they are the reference cost model's, docs/cost_model.md), the min-max round objective, the server
serving modes, the exact solve, and the alternating baseline (the method the SFL paper's abstract
names, applied here; we do not know EdgeSplit's own algorithm).

Every device k trains its own device-side set S_k in parallel with the others; the server runs the
rest; the uplink/downlink band is divided into shares beta_k. With I local iterations of batch b
per round and no aggregation of the device-side models (plain parallel split learning):

    T_k(S, beta_k, phi_k) = I b dev_k(S) + I b srv(S) / phi_k + I b 8 bnd(S) p_k / beta_k
                          = A_k(S) + S_k(S) / phi_k + D_k(S) / beta_k

    minimise    R * round latency             (R rounds of training)
    subject to  sum_k beta_k <= 1,  M_k(S_k, b) <= memory_k,  S_k predecessor-closed,

where dev_k, srv are seconds per sample of forward + backward on the device and on the whole
server, bnd(S) the bytes per sample crossing the cut and
p_k = 1 / (B_up s_up,k) + 1 / (B_dn s_dn,k).
The round latency follows the scenario's ``server.serving`` (docs/formulations.md):

* ``shared`` (default): max_k T_k with server shares phi_k, sum_k phi_k <= 1;
* ``dedicated``: max_k T_k with phi_k = 1 (each device has the whole server: an explicit choice);
* ``sequential``: the devices take turns, each with the whole server and the whole band in its
  turn (time-sharing): sum_k A_k + S_k + D_k.

Exact solve: dedicated, the builder's ``bisection`` path (splitopt.solving): a round time T is
achievable iff sum_k min_S D_k(S) / (T - A_k(S) - S_k(S)) <= 1; shared, its ``server-share`` path
(the same kernel, :func:`splitopt.solving.resource.server_minmax`, run without the MILP: its
Lagrangian tests and branch and bound, with a proven bound); sequential, each device's cheapest
set alone (the sum separates).
Candidates: all prefixes on a chain; on a DAG the sets on the lower convex hull of (A(S), D(S))
(splitopt.partitioning.hull), which hold every minimiser of D(S) / (T - A(S)) with a dedicated
server (docs/formulations.md).

Baseline (:meth:`EdgeSplit.baseline`): alternating optimisation -- each device's best cut for its
current shares, then the optimal shares for those cuts, until the cuts repeat. With a dedicated
server it stops only at the optimum (docs/formulations.md); with a shared server it can lose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitopt.costs import CutTable, RoundTerms, column, round_terms
from splitopt.errors import InfeasibleError, InputError
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario
from splitopt.solving.resource import server_minmax
from splitopt.solving.shares import fixed_minmax, server_fixed_minmax

CANDIDATES = ("auto", "chain", "hull")
SERVING = {True: "shared", False: "dedicated"}


@dataclass(frozen=True)
class EdgeSplit:
    """EdgeSplit (arXiv:2403.15815): per-device cut + bandwidth share, min-max round time.

    Parameters
    ----------
    candidates
        ``"auto"`` (chain prefixes on a chain, hull sets on a DAG), ``"chain"`` (topological
        prefixes), ``"hull"``, or an explicit list of device-side sets.
    server_share
        ``None`` (default): serve devices as the scenario's ``server.serving`` says; ``True``:
        a shared server (shares phi_k, sum <= 1); ``False``: a dedicated server per device.
        An explicit value overrides the scenario (:meth:`scenario_for` says so in the scenario).
    memory
        Enforce each device's memory (``Device.memory_bytes``).

    """

    candidates: Any = "auto"
    server_share: bool | None = None
    memory: bool = True

    name = "edgesplit"
    paper = "arXiv:2403.15815"
    aggregate = False

    # ------------------------------------------------------------------ the model
    def scenario_for(self, scenario: Scenario) -> Scenario:
        """The scenario with this formulation's training flags and server serving.

        Parallel rounds, this formulation's aggregation, and ``server_share`` as the server's
        serving when given (else the scenario's own).
        """
        if not isinstance(scenario, Scenario):
            raise InputError("scenario", type(scenario).__name__, "a splitopt Scenario")
        tr, srv = scenario.training, scenario.server
        if tr.schedule != "parallel" or tr.aggregate != self.aggregate:  # (copies only if needed)
            tr = tr.model_copy(update={"schedule": "parallel", "aggregate": self.aggregate})
        serving = None if self.server_share is None else SERVING[bool(self.server_share)]
        if serving is not None and getattr(srv, "serving", None) != serving:
            srv = srv.model_copy(update={"serving": serving})
        if tr is scenario.training and srv is scenario.server:
            return scenario
        return scenario.replace(training=tr, server=srv)

    def serving(self, scenario: Scenario) -> str:
        """How the server serves the devices here: shared, sequential or dedicated."""
        return self.scenario_for(scenario).server.serving

    def table(self, scenario: Scenario) -> CutTable:
        """The candidate device-side sets (see ``candidates``)."""
        scen = self.scenario_for(scenario)
        g, kind = scen.graph, self.candidates
        if not isinstance(kind, str):
            return CutTable.from_sets(g, [g.check_split(s) for s in kind])
        if kind not in CANDIDATES:
            raise InputError("candidates", kind, f"one of {CANDIDATES} or a list of sets")
        if kind == "chain" or (kind == "auto" and g.is_chain):
            return CutTable.chain(g)
        return CutTable.from_sets(g, hull_sets(scen))

    def terms(self, scenario: Scenario, table: CutTable | None = None) -> RoundTerms:
        """T[k, c] = a_dev + a_srv / phi + d / beta for every device and candidate."""
        scen = self.scenario_for(scenario)
        table = table if table is not None else self.table(scen)
        return round_terms(scen.devices, scen.server, scen.channel, scen.training, table)

    def problem(self, scenario: Scenario, table: CutTable | None = None) -> Any:
        """The builder Problem: minimise rounds x round latency (memory rows per device)."""
        scen = self.scenario_for(scenario)
        if scen.server.serving == "sequential":
            raise InputError("server.serving", "sequential", "shared or dedicated for the "
                             "builder's Problem", f"{type(self).__name__}().solve(scenario) solves "
                             "the sequential server exactly (each device's cheapest cut).")
        table = table if table is not None else self.table(scen)
        return self._problem(scen, table, column(scen.devices, "memory_bytes"))

    def _problem(self, scen: Scenario, table: CutTable, caps: np.ndarray) -> Any:
        """:meth:`problem` with every device's memory_bytes read (``caps``)."""
        from splitopt.model import Problem

        p = Problem(scen, cuts=table, server_share=scen.server.serving == "shared")
        if self.memory:  # one row per finite-memory device (found in arrays: fleets are large)
            for k in np.flatnonzero(np.isfinite(caps)).tolist():
                d = scen.devices[k]
                p.add(p.memory(d.name) <= d.memory_bytes, name=f"memory:{d.name}")
        p.minimize(p.round_latency() * float(scen.training.rounds))
        return p

    # ------------------------------------------------------------------ solving
    def solve(self, scenario: Scenario, *, time_limit: float | None = None,
              backend: str | None = None) -> Plan:
        """The exact optimum via the builder (status, bound and gap in the plan)."""
        t0 = time.perf_counter()
        scen = self.scenario_for(scenario)
        table = self.table(scen)
        if scen.server.serving == "sequential":
            return checked(scen, self._solve_in_turn(scen, table, t0), memory=self.memory)
        if scen.server.serving == "shared":
            return checked(scen, self._solve_shared(scen, table, t0, time_limit),
                           memory=self.memory)
        build = time.perf_counter() - t0
        caps = column(scen.devices, "memory_bytes")
        res = self._problem(scen, table, caps).solve(time_limit=time_limit, backend=backend)
        if res.plan is None:
            raise InfeasibleError(f"{self.name}: no plan found ({res.termination}: {res.message})")
        meta = {"formulation": self.name, "paper": self.paper, "path": res.path,
                "candidates": len(table), "exact_over": self._scope(scen, table, caps),
                "build_s": build + res.build_s, "solve_s": res.solve_s}
        return replace(res.plan, method=f"{self.name}-exact", meta=meta)

    def _solve_shared(self, scen: Scenario, table: CutTable, t0: float,
                      time_limit: float | None) -> Plan:
        """Exact solve for a shared server with :func:`splitopt.solving.resource.server_minmax`.

        Bisection on T, each probe decided by Lagrangian tests and a branch and bound (no MILP);
        the bound is a proof.
        """
        terms = self.terms(scen, table)
        ok = self._feasible(scen, terms)
        a_dev = np.where(ok, terms.a_dev, np.inf)
        deadline = None if time_limit is None else t0 + 0.9 * time_limit
        res = server_minmax(a_dev, terms.d, terms.a_srv, ok, None, deadline=deadline)
        if res.objective is None:
            raise InfeasibleError(f"{self.name}: no plan found ({res.termination})")
        r = float(scen.training.rounds)
        gap = (res.objective - res.bound) / res.objective
        late = deadline is not None and time.perf_counter() > deadline
        status = "optimal" if gap <= 1e-6 else ("time_limit" if late else "feasible")
        meta = {"formulation": self.name, "paper": self.paper, "path": "server-share-kernel",
                "candidates": len(table), "exact_over": self._scope(scen, table),
                "probes": res.iterations, "solve_s": time.perf_counter() - t0}
        return self.plan(scen, table, res.options, res.beta, res.phi,
                         method=f"{self.name}-exact", meta=meta, status=status,
                         bound=res.bound * r)

    def _solve_in_turn(self, scen: Scenario, table: CutTable, t0: float) -> Plan:
        """Exact solve for a sequential server: each device's cheapest feasible set.

        The round is a sum, each device alone with the whole band and server in its turn.
        """
        terms = self.terms(scen, table)
        a = np.where(self._feasible(scen, terms), terms.a_dev + terms.a_srv + terms.d, np.inf)
        choice = np.argmin(a, axis=1)
        n = scen.n_devices
        meta = {"formulation": self.name, "paper": self.paper, "path": "separable-in-turn",
                "candidates": len(table), "exact_over": self._scope(scen, table),
                "solve_s": time.perf_counter() - t0}
        value = float(a[np.arange(n), choice].sum()) * float(scen.training.rounds)
        return self.plan(scen, table, choice, np.ones(n), np.full(n, np.nan),
                         method=f"{self.name}-exact", meta=meta, status="optimal", bound=value)

    def _scope(self, scen: Scenario, table: CutTable, caps: np.ndarray | None = None) -> str:
        """What the optimum is proven over: every split, or only the candidates given."""
        g = scen.graph
        if not isinstance(self.candidates, str):
            return "the given candidates"
        if self.candidates == "chain" and not g.is_chain:
            return "the topological prefixes"
        if g.is_chain:
            return "every split"
        caps = (column(scen.devices, "memory_bytes") if caps is None else caps)[:, None]
        binds = (self.memory and bool(np.isfinite(caps).any())  # (no memory row: cannot bind)
                 and bool((self.terms(scen, table).mem > caps).any()))
        if scen.server.serving == "shared" or binds:
            return "the hull sets (memory or server shares bind: not proven over all splits)"
        return "every split (hull argument, docs/formulations.md)"

    def baseline(self, scenario: Scenario, *, max_iter: int = 100) -> Plan:
        """Alternating optimisation from equal shares (the baseline; see the module docstring).

        Best cuts for fixed shares, then the best shares for fixed cuts, until the cuts repeat.
        With a sequential server it is the exact solve (nothing to alternate).
        """
        t0 = time.perf_counter()
        scen = self.scenario_for(scenario)
        table = self.table(scen)
        if scen.server.serving == "sequential":
            plan = self._solve_in_turn(scen, table, t0)
            return replace(plan, method=f"{self.name}-alternating", status="feasible",
                           bound=None, meta={"formulation": self.name, "iterations": 1,
                                             "solve_s": time.perf_counter() - t0})
        shared = scen.server.serving == "shared"
        terms = self.terms(scen, table)
        a_dev, a_srv, d = terms.a_dev, terms.a_srv, terms.d
        a_dev = np.where(self._feasible(scen, terms), a_dev, np.inf)
        n = scen.n_devices
        beta = np.full(n, 1.0 / n)
        phi = np.full(n, 1.0 / n) if shared else np.ones(n)
        seen: set[bytes] = set()
        choice = np.zeros(n, dtype=int)
        for it in range(max_iter):  # noqa: B007 (reported in meta)
            choice = np.argmin(a_dev + a_srv / phi[:, None] + d / beta[:, None], axis=1)
            if choice.tobytes() in seen:
                break
            seen.add(choice.tobytes())
            beta, phi = self._allocate(a_dev, a_srv, d, choice, shared)
        meta = {"formulation": self.name, "iterations": it + 1,
                "solve_s": time.perf_counter() - t0}
        return self.plan(scen, table, choice, beta, phi, method=f"{self.name}-alternating",
                         meta=meta)

    @staticmethod
    def _allocate(a_dev: np.ndarray, a_srv: np.ndarray, d: np.ndarray, choice: np.ndarray,
                  shared: bool) -> tuple[np.ndarray, np.ndarray]:
        """Optimal shares for fixed cuts (exact: a 1-D root, or the two-resource closed form)."""
        rows = np.arange(len(choice))
        if shared:
            _, _, beta, phi = server_fixed_minmax(a_dev[rows, choice], a_srv[rows, choice],
                                                  d[rows, choice])
            return beta, phi
        a = a_dev[rows, choice] + a_srv[rows, choice]
        return fixed_minmax(a, d[rows, choice])[2], np.ones(len(choice))

    def _feasible(self, scen: Scenario, terms: RoundTerms) -> np.ndarray:
        """(N, C) candidates that fit each device's memory."""
        if not self.memory:
            return np.ones(terms.mem.shape, dtype=bool)
        cap = np.array([d.memory_bytes for d in scen.devices])[:, None]
        ok = terms.mem <= cap
        bad = np.flatnonzero(~ok.any(axis=1))
        if len(bad):
            dev = scen.devices[int(bad[0])]
            need = float(terms.mem[bad[0]].min())
            raise InfeasibleError(f"device {dev.name}: no candidate cut fits "
                                  f"{dev.memory_bytes:.4g} "
                                  f"bytes; the smallest needs {need:.4g} bytes")
        return ok

    def plan(self, scenario: Scenario, table: CutTable, choice: np.ndarray, beta: np.ndarray,
             phi: np.ndarray, *, method: str, meta: dict[str, Any] | None = None,
             status: str = "feasible", bound: float | None = None) -> Plan:
        """A priced Plan from per-device candidate indices and shares."""
        scen = self.scenario_for(scenario)
        sets = table.sets()
        shared = scen.server.serving == "shared"  # else every device has the whole server
        devs = tuple(DevicePlan(dv.name, sets[int(c)], float(min(b, 1.0)),
                                float(min(f, 1.0)) if shared else None)
                     for dv, c, b, f in zip(scen.devices, choice, beta, phi, strict=True))
        plan = Plan(devs, rounds=scen.training.rounds, status=status, method=method,
                    meta=meta or {}).priced(scen)
        assert plan.predicted is not None
        return replace(plan, objective=plan.predicted.total_delay_s, bound=bound)


def verification(scenario: Scenario, plan: Plan, *, memory: bool = True) -> Any:
    """The verified-answer guard's checks (splitopt.solving.verify) on a formulation's own plan.

    Re-prices the plan under ``scenario`` (shares checked by ``evaluate``), checks every device's
    memory and the bound's side.
    """
    import math

    from splitopt.plan import evaluate
    from splitopt.solving.verify import Row, verify

    costs = evaluate(scenario, plan)
    rows = [Row(f"memory:{d.name}", costs.per_device[d.name].memory_bytes, hi=d.memory_bytes)
            for d in scenario.devices
            if memory and math.isfinite(d.memory_bytes) and d.name in costs.per_device]
    return verify(objective=plan.objective, repriced=costs.total_delay_s, bound=plan.bound,
                  rows=rows)


def checked(scenario: Scenario, plan: Plan, *, memory: bool = True) -> Plan:
    """The plan after the verified-answer guard (:func:`verification`).

    A failed check turns ``optimal`` into ``unverified`` and ``meta["verification"]`` says which.
    (Builder results pass the builder's own guard.)
    """
    from splitopt.solving.verify import checked_status

    v = verification(scenario, plan, memory=memory)
    return replace(plan, status=checked_status(plan.status, v),
                   meta={**plan.meta, "verification": v.to_dict()})


def hull_sets(scenario: Scenario) -> list[frozenset[str]]:
    """Union over compute classes of the lower-hull sets of (A(S), D(S)) (partitioning.hull).

    One hull per class, shared by devices that differ only in channel, memory or power.
    """
    from splitopt.partitioning.fleet import class_hull_sets

    return class_hull_sets(scenario)


def _register() -> None:
    """Make ``splitopt solve --problem edgesplit`` build this formulation's Problem."""
    from splitopt.model.problems import register

    register("edgesplit", lambda scenario: EdgeSplit().problem(scenario))


_register()
