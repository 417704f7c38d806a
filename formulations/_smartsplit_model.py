"""SmartSplit's data: the instance, per-device pricing, choices and results.

The model (equations in :mod:`splitopt.formulations.smartsplit`) lives here so that the exact MILP,
the baselines and the brute-force oracle all price a plan with the same functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.costs import CutTable, round_terms
from splitopt.errors import InputError
from splitopt.plan import DevicePlan, Plan
from splitopt.scenario import Scenario
from splitopt.solving.verify import Row, checked_status, solver_agrees, verify

OBJECTIVES = ("latency", "participation")


@dataclass(frozen=True)
class Instance:
    """Per-device, per-cut and per-layer numbers of one SmartSplit round (arrays, SI units).

    ``base[k, c]`` is device k's round time at cut c without recomputation (server at full speed),
    ``srv[k, c]`` its server-side seconds, ``mem[k, c]`` its memory keeping every activation,
    ``fwd[k, v]`` the seconds one extra forward of layer v costs per round, ``act[v]`` the bytes its
    activation holds (batch included). Cut c keeps layers 0..c on the device.
    """

    scenario: Scenario
    base: np.ndarray
    srv: np.ndarray
    mem: np.ndarray
    fwd: np.ndarray
    act: np.ndarray
    budget: np.ndarray
    beta: np.ndarray
    data: np.ndarray
    coverage: float
    min_devices: int
    max_devices: int
    deadline: float | None
    recompute: bool

    @property
    def n(self) -> int:
        """Number of devices."""
        return self.base.shape[0]

    @property
    def n_cuts(self) -> int:
        """Number of cuts (prefix sizes 1..L-1)."""
        return self.base.shape[1]


def instance(scenario: Scenario, *, budgets: Sequence[float] | None = None,
             beta: Sequence[float] | None = None, channels: int | None = None,
             data: np.ndarray | None = None, coverage: float = 0.0,
             min_devices: int | None = None, deadline: float | None = None,
             recompute: bool = True) -> Instance:
    """Validate the inputs and precompute the cost arrays (the scenario is not modified).

    ``budgets`` default to each device's ``memory_bytes``; ``beta`` to equal shares 1/N, or with
    ``channels=K`` (K orthogonal sub-channels) to 1/K each with at most K devices selected;
    ``data`` is an (N, J) matrix of samples per class (default one unit per device);
    ``min_devices`` defaults to every device when there is no deadline, else 0.
    """
    g, n = scenario.graph, scenario.n_devices
    max_dev = n
    if channels is not None:
        if beta is not None or not (isinstance(channels, int) and 1 <= channels):
            raise InputError("channels", channels, "an integer >= 1 (and no beta)")
        beta, max_dev = [1.0 / channels] * n, min(n, channels)
    if not g.is_chain:
        raise InputError("scenario.graph", g.name or "graph", "a chain",
                         "Contract the DAG into a chain of blocks with graph.contract().")
    bud = _vector("budgets", budgets, n, [d.memory_bytes for d in scenario.devices])
    bet = _vector("beta", beta, n, [1.0 / n] * n)
    if np.sort(bet)[::-1][:max_dev].sum() > 1 + 1e-9:
        raise InputError("beta", round(float(bet.sum()), 6), "shares summing to at most 1")
    dat = np.ones((n, 1)) if data is None else np.asarray(data, dtype=float).reshape(n, -1)
    if not (np.all(np.isfinite(dat)) and np.all(dat >= 0)):
        raise InputError("data", "negative or non-finite counts", "counts >= 0 per device x class")
    if not 0 <= coverage <= 1:
        raise InputError("coverage", coverage, "a fraction in [0, 1]")
    k_min = (max_dev if deadline is None else 0) if min_devices is None else int(min_devices)
    if not 0 <= k_min <= max_dev:
        raise InputError("min_devices", min_devices, f"an integer in [0, {n}]")
    if deadline is not None and not deadline > 0:
        raise InputError("deadline", deadline, "seconds > 0, or None")
    tr, table = scenario.training, CutTable.chain(g)
    t = round_terms(scenario.devices, scenario.server, scenario.channel, tr, table)
    per_round = tr.batch_size * tr.local_iters
    fwd = np.stack([g.fwd_seconds(d.cls, d.flops) for d in scenario.devices]) * per_round
    return Instance(scenario, t.a_dev + t.a_srv + t.d / bet[:, None], t.a_srv, t.mem, fwd,
                    g.act_bytes * tr.batch_size, bud, bet, dat, float(coverage), k_min, max_dev,
                    deadline, bool(recompute))


def _vector(field: str, given: Sequence[float] | None, n: int, default: list[float]) -> np.ndarray:
    arr = np.asarray(default if given is None else given, dtype=float)
    if arr.shape != (n,) or np.any(np.isnan(arr)) or np.any(arr <= 0):
        raise InputError(field, given, f"{n} numbers > 0 (one per device)")
    return arr


# ---------------------------------------------------------------------------- pricing
def device_cost(inst: Instance, k: int, cut: int, dropped: Sequence[int]) -> tuple[float, float]:
    """(round seconds, memory bytes) of device k at ``cut`` with layers ``dropped`` recomputed."""
    drop = sorted(set(int(v) for v in dropped))
    if any(v < 1 or v > cut for v in drop):
        raise InputError("dropped", drop, f"device-side layers 1..{cut} (the input stays)")
    time = inst.base[k, cut] + inst.fwd[k, drop].sum()
    kept = np.ones(cut + 1, dtype=bool)
    kept[drop] = False
    acts = inst.act[: cut + 1]
    peak = float(acts[kept].sum())
    for run in _runs(drop):
        peak = max(peak, float(acts[: run[0]][kept[: run[0]]].sum() + acts[run].sum()))
    mem = inst.mem[k, cut] - float(acts.sum()) + peak
    return float(time), float(mem)


def _runs(drop: list[int]) -> list[list[int]]:
    """Maximal runs of consecutive layer indices."""
    runs: list[list[int]] = []
    for v in drop:
        if runs and runs[-1][-1] == v - 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


@dataclass(frozen=True)
class Choice:
    """One device's decision: cut index and recomputed layers (None: not selected)."""

    cut: int
    dropped: tuple[int, ...] = ()


