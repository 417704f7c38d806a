"""The verified-answer guard for builder Problems (:func:`verify_problem`).

A decoded Plan is mapped back onto the Problem's options (:func:`plan_options`), re-priced with
``evaluate()`` under the Problem's own server flag and compared device by device with the
builder's option costs; the objective and every constraint of the Problem are evaluated on it;
shares are checked against their bounds and sums (:mod:`splitopt.solving.verify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from splitopt.solving.verify import (
    OBJECTIVE_RTOL,
    Check,
    Row,
    Verification,
    _close,
    row_scale,
    verify,
)

#: fleets up to this many devices compare their four re-priced figures in one stacked pass
_STACK_UP_TO = 4096


def plan_options(problem: Any, plan: Any) -> tuple[np.ndarray, list[Check]]:
    """Each device's option index in ``problem`` for the decisions in ``plan``.

    Also returns the checks that the plan covers the problem's devices with allowed options.
    """
    names = [d.name for d in problem.scenario.devices]
    return _plan_options(problem, plan, _plan_devices(plan, names), names)


def _plan_rows(plan: Any, names: list[str]) -> Any:
    """The plan's columns (:class:`~splitopt.plan.DeviceRows`) when they list ``names`` in order.

    Else None (then the DevicePlans are read one by one).
    """
    from splitopt.plan import DeviceRows

    rows = plan.devices
    return rows if isinstance(rows, DeviceRows) and rows.names == names else None


def _plan_devices(plan: Any, names: list[str]) -> list[Any]:
    """The plan's DevicePlan of each device ``names`` lists, in that order (or None)."""
    if [d.device for d in plan.devices] == names:
        return list(plan.devices)
    by_name = {d.device: d for d in plan.devices}
    return [by_name.get(n) for n in names]


def _plan_options(problem: Any, plan: Any, devs: list[Any] | None, names: list[str],
                  rows: Any = None) -> tuple[np.ndarray, list[Check]]:
    """Each device's option, and the checks.

    The plan is read from ``rows`` (its columns, in ``names`` order) when given, else from
    ``devs`` (its DevicePlans in ``names`` order, None: absent).
    """
    o = problem.options
    g, masks = problem.table.graph, problem.table.masks
    n = problem.n_devices
    chosen = np.full(n, -1, dtype=np.int64)
    # one candidate list per distinct decision (a fleet has a few), then allowed per group
    decision: dict[tuple, int] = {}
    # DVFS levels from the plan's own record (model/dvfs.py; 1: the full clock)
    dvfs = getattr(problem, "dvfs", None)
    if rows is not None and dvfs is None:
        missing: list[str] = []
        which = np.array([decision.setdefault(
            (d.selected, d.device_side, d.batch_size, d.mode, 1.0), len(decision))
            for d in rows.decisions], dtype=np.int64)[rows.which]
    else:
        devs = _plan_devices(plan, names) if devs is None else devs
        missing = [nm for nm, d in zip(names, devs) if d is None]
        levels = [1.0] * n if dvfs is None else dvfs.plan_levels(plan, names)
        which = np.array([-1 if d is None else decision.setdefault(
            (d.selected, d.device_side, d.batch_size, d.mode, lv), len(decision))
            for d, lv in zip(devs, levels)], dtype=np.int64)
    checks = [Check("plan covers every device", not missing and len(plan.devices) == n,
                    "" if not missing else f"missing {missing[:5]}")]
    default_batch = problem.scenario.training.batch_size
    bad = np.zeros(n, dtype=bool)
    for (selected, side, batch, mode, level), j in decision.items():
        ks = np.flatnonzero(which == j)
        cands = _candidates(o, g, masks, selected, side,
                            batch if batch is not None else default_batch, mode == "fl")
        if selected:  # the options at the recorded level (none matches an unrecorded one)
            cands = cands[o.level[cands] == level]
        if not len(cands):
            bad[ks] = True
            continue
        ok = (problem.allowed if len(ks) == n else problem.allowed[ks])[:, cands]
        first = np.argmax(ok, axis=1)
        hit = ok[np.arange(len(ks)), first]
        chosen[ks[hit]] = cands[first[hit]]
        bad[ks[~hit]] = True
    culprits = [names[k] for k in np.flatnonzero(bad)[:5].tolist()]
    checks.append(Check("plan uses allowed options", not culprits, "" if not culprits else
                        f"devices {culprits} use an option the problem excludes"))
    return chosen, checks


