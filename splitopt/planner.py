"""Incremental exact re-planning: ``Planner(problem).solve()``, then ``update(device, **changes)``.

The round-latency problems of the fleet (EdgeSplit, SFL: min w * max_k T_k + c, per-device memory
rows) decompose by device: with T_k = A[k,o] + D[k,o] / beta_k (+ S[k,o] / phi_k with a shared
server), a round time T is feasible iff

    dedicated server:  sum_k min_o need_k,o(T) <= 1,   need_k,o(T) = D[k,o] / (T - A[k,o])
    shared server:     some options give F = c + s^2 / (1 - a) <= 1
                       (docs/formulations.md, resource.py)

where only device k's own row (A[k], D[k], S[k], allowed[k]) depends on device k. A changed device
therefore changes one row: the planner re-prices that device's options (one-device option table),
re-derives its row exactly as the problem's analysis would (objective coefficients, memory rows
presolved into allowed options), moves it between the class groups of
:class:`~splitopt.solving.bisection.MinMaxRows`, and re-bisects from the previous bracket. The
answer is the optimum of the problem rebuilt from scratch for the changed scenario, because every
other row is the same array it was (docs/planner.md; tests/test_planner.py checks it against
from-scratch solves).

Problems whose constraints are not per-device memory rows, or whose path is not the bisection or
the server-share path, are solved through :func:`splitopt.solving.solve`; their update needs a
``rebuild(scenario) -> Problem`` callable and re-solves with the previous result as warm start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InputError
from splitopt.model.options import build_options
from splitopt.model.problem import Problem
from splitopt.plan import Plan
from splitopt.pricing import DevicePlans, MutableOptions, price_options
from splitopt.scenario import Scenario
from splitopt.solving.bisection import MinMaxRows, bisect_rows
from splitopt.solving.structure import analyse, per_option
from splitopt.solving.verify import Row, guard_result, verify
from splitopt.system import Device

_MEM_TOL = 1e-9  # the analysis' presolve tolerance on a per-device row (structure._classify)


class Planner:
    """An exact planner that re-plans after one device changes without rebuilding the rest.

    Parameters
    ----------
    problem
        A builder Problem. Its incremental form needs the objective ``w * round latency + c``
        (parallel rounds) and per-device memory rows ``memory(k) <= memory_bytes`` only, as
        EdgeSplit and SFL build it; anything else falls back to a full solve per update.
    rebuild
        ``rebuild(scenario) -> Problem``: how to rebuild the problem for a changed scenario
        (needed only when the problem has no incremental form).
    backend
        The MILP backend of the server-share path (and of fall-back solves).
    memory_rows
        Whether a device that joins, or whose memory becomes finite, gets the row
        ``memory(k) <= memory_bytes`` (None: yes when every finite-memory device has one, as
        EdgeSplit and SFL build it).

    """

    def __init__(self, problem: Problem, *, rebuild: Callable[[Scenario], Problem] | None = None,
                 backend: str | None = None, memory_rows: bool | None = None):
        if not isinstance(problem, Problem):
            raise InputError("problem", type(problem).__name__, "a splitopt Problem")
        if problem.objective is None:
            raise InputError("objective", None, "an objective", "Call p.minimize(...) first.")
        self.problem, self.rebuild, self.backend = problem, rebuild, backend
        self.scenario = problem.scenario
        self.result: Result | None = None
        self.reason, st, self.path = _incremental_reason(problem)
        if self.reason:
            return
        rows = {c.name.split(":", 1)[1] for c in problem.constraints}
        if memory_rows is None:  # as EdgeSplit builds it: a row for every finite-memory device
            finite = {d.name for d in self.scenario.devices if math.isfinite(d.memory_bytes)}
            memory_rows = bool(rows) and rows == finite
        self._setup(problem.table, problem.batches, problem.options, problem.allowed,
                    st.allowed, rows, bool(memory_rows), _weight_const(problem),
                    problem.server_share is not None)

    @classmethod
    def for_formulation(cls, formulation: Any, scenario: Scenario, *,
                        backend: str | None = None) -> Planner:
        """The planner of EdgeSplit/SFL's problem without building its builder Problem.

        The same problem as ``formulation.problem(scenario)`` (min rounds x round latency over
        the formulation's candidates, a memory row per device with finite memory when
        ``formulation.memory``, the server shared or dedicated as its scenario says), set up
        from the option table in array operations: the fast path for large fleets.
        """
        for attr in ("scenario_for", "table", "memory"):
            if not hasattr(formulation, attr):
                raise InputError("formulation", type(formulation).__name__,
                                 "an EdgeSplit-like formulation (EdgeSplit, SFL)")
        scen = formulation.scenario_for(scenario)
        serving = getattr(scen.server, "serving", "dedicated")
        if serving not in ("shared", "dedicated") or scen.training.schedule != "parallel":
            raise InputError("server.serving", serving, "'shared' or 'dedicated' with parallel "
                             "rounds", "Use formulation.solve() for devices taking turns.")
        table = formulation.table(scen)
        batches = [scen.training.batch_size]
        options = build_options(scen, table, batches, False)
        base = np.broadcast_to(~options.is_fl, (scen.n_devices, options.n_options))
        caps = np.array([d.memory_bytes for d in scen.devices], dtype=float)
        ruled = np.isfinite(caps) & bool(formulation.memory)  # a memory row per such device
        mem = {scen.devices[k].name for k in np.flatnonzero(ruled).tolist()}
        self = cls.__new__(cls)
        self.problem, self.rebuild, self.backend = None, None, backend
        self.scenario, self.result, self.reason = scen, None, ""
        self.path = "server-share" if serving == "shared" else "bisection"
        cap = np.where(ruled, caps, np.inf)
        allowed = base & (options.mem - cap[:, None] <= _MEM_TOL)
        bad = np.flatnonzero(~allowed.any(axis=1))
        if len(bad):
            from splitopt.errors import InfeasibleError

            d = scen.devices[int(bad[0])]
            raise InfeasibleError(f"device {d.name}: no candidate fits its memory "
                                  f"{d.memory_bytes:.4g} bytes")
        self._setup(table, batches, options, base, allowed, mem, bool(formulation.memory),
                    (float(scen.training.rounds), 0.0), serving == "shared")
        return self

    def _setup(self, table: Any, batches: list[int], options: Any, base_allowed: np.ndarray,
               allowed: np.ndarray, mem_rows: set[str], memory_rows: bool,
               weight_const: tuple[float, float], shared: bool) -> None:
        self.table, self.batches = table, batches
        self.selectable = bool((options.cut < 0).any())
        self.weight, self.const = weight_const
        self.shared = shared
        self.opts = MutableOptions(options)
        self.base_allowed = np.array(base_allowed)  # modes and pins, before memory rows
        self.mem_rows, self.memory_rows = mem_rows, memory_rows
        self.names = self.scenario.device_names()
        self.index = {n: i for i, n in enumerate(self.names)}
        self.allowed = np.array(allowed)
        a, d = self._arrays()
        self.rows = None if shared else MinMaxRows(a, d, np.broadcast_to(0.0, a.shape),
                                                   self.allowed)
        self.bracket: tuple[float, float] | None = None
        self.plans = DevicePlans(table, options)

    # ------------------------------------------------------------------ public
    def solve(self) -> Result:
        """Solve the current problem exactly (the first call, or after changes)."""
        if self.reason:
            old = self.result  # a warm start only for the same devices (a hint, checked)
            same = old is not None and old.plan is not None and [
                d.device for d in old.plan.devices] == [d.name for d in self.scenario.devices]
            self.result = self.problem.solve(backend=self.backend, warm_start=old if same else None)
            return self.result
        return self._solve(time.perf_counter())

    def update(self, device: str, **changes: Any) -> Result:
        """Change fields of one device and return the new exact Result.

        Any Device field: ``flops``, ``spectral_eff_up``/``_dn``, ``snr_db``, ``memory_bytes``...
        """
        return self.update_many({device: changes})

    def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> Result:
        """Several devices change at once (one re-plan): ``{device: {field: value}}``."""
        t0 = time.perf_counter()
        if not isinstance(changes, Mapping) or not changes:
            raise InputError("changes", changes, "{device name: {field: value}}, not empty")
        new = {name: self._updated(name, fields) for name, fields in changes.items()}
        scen = self.scenario.replace(devices=tuple(new.get(d.name, d)
                                                   for d in self.scenario.devices))
        return self._changed(scen, [("replace", n, d) for n, d in new.items()], t0)

    def join(self, device: Device) -> Result:
        """A device joins the fleet; returns the new exact Result."""
        t0 = time.perf_counter()
        if not isinstance(device, Device):
            raise InputError("device", type(device).__name__, "a splitopt Device")
        scen = self.scenario.replace(devices=(*self.scenario.devices, device))
        return self._changed(scen, [("append", device.name, device)], t0)

    def leave(self, device: str) -> Result:
        """A device leaves the fleet; returns the new exact Result."""
        t0 = time.perf_counter()
        self.scenario.device(device)
        if self.scenario.n_devices == 1:
            raise InputError("leave", device, "a fleet that keeps at least one device")
        scen = self.scenario.replace(devices=tuple(d for d in self.scenario.devices
                                                   if d.name != device))
        return self._changed(scen, [("delete", device, None)], t0)

    # ------------------------------------------------------------------ incremental
    def _updated(self, name: str, changes: Mapping[str, Any]) -> Device:
        """Device ``name`` with ``changes`` applied, validated."""
        old = self.scenario.device(name)
        if not isinstance(changes, Mapping) or not changes:
            raise InputError(f"changes of {name!r}", changes,
                             "at least one device field, e.g. flops=2e12")
        unknown = sorted(set(changes) - set(Device.model_fields))
        if unknown:
            raise InputError(f"update({name!r}).{unknown[0]}", changes[unknown[0]],
                             f"a Device field: {sorted(Device.model_fields)}")
        data = old.model_dump()
        if "snr_db" in changes:  # the spectral efficiencies follow the new SNR unless given
            for key in ("spectral_eff_up", "spectral_eff_dn"):
                if key not in changes:
                    data.pop(key)
        elif {"spectral_eff_up", "spectral_eff_dn"} & set(changes):
            data["snr_db"] = None  # an old SNR would no longer describe the link
        return Device(**{**data, **changes})

    def _changed(self, scen: Scenario, changes: list[tuple[str, str, Device | None]],
                 t0: float) -> Result:
        if self.reason:
            if self.rebuild is None:
                raise InputError("Planner.rebuild", None, "a rebuild(scenario) -> Problem "
                                 "callable", f"This problem re-plans by a full solve: "
                                 f"{self.reason}.")
            self.problem, self.scenario = self.rebuild(scen), scen
            return self.solve()
        if changes[0][0] == "delete":
            self._delete(self.index[changes[0][1]])
        else:  # every row is priced and checked before any is changed
            ready = [(kind, name, self._prepare(kind, name, dev)) for kind, name, dev in changes]
            for kind, name, (row, ok, checked) in ready:
                self._apply(kind, name, row, ok, checked)
        self.scenario = scen
        return self._solve(t0)

    def _delete(self, k: int) -> None:
        for arr in ("base_allowed", "allowed"):
            setattr(self, arr, np.delete(getattr(self, arr), k, 0))
        self.opts.delete(k)
        if self.rows is not None:
            self.rows.delete(k)
        self.mem_rows.discard(self.names.pop(k))
        self.index = {n: i for i, n in enumerate(self.names)}

    def _prepare(self, kind: str, name: str, dev: Device | None):
        """One device's re-priced options, allowed options and memory-row flag (no change yet)."""
        assert dev is not None
        if kind == "append" and not (self.base_allowed == self.base_allowed[0]).all():
            raise InputError("join", name, "a problem whose devices share their allowed options",
                             "Pins differ between devices: rebuild the Problem for the new fleet.")
        one = build_options(self.scenario.replace(devices=(dev,)), self.table, self.batches,
                            self.selectable)
        row = self.opts.rows(one)
        checked = self.memory_rows or name in self.mem_rows
        checked = checked and math.isfinite(dev.memory_bytes)  # the builder adds no row for inf
        ok = self.base_allowed[0 if kind == "append" else self.index[name]].copy()
        if checked:
            ok &= row["mem"] - dev.memory_bytes <= _MEM_TOL  # as the structure analysis does
        if not ok.any():
            from splitopt.errors import InfeasibleError

            raise InfeasibleError(f"device {name}: no candidate fits its memory "
                                  f"{dev.memory_bytes:.4g} bytes (the smallest needs "
                                  f"{row['mem'].min():.4g}); nothing was changed")
        return row, ok, checked

    def _apply(self, kind: str, name: str, row: dict[str, np.ndarray], ok: np.ndarray,
               checked: bool) -> None:
        """Write one device's new row into the tables and its class group."""
        if checked:
            self.mem_rows.add(name)
        else:
            self.mem_rows.discard(name)
        if kind == "append":
            k = len(self.names)
            self.base_allowed = np.vstack([self.base_allowed, self.base_allowed[:1]])
            self.allowed = np.vstack([self.allowed, ok[None]])
            self.opts.append(row)
            self.names.append(name)
            self.index[name] = k
        else:
            k = self.index[name]
            self.opts.set(k, row)
            self.allowed[k] = ok
        if self.rows is not None:
            a, d = self._arrays(k)
            if kind == "append":
                self.rows.append(a, d, np.zeros_like(a), ok)
            else:
                self.rows.replace(k, a, d, np.zeros_like(a), ok)

    def _arrays(self, k: int | None = None):
        o = self.opts
        sl = slice(None) if k is None else k
        d = o.up[sl] + o.dn[sl]
        d += o.agg[sl]
        a = np.array(o.a_dev[sl]) if self.shared else o.a_dev[sl] + o.a_srv[sl]
        return a, d

    def _solve(self, t0: float) -> Result:
        t1 = time.perf_counter()
        if self.shared:
            from splitopt.backends import get_backend
            from splitopt.solving.resource import server_minmax

            a, d = self._arrays()
            backend = get_backend(self.backend)
            self.backend_name = backend.name
            out = server_minmax(a, d, self.opts.a_srv, self.allowed, backend)
        else:
            out = bisect_rows(self.rows, bracket=self.bracket)
        if out.options is None:
            from splitopt.errors import InfeasibleError

            raise InfeasibleError(f"no plan: {out.termination} ({self.path} path)")
        if not self.shared:
            self.bracket = (float(out.bound), float(out.objective))
        self.result = self._result(out, t1 - t0, time.perf_counter() - t1)
        return self.result

    def _result(self, out: Result, build_s: float, solve_s: float) -> Result:
        t0 = time.perf_counter()
        w, c = self.weight, self.const
        obj, bnd = w * out.objective + c, w * out.bound + c
        option, beta = out.options, out.beta
        phi = out.phi if self.shared else None
        scen = self.scenario
        costs = price_options(scen, self.opts, self.names, option, beta, phi,
                              float(scen.training.rounds))
        plan = Plan(self.plans.build(self.names, option, beta, phi),
                    rounds=scen.training.rounds, status=out.termination, objective=obj,
                    bound=bnd, method=self.path, predicted=costs)
        # the check re-prices the plan from the scenario, not from the option table solved on
        # (solving.reprice): a wrong table shows up as a mismatch, not as a confirmed optimum
        rep = _independent_prices(scen, plan, bool(self.mem_rows))
        repriced = w * rep.round_latency_s + c
        rows_ = []
        if self.mem_rows:  # the devices with a memory row (none in a fleet of unbounded memory)
            ks = [rep.row[n] for n in self.mem_rows]
            cap = np.array([scen.device(n).memory_bytes for n in self.mem_rows], dtype=float)
            rows_ = [Row("memory (least headroom)",
                         float(np.max(rep.values["memory_bytes"][ks] - cap)), hi=0.0)]
        shares = {"bandwidth": beta} if phi is None else {"bandwidth": beta, "server": phi}
        check = verify(objective=obj, repriced=repriced, bound=bnd, shares=shares, rows=rows_,
                       gap=1e-6 if out.termination == "optimal" else None)
        res = Result(out.termination, self.path, self.backend_name if self.shared else "none", obj,
                     bnd, plan, build_s, solve_s, out.iterations, options=option,
                     price_s=time.perf_counter() - t0)
        return guard_result(res, check)