def round_rows(inst: Instance, choices: Sequence[Choice | None]) -> tuple[float, float, list[Row]]:
    """(round seconds, selected data, every constraint as a Row) of a full decision."""
    times, srv, rows = [], 0.0, []
    sel = np.array([ch is not None for ch in choices])
    for k, ch in enumerate(choices):
        if ch is None:
            continue
        t, m = device_cost(inst, k, ch.cut, ch.dropped)
        rows.append(Row(f"memory:d{k}", m, hi=float(inst.budget[k])))
        if not inst.recompute:
            rows.append(Row(f"no recomputation:d{k}", float(len(ch.dropped)), hi=0.0))
        times.append(t)
        srv += inst.srv[k, ch.cut]
    total = inst.data.sum(axis=0)
    got = inst.data[sel].sum(axis=0)
    rows += [Row(f"coverage{j}", float(got[j]), lo=float(inst.coverage * total[j]))
             for j in range(len(total))]
    rows.append(Row("devices", float(sel.sum()), float(inst.min_devices), float(inst.max_devices)))
    T = max([srv, *times]) if times else 0.0
    if inst.deadline is not None:
        rows.append(Row("deadline", T, hi=float(inst.deadline)))
    return T, float(inst.data[sel].sum()), rows


def round_value(inst: Instance, choices: Sequence[Choice | None]) -> tuple[float, float, bool]:
    """(round seconds, selected data, feasible) of a full decision under the model above."""
    T, data, rows = round_rows(inst, choices)
    ok = all(r.lo - 1e-9 * max(1.0, abs(r.lo)) <= r.value <= r.hi + 1e-9 * max(1.0, abs(r.hi))
             for r in rows)
    return T, data, ok


# ---------------------------------------------------------------------------- solving
def round_plan(inst: Instance, choices: Sequence[Choice | None], status: str, round_s: float,
               bound: float | None, method: str, selected_data: float) -> Plan:
    """The round as a splitopt Plan (recomputed layers in ``meta['recompute']``)."""
    sc = inst.scenario
    sets = CutTable.chain(sc.graph).sets()
    names = sc.graph.names
    devs, rec = [], {}
    for k, (d, ch) in enumerate(zip(sc.devices, choices, strict=True)):
        side = sets[ch.cut] if ch is not None else sets[0]
        devs.append(DevicePlan(d.name, side, float(inst.beta[k]), selected=ch is not None))
        if ch is not None and ch.dropped:
            rec[d.name] = [names[v] for v in ch.dropped]
    return Plan(tuple(devs), rounds=sc.training.rounds, status=status, objective=round_s,
                bound=bound, method=method,
                meta={"recompute": rec, "selected_data": selected_data})