def _candidates(o: Any, g: Any, masks: np.ndarray, selected: bool, side: Any, batch: int,
                fl: bool) -> np.ndarray:
    """The options (in order) that a plan's decision names: "off", or cut x batch x mode.

    The side is matched to the candidate cuts by its node mask; FL's side is the whole graph,
    whatever its position.
    """
    if not selected:
        return np.flatnonzero(o.cut < 0)
    try:
        mask = g.mask(side)
    except Exception:  # noqa: BLE001 - a node the graph does not have: no option matches
        return np.zeros(0, dtype=np.int64)
    rows = (masks == mask).all(axis=1)
    on = o.cut >= 0
    hit = on & (o.batch == int(batch))
    same = hit & rows[np.where(on, o.cut, 0)] & (o.is_fl == fl)
    found = np.flatnonzero(same)
    if fl:  # then every other FL option at this batch size
        found = np.concatenate([found, np.flatnonzero(hit & o.is_fl & ~same)])
    return found.astype(np.int64)


def verify_problem(problem: Any, plan: Any, *, objective: float | None, bound: float | None,
                   values: Mapping[str, Any] | None = None, options: np.ndarray | None = None,
                   gap: float | None = None, costs: Any = None) -> Verification:
    """The guard for a builder :class:`~splitopt.model.problem.Problem` and a decoded Plan.

    Re-prices the plan with ``evaluate()`` (``costs``: what ``evaluate(problem.pricing_scenario(),
    plan)`` returned just now, when the caller has it; else computed here) and checks that
    the builder's option costs at the plan's shares match it device by device (round time, memory,
    energy, bytes); evaluates the objective and every constraint of the Problem on the plan; checks
    shares against their bounds and sums; and ``bound`` against ``objective`` (user sense), within
    ``gap`` when given (pass it for answers that claim optimality).
    """
    from splitopt.plan import evaluate

    n, o = problem.n_devices, problem.options
    every = problem.scenario.device_names()
    rows = _plan_rows(plan, every)
    devs = None if rows is not None else _plan_devices(plan, every)
    opt, checks = _plan_options(problem, plan, devs, every, rows)
    if options is not None and np.any(opt >= 0):
        given = np.asarray(options)
        # (devices on no option fail "allowed options"; options of equal cost pass)
        ks = np.flatnonzero((opt >= 0) & (given != opt))
        given = given[ks]
        costs_same = not len(ks) or np.all(np.isclose(o.a_dev[ks, given], o.a_dev[ks, opt[ks]]))
        checks.append(Check("plan matches the solver's options", bool(costs_same),
                            "" if costs_same else "the decoded plan differs from the solution"))
    if np.any(opt < 0):
        return Verification(tuple(checks), None)
    if rows is not None:
        beta = np.array(rows.beta)
        phi = np.ones(n) if rows.phi is None else np.array(rows.phi)
    else:
        assert devs is not None
        beta = np.array([d.bandwidth_share for d in devs], dtype=float)
        phi = np.array([1.0 if d.server_share is None else d.server_share for d in devs],
                       dtype=float)
    x = np.zeros(problem.n_cols)
    x[np.arange(n) * problem.n_options + opt] = 1.0
    x[problem.bandwidth.offset:problem.bandwidth.offset + n] = beta
    if problem.server_share is not None:
        x[problem.server_share.offset:problem.server_share.offset + n] = phi
    for v in problem.extras:
        got = None if values is None else values.get(v.name)
        if got is None or np.size(got) != v.size:
            checks.append(Check(f"values of {v.name}", False, "the solver returned no values"))
            return Verification(tuple(checks), None)
        x[v.offset:v.offset + v.size] = np.asarray(got, dtype=float)
    # recomputed layers and relay nodes: re-priced from the plan's own record
    checks += [Check(*c) for c in problem.fill_from_plan(plan, x)]
    shares = np.vstack([beta, phi if problem.server_share is not None else np.ones(n)])
    sign = -1.0 if problem.sense == "max" else 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        repriced = sign * problem.objective.value(x, shares, problem.n_options)
        rows = [Row(c.name or f"constraint {i}", c.body.value(x, shares, problem.n_options),
                    c.lb, c.ub, row_scale(c)) for i, c in enumerate(problem.constraints)]
    extra_cols = np.arange(problem.extra_offset, problem.n_cols)
    xe, lo, hi = x[extra_cols], problem.col_lb[extra_cols], problem.col_ub[extra_cols]
    rows += [Row(f"bounds of column {int(c)}", float(v), float(a), float(b))
             for c, v, a, b in zip(extra_cols, xe, lo, hi) if not a <= v <= b]
    for var in problem.extras:
        if var.integer:
            vals = x[var.offset:var.offset + var.size]
            ok = bool(np.all(np.abs(vals - np.round(vals)) <= 1e-6))
            checks.append(Check(f"{var.name} integer", ok, "" if ok else f"values {vals[:4]}"))
    sel = ~o.is_off[opt]
    band = sel & _holds_band(problem, opt, beta)
    share_map = {"bandwidth": beta[band]}
    floors = {"bandwidth": problem.col_lb[problem.bandwidth.offset:][:n][band]}
    ceils = {"bandwidth": problem.col_ub[problem.bandwidth.offset:][:n][band]}
    if problem.server_share is not None:
        off = problem.server_share.offset
        share_map["server"] = phi[sel]
        floors["server"], ceils["server"] = problem.col_lb[off:off + n][sel], \
            problem.col_ub[off:off + n][sel]
    checks += _evaluate_checks(problem, plan, opt, beta, phi, sel, evaluate, costs, every)
    return verify(objective=objective, repriced=repriced, bound=bound, sense=problem.sense,
                  rows=rows, shares=share_map, floors=floors, ceilings=ceils, extra=checks,
                  gap=gap)