def _independent_prices(scenario: Scenario, plan: Plan, memory: bool) -> Any:
    """The plan's round latency (and per-device memory), priced from the scenario alone."""
    from splitopt.solving.reprice import FIELDS, Repriced, reprice

    try:
        return reprice(scenario, plan, ("round_s", "memory_bytes") if memory else ("round_s",))
    except ValueError:  # what reprice does not model: the scalar reference prices it
        from splitopt.plan import evaluate

        ev = evaluate(scenario, plan)
        names = list(ev.per_device)
        values = {f: np.array([getattr(ev.per_device[n], f) for n in names], dtype=float)
                  for f in FIELDS}
        return Repriced(names, values, ev.round_latency_s)


def _weight_const(p: Problem) -> tuple[float, float]:
    obj = p.objective
    assert obj is not None
    return obj.maxes[0][0], obj.const


def _incremental_reason(p: Problem) -> tuple[str, Any, str]:
    """(why the problem has no incremental form, or "" when it has one; its structure; path)."""
    from splitopt.solving import choose_path

    st = analyse(p)
    path = choose_path(st)
    return _reason(p, st, path), st, path


def _reason(p: Problem, st: Any, path: str) -> str:
    sc = p.scenario
    if sc.training.schedule != "parallel":
        return "rounds are sequential (the objective is a sum)"
    if path not in ("bisection", "server-share") or st.tied or st.coupling:
        return f"its path is {path!r} (coupled rows or tied cuts)"
    o = p.options
    shared = p.server_share is not None
    A = o.a_dev if shared else o.a_dev + o.a_srv
    same = (np.array_equal(st.A, A) and np.array_equal(st.D, o.d)
            and np.array_equal(st.S, o.a_srv if shared else np.zeros_like(st.S)))
    if not same:
        return "its objective is not w * round latency + c"
    index = {d.name: i for i, d in enumerate(sc.devices)}
    for c in p.constraints:
        name = c.name.split(":", 1)
        k = index.get(name[1]) if len(name) == 2 and name[0] == "memory" else None
        if k is None:
            return f"constraint {c.name or '(unnamed)'} is not a device's memory row"
        lin, qb, qp = per_option(p, c.body, k)
        cap = sc.devices[k].memory_bytes  # the builder writes memory(k) <= cap as mem - cap <= 0
        if (qb.any() or qp.any() or not np.array_equal(lin, o.mem[k] - cap)
                or c.lb > -math.inf or c.ub != 0):
            return f"constraint {c.name} is not memory({name[1]}) <= its memory_bytes"
    if np.any(st.beta_min > 0):
        return "some options need a least bandwidth share"
    return ""


__all__ = ["Planner"]