def _finish(inst: Instance, choices: list[Choice | None], status: str, bound: float | None,
            data_bound: float | None, method: str, build_s: float, solve_s: float,
            claimed: float | None = None, gap: float | None = None) -> Result:
    """The Result of a decision, through the verified-answer guard (splitopt.solving.verify).

    The one :class:`splitopt.backends.Result`: ``objective`` is the round time re-priced by
    :func:`round_value` (also ``round_s``), ``bound`` a proven lower bound on the least round
    time (given the selected data, for ``participation``), ``plan`` the round as a Plan; extras:
    ``choices`` (per device, None = not selected), ``selected_data``, ``data_bound`` (a proven
    upper bound on the selected data), ``participants``, ``method``. ``claimed`` is the
    solver's own value (the MILP's T), checked to agree; ``gap`` the relative gap an "optimal"
    answer promised.
    """
    T, data, rows = round_rows(inst, choices)
    if data_bound is not None:
        rows.append(Row("selected data within its bound", data, hi=data_bound))
    check = verify(objective=T, repriced=T, bound=bound, rows=rows,
                   extra=[solver_agrees(claimed, T)], gap=gap if status == "optimal" else None)
    status = checked_status(status, check)
    return Result(status, path=method, backend="highs" if "milp" in method else "none",
                  objective=T, bound=bound,
                  plan=round_plan(inst, choices, status, T, bound, method, data),
                  build_s=build_s, solve_s=solve_s, verification=check,
                  extras={"choices": tuple(choices), "round_s": T, "selected_data": data,
                          "data_bound": data_bound, "method": method,
                          "participants": sum(ch is not None for ch in choices)})


def _patterns(inst: Instance, k: int):
    """Every (cut, dropped layers) of device k (without recomputation: nothing dropped)."""
    for c in range(inst.n_cuts):
        layers = range(1, c + 1)
        if not (inst.recompute and np.isfinite(inst.budget[k])):
            yield c, ()
            continue
        for r in range(len(layers) + 1):
            yield from ((c, d) for d in itertools.combinations(layers, r))


# ---------------------------------------------------------------------------- the builder's Problem
def problem(inst: Instance, *, phase: str = "latency", min_data: float | None = None) -> Any:
    """SmartSplit as a public-builder :class:`~splitopt.model.Problem` (objective set).

    Options: every chain cut or "off" (``selection``); shares fixed to ``inst.beta``; the server
    at full speed; per-layer keep/recompute columns (``recompute=inst.recompute``); memory
    budgets, device counts, coverage rows (``p.selected.covers``), the deadline, and the round
    ``T = max(max_k T_k, sum_k server seconds)``. ``phase="participation"`` maximises the
    selected data; ``"latency"`` minimises T (with the selected data >= ``min_data`` if given).
    """
    from splitopt.model import Problem, maximum, total

    if phase not in OBJECTIVES:
        raise InputError("phase", phase, f"one of {OBJECTIVES}")
    sc, n = inst.scenario, inst.n
    p = Problem(sc, selection=True, server_share=False, recompute=inst.recompute)
    if inst.beta.sum() <= 1 + 1e-12:
        p.bandwidth.fix(None, [float(b) for b in inst.beta])
    else:  # sub-channels: a selected device takes its whole channel, an idle one none
        for k in range(n):
            p.bandwidth.bound(k, 0.0, float(inst.beta[k]))
    for k in range(n):
        if np.isfinite(inst.budget[k]):
            # in units of the budget: byte-sized rows (1e7) at HiGHS's 1e-9 tolerance were once
            # declared infeasible by its presolve although a plan existed
            p.add(p.memory(k) / float(inst.budget[k]) <= 1.0,
                  name=f"memory:{sc.devices[k].name}")
    count = p.selected.total()
    p.add([count >= inst.min_devices, count <= inst.max_devices], name="devices")
    p.add(p.selected.covers(inst.data, inst.coverage), name="coverage")
    server = total(p.phase(k, "server_compute") for k in range(n))
    round_s = maximum([p.round_latency(), server])
    if inst.deadline is not None:
        p.add(round_s <= float(inst.deadline), name="deadline")
    weight = inst.data.sum(axis=1)
    if phase == "participation":
        p.maximize(p.selected.total(weight))
    else:
        if min_data is not None:
            p.add(p.selected.total(weight) >= float(min_data), name="min_data")
        p.minimize(round_s)
    return p


def choices_of(inst: Instance, plan: Plan) -> list[Choice | None]:
    """Each device's (cut, recomputed layers) in a plan (None: not selected)."""
    sets = CutTable.chain(inst.scenario.graph).sets()
    index = inst.scenario.graph.index
    rec = plan.meta.get("recompute", {})
    out: list[Choice | None] = []
    for d in plan.devices:
        if not d.selected:
            out.append(None)
            continue
        out.append(Choice(sets.index(frozenset(d.device_side)),
                          tuple(sorted(index[v] for v in rec.get(d.device, ())))))
    return out