def _holds_band(problem: Any, opt: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Devices whose bandwidth share counts in the band (``costs.check_bandwidth``).

    Split devices taking turns (sequential schedule or server) count once, at the largest share.
    """
    from splitopt.costs import takes_turns

    sc = problem.pricing_scenario()
    split = ~problem.options.is_fl[opt]
    if not takes_turns(sc.training.schedule, getattr(sc.server, "serving", "")) \
            or not split.any():
        return np.ones(len(opt), dtype=bool)
    held = ~split
    held[np.flatnonzero(split)[np.argmax(beta[split])]] = True
    return held


def _evaluate_checks(problem: Any, plan: Any, opt: np.ndarray, beta: np.ndarray, phi: np.ndarray,
                     sel: np.ndarray, evaluate: Any, costs: Any = None,
                     every: list[str] | None = None) -> list[Check]:
    """The independent re-pricing against the builder's option costs at the plan's shares.

    ``evaluate()`` up to ``reprice.SCALAR_UP_TO`` devices (or when ``costs`` from it are given),
    above that the vectorised :func:`splitopt.solving.reprice.reprice`; neither reads the option
    table.
    """
    from splitopt.plan import PlanCosts
    from splitopt.solving.reprice import SCALAR_UP_TO, Repriced, reprice

    name = "evaluate()"
    try:
        if getattr(problem, "dvfs", None) is not None:  # at the plan's recorded DVFS levels
            costs = problem.dvfs.reprice(plan, costs if isinstance(costs, PlanCosts) else
                                         evaluate(problem.pricing_scenario(), plan))
        if costs is None and problem.n_devices > SCALAR_UP_TO:
            try:
                costs, name = reprice(problem.pricing_scenario(), plan), "re-pricing"
            except ValueError:
                costs = None
        if costs is None:
            costs = evaluate(problem.pricing_scenario(), plan)
    except Exception as err:  # noqa: BLE001 - any refusal of the reference model is a failed check
        return [Check(name, False, f"{type(err).__name__}: {err}")]
    from splitopt.pricing import flat_index, pick

    o, flat = problem.options, flat_index(np.arange(problem.n_devices), opt, problem.n_options)
    f = phi if problem.server_share is not None else np.ones_like(phi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ours = {"round_s": pick(o.a_dev, flat) + pick(o.d, flat) / beta + pick(o.a_srv, flat) / f,
                "memory_bytes": pick(o.mem, flat), "comm_bytes": pick(o.comm, flat),
                "energy_j": pick(o.e_comp, flat) + pick(o.e_tx, flat) / beta}
    ks = np.flatnonzero(sel)
    every = every if every is not None else [d.name for d in problem.scenario.devices]
    names = every if len(ks) == len(every) else [every[k] for k in ks.tolist()]
    bad: list[str] = []
    if isinstance(costs, Repriced):
        same = costs.names == names
        rows = (np.arange(len(names)) if same else
                np.array([costs.row.get(n, -1) for n in names], dtype=np.int64))
        if (rows < 0).any():
            bad += [f"{n}: not priced" for n in np.array(names)[rows < 0][:3]]
        got = rows >= 0
        shown = None
        # the four figures compared together on small fleets (a few numpy calls, not 4 x 13),
        # one at a time on large ones (N-sized temporaries only)
        keys = list(ours)
        batches = [keys] if len(names) <= _STACK_UP_TO else [[k] for k in keys]
        for batch in batches:
            a, b = (np.stack([d[k] for k in batch]) if len(batch) > 1 else d[batch[0]][None]
                    for d in (ours, costs.values))
            if not (same and len(ks) == a.shape[1]):  # (else both in device order already)
                a, b = a[:, ks[got]], b[:, rows[got]]
            with np.errstate(invalid="ignore"):
                scale = np.maximum(np.abs(a), np.abs(b))
                # off: not finite, or apart by more than the tolerance (two zeros agree)
                off = ~(np.abs(a - b) <= OBJECTIVE_RTOL * np.maximum(scale, 1e-12))
                off |= ~np.isfinite(scale)
            if not off.any():
                continue
            shown = np.array(names)[got] if shown is None else shown
            for i, key in enumerate(batch):
                o_ = off[i]
                bad += [f"{n}.{key}: re-priced {y:.12g}, option table {x:.12g}" for n, x, y
                        in zip(shown[o_][:3], a[i][o_][:3], b[i][o_][:3])]
    else:
        for k, n in zip(ks, names):
            ph = costs.per_device.get(n)
            if ph is None:
                bad.append(f"{n}: not priced")
                continue
            for key, arr in ours.items():
                if not _close(float(arr[k]), float(getattr(ph, key)), OBJECTIVE_RTOL) and not (
                        arr[k] == 0 and getattr(ph, key) == 0):
                    bad.append(f"{n}.{key}: evaluate() {getattr(ph, key):.12g}, option table "
                               f"{arr[k]:.12g}")
    if plan.predicted is not None and not _close(plan.predicted.round_latency_s,
                                                  costs.round_latency_s, OBJECTIVE_RTOL) and not (
            costs.round_latency_s == plan.predicted.round_latency_s):
        bad.append(f"plan.predicted {plan.predicted.round_latency_s:.12g} is stale")
    return [Check(f"{name} agrees with the problem's costs", not bad, "; ".join(bad[:3]))]
