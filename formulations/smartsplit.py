"""SmartSplit: device selection, cuts and cost-aware recomputation under device memory budgets.

Paper: C. Tian et al., "Breaking the Memory Wall for Heterogeneous Federated Learning via Model
Splitting", arXiv:2410.11577 (https://arxiv.org/abs/2410.11577).

Each round, choose which devices take part (``s_k``), each one's cut (the first ``c+1`` layers of
a chain on the device) and which device-side activations it keeps; a dropped run of layers
``[i, j)`` is recomputed in the backward pass (one extra forward of the run; the run's activations
live only while its backward runs, as with ``torch.utils.checkpoint``: by then the layers after
the run have finished their backward and freed theirs). Under the reference cost model
(docs/cost_model.md) with a fixed bandwidth share ``beta_k`` and ``A = a_dev + a_srv``:

    T_k  = A[k,c] + d[k,c] / beta_k + sum_{runs [i,j)} b I sum_{v in [i,j)} fwd_s_k(v)
    M_k  = (2+o) W(c) + ws_k + b max( sum_{kept v} act(v),               (end of forward)
             max_{runs [i,j)} [ sum_{kept v < i} act(v) + sum_{v in [i,j)} act(v) ] )
         <= M_k^max                                           (max: while a run is rematerialised)
    T      >= T_k  (selected k),   T >= sum_k s_k a_srv[k,c_k]   (one server serves every device)
    sum_k n_kj s_k >= theta sum_k n_kj   for every class j (data coverage),  sum_k s_k >= K_min

``objective="latency"`` minimises T; ``"participation"`` maximises the selected data
``sum_k n_k s_k`` within ``T <= deadline`` and then minimises T among the maximisers (lexicographic,
two exact solves). The registered formulation states this on the public builder
(:func:`problem`, :func:`solve_builder`: per-layer keep/recompute columns of
:mod:`splitopt.model.recompute`, coverage rows) and solves it with :func:`splitopt.solving.solve`.
The module's own exact method, kept as a baseline and test oracle (:func:`solve`), is a tighter
path MILP: the keep/recompute choice is a path per device through positions ``1..L-1`` in two
states (after a kept layer / after a recomputed run; a run may only start after a kept layer, so
runs are maximal): arcs "keep layer p", "recompute run [i,j)" and "stop: cut here", built with
:class:`splitopt.compile.columns.MilpBuilder` and solved by the builder's HiGHS backend.
Baseline: :func:`greedy` (each device's fastest cut that fits, dropping the activation with the
most bytes per extra second until it fits; devices admitted fastest-first while the deadline
holds). :func:`brute_force` enumerates everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from splitopt.formulations._smartsplit_model import (
    OBJECTIVES,
    Choice,
    Instance,
    Result,
    _finish,
    _patterns,
    choices_of,
    device_cost,
    instance,
    problem,
    round_rows,
    round_value,
)

from splitopt.errors import InfeasibleError, InputError, SolverError
from splitopt.solving.verify import MILP_GAP

__all__ = ["OBJECTIVES", "Choice", "Instance", "Result", "brute_force", "build", "device_cost",
           "greedy", "instance", "problem", "round_value", "solve", "solve_builder",
           "solve_rounds"]


# ---------------------------------------------------------------------------- the public builder
def solve_builder(inst: Instance, *, objective: str = "latency", time_limit: float | None = None,
                  backend: str | None = None) -> Result:
    """Solve one round exactly through the public builder (:func:`splitopt.solving.solve`).

    On :func:`problem`; ``participation`` is two solves: the most data, then the least T with it.
    The builder's Result (its guard passed or it says ``unverified``) with SmartSplit's findings
    as extras: ``choices``, ``round_s``, ``selected_data``, ``data_bound``, ``participants``.
    """
    import time as _time

    from splitopt.solving import solve as solve_problem

    if objective not in OBJECTIVES:
        raise InputError("objective", objective, f"one of {OBJECTIVES}")
    end = None if time_limit is None else _time.perf_counter() + time_limit

    def left() -> float | None:
        return None if end is None else max(end - _time.perf_counter(), 1e-3)

    min_data = data_bound = None
    first = "optimal"
    if objective == "participation":
        most = solve_problem(problem(inst, phase="participation"), backend=backend,
                             time_limit=left())
        if most.plan is None:
            raise SolverError(f"SmartSplit: the solver stopped ({most.termination}) before "
                              "finding a plan; give a longer time_limit")
        first, data_bound = most.termination, most.bound
        min_data = most.objective - 1e-9 * max(1.0, abs(most.objective))
    res = solve_problem(problem(inst, min_data=min_data), backend=backend, time_limit=left())
    if res.plan is None:
        raise SolverError(f"SmartSplit: the solver stopped ({res.termination}) before finding a "
                          f"plan (proven bound {res.bound}); give a longer time_limit")
    choices = choices_of(inst, res.plan)
    T, data, _ = round_rows(inst, choices)
    termination = res.termination if first == "optimal" else first
    return replace(res, termination=termination, extras={
        **res.extras, "choices": tuple(choices), "round_s": T, "selected_data": data,
        "data_bound": data_bound, "participants": sum(ch is not None for ch in choices),
        "method": f"smartsplit-builder-{objective}"})


# ---------------------------------------------------------------------------- the MILP
@dataclass
class _Arcs:
    """One device's path columns and its time / server expressions ({column: coefficient})."""

    stop: dict[int, int]                        # column -> cut index
    rec: dict[int, tuple[int, int]]             # column -> dropped run [i, j)
    keep: dict[int, int]                        # column -> kept layer
    key: dict[tuple, int]                       # ("keep"|"stop", q, state) or ("rec", i, j)
    time: dict[int, float]
    server: dict[int, float]


def _device_arcs(m, inst: Instance, k: int, s_col: int, cap_col: int | None = None) -> _Arcs:
    """Add device k's keep / recompute / stop arcs, flow rows and memory rows.

    The path starts at (1, K) with supply ``s_col``. Memory is bounded by the budget, or by the
    column ``cap_col`` when given (to find the least memory).
    """
    L = inst.n_cuts + 1
    rec_ok = inst.recompute and (cap_col is not None or bool(np.isfinite(inst.budget[k])))
    cfwd = np.concatenate([[0.0], np.cumsum(inst.fwd[k])])
    inflow: dict[tuple[int, str], dict[int, float]] = {(1, "K"): {s_col: 1.0}}
    outflow: dict[tuple[int, str], dict[int, float]] = {}
    arcs = _Arcs({}, {}, {}, {}, {}, {})

    def arc(src: tuple[int, str], dst: tuple[int, str] | None, name: str) -> int:
        col = int(m.add_vars(1, ub=1, integer=True, name=f"{name}.d{k}")[0])
        arcs.key[_arc_key(name)] = col
        outflow.setdefault(src, {})[col] = 1.0
        if dst is not None:
            inflow.setdefault(dst, {})[col] = 1.0
        return col

    for q in range(1, L):
        for st in ("K", "R") if rec_ok and q > 1 else ("K",):
            if q <= L - 2:
                arcs.keep[arc((q, st), (q + 1, "K"), f"keep{q}{st}")] = q
            arcs.stop[arc((q, st), None, f"stop{q}{st}")] = q - 1
        if rec_ok:
            for j in range(q + 1, L):
                arcs.rec[arc((q, "K"), (j, "R"), f"rec{q}_{j}")] = (q, j)
    for node in set(inflow) | set(outflow):
        coefs = dict(outflow.get(node, {}))
        for col, v in inflow.get(node, {}).items():
            coefs[col] = coefs.get(col, 0.0) - v
        m.add_row(coefs, lb=0.0, ub=0.0, name=f"flow{node}.d{k}")
    for col, c in arcs.stop.items():
        arcs.time[col], arcs.server[col] = inst.base[k, c], inst.srv[k, c]
    for col, (i, j) in arcs.rec.items():
        arcs.time[col] = cfwd[j] - cfwd[i]
    _memory_rows(m, inst, k, s_col, arcs, cap_col)
    return arcs


def _arc_key(name: str) -> tuple:
    """("keep", q, st) from "keep{q}{st}", ("stop", q, st), ("rec", i, j) from "rec{i}_{j}"."""
    if name.startswith("rec"):
        i, j = name[3:].split("_")
        return ("rec", int(i), int(j))
    kind = name[:4]
    return (kind, int(name[4:-1]), name[-1])


def _start(n_cols: int, s: np.ndarray, T: int, arcs: list[_Arcs], inst: Instance,
           choices: Sequence[Choice | None]) -> np.ndarray:
    """The MILP point of a known plan (a MIP start, e.g. the greedy's)."""
    x = np.zeros(n_cols)
    x[T] = round_value(inst, choices)[0]
    for k, ch in enumerate(choices):
        if ch is None:
            continue
        x[s[k]], q, st, drop = 1.0, 1, "K", set(ch.dropped)
        while q <= ch.cut:
            if q in drop:
                j = q
                while j in drop:
                    j += 1
                x[arcs[k].key[("rec", q, j)]], q, st = 1.0, j, "R"
            else:
                x[arcs[k].key[("keep", q, st)]], q, st = 1.0, q + 1, "K"
        x[arcs[k].key[("stop", q, st)]] = 1.0
    return x


def _memory_rows(m, inst: Instance, k: int, s_col: int, arcs: _Arcs, cap_col: int | None) -> None:
    """End-of-forward memory, and one big-M row per run: memory while it is rematerialised."""
    if cap_col is None and not np.isfinite(inst.budget[k]):
        return
    cact = np.concatenate([[0.0], np.cumsum(inst.act)])
    fixed = inst.mem[k] - cact[1:inst.n_cuts + 1]  # weights, optimiser state, workspace at each cut
    scale = float(inst.budget[k]) if cap_col is None else float(inst.mem[k].max())
    rhs = 1.0 if cap_col is None else 0.0
    big = (fixed.max() + cact[-1]) / scale

    def row(coefs: dict[int, float], rec: int | None, name: str) -> None:
        coefs = {c: v / scale for c, v in coefs.items()}
        if cap_col is not None:
            coefs[cap_col] = -1.0 / scale
        if rec is not None:
            coefs[rec] = coefs.get(rec, 0.0) + big
        m.add_row(coefs, ub=rhs + (big if rec is not None else 0.0), name=name)

    end = {col: float(inst.mem[k, c]) for col, c in arcs.stop.items()}
    end.update({col: -(cact[j] - cact[i]) for col, (i, j) in arcs.rec.items()})
    row(end, None, f"memory.d{k}")
    for rcol, (i, j) in arcs.rec.items():
        coefs = {col: float(fixed[c]) for col, c in arcs.stop.items()}
        coefs[s_col] = float(inst.act[0])
        coefs.update({col: float(inst.act[q]) for col, q in arcs.keep.items() if q < i})
        coefs[rcol] = cact[j] - cact[i]
        row(coefs, rcol, f"remat{i}_{j}.d{k}")


def build(inst: Instance, *, phase: str = "latency", min_data: float | None = None):
    """The MILP of one round: returns (MilpBuilder, selection columns, T column, per-device arcs).

    ``phase="participation"`` maximises the selected data (as the minimisation of its negative);
    ``"latency"`` minimises T, with ``min_data`` a lower bound on the selected data if given.
    """
    from splitopt.compile.columns import MilpBuilder

    m = MilpBuilder()
    n = inst.n
    s = m.add_vars(n, ub=1, integer=True, name="select")
    T = int(m.add_vars(1, ub=np.inf if inst.deadline is None else inst.deadline, name="T")[0])
    arcs = [_device_arcs(m, inst, k, int(s[k])) for k in range(n)]
    server: dict[int, float] = {T: -1.0}
    for k, a in enumerate(arcs):
        m.add_row({**a.time, T: -1.0}, ub=0.0, name=f"time.d{k}")
        server.update(a.server)
    m.add_row(server, ub=0.0, name="server")
    m.add_terms(s, np.ones(n), lb=inst.min_devices, ub=inst.max_devices, name="devices")
    need = inst.coverage * inst.data.sum(axis=0)
    for j in np.flatnonzero(need > 0):
        m.add_terms(s, inst.data[:, j], lb=need[j] * (1 - 1e-12), name=f"coverage{j}")
    weight = inst.data.sum(axis=1)
    if phase == "participation":
        m.minimize({int(s[k]): -weight[k] for k in range(n)})
    else:
        if min_data is not None:
            m.add_terms(s, weight, lb=min_data, name="min_data")
        m.minimize({T: 1.0})
    return m, s, T, arcs


def _decode(x: np.ndarray, s: np.ndarray, arcs: list[_Arcs]) -> list[Choice | None]:
    out: list[Choice | None] = []
    for k, a in enumerate(arcs):
        if x[s[k]] < 0.5:
            out.append(None)
            continue
        cut = next(c for col, c in a.stop.items() if x[col] > 0.5)
        dropped = [v for col, (i, j) in a.rec.items() if x[col] > 0.5 for v in range(i, j)]
        out.append(Choice(cut, tuple(sorted(dropped))))
    return out


def _solve_milp(inst: Instance, phase: str, min_data: float | None, time_limit: float | None,
                workers: int, engine: str, address: str | None,
                hint: Sequence[Choice | None] | None = None):
    import time as _time

    from splitopt.parallel import solve_split, split_by_choice

    t0 = _time.perf_counter()
    m, s, T, arcs = build(inst, phase=phase, min_data=min_data)
    prog = m.program()
    build_s = _time.perf_counter() - t0
    subs = None
    if workers > 1:  # partition the search space by the cut of the device with most options
        opts = [[c for c, cut in arcs[0].stop.items() if cut == q] for q in range(inst.n_cuts)]
        subs = split_by_choice([o for o in opts if o], parts=2 * workers, none_col=int(s[0]))
    start = None
    if hint is not None and (min_data is None or round_value(inst, hint)[1] >= min_data):
        start = _start(prog.n_cols, s, T, arcs, inst, hint)
    res = solve_split(prog, subs, workers=workers, engine=engine, address=address,
                      time_limit=time_limit, progress=workers > 1, start=start)
    return res, s, arcs, build_s


def solve(inst: Instance, *, objective: str = "latency", time_limit: float | None = None,
          workers: int = 1, engine: str = "processes", address: str | None = None) -> Result:
    """Solve one round exactly (MILP; ``workers > 1`` splits it into sub-problems solved apart).

    ``time_limit`` bounds both phases together; with it the greedy plan is the MIP start, so a
    time-limited solve still returns a plan (status ``time_limit``) and its proven bound. Raises
    :class:`InfeasibleError` naming the devices that cannot fit their memory budget.
    """
    import time as _time

    if objective not in OBJECTIVES:
        raise InputError("objective", objective, f"one of {OBJECTIVES}")
    end = None if time_limit is None else _time.perf_counter() + time_limit

    def left() -> float | None:
        return None if end is None else max(end - _time.perf_counter(), 1e-3)

    hint = _hint(inst, objective) if time_limit is not None else None
    data_bound, min_data, build_s, solve_s, statuses = None, None, 0.0, 0.0, []
    if objective == "participation":
        res, s, arcs, build_s = _solve_milp(inst, "participation", None, left(), workers,
                                            engine, address, hint)
        _check_found(inst, res)
        data_bound = -res.bound if res.bound is not None else None
        best = -res.objective
        min_data, solve_s = best - 1e-9 * max(1.0, abs(best)), res.solve_s
        statuses.append(res.status)
    res, s, arcs, b2 = _solve_milp(inst, "latency", min_data, left(), workers, engine, address,
                                   hint)
    _check_found(inst, res)
    statuses.append(res.status)
    status = next((x for x in statuses if x != "optimal"), "optimal")
    return _finish(inst, _decode(res.x, s, arcs), status, res.bound, data_bound,
                   f"smartsplit-milp-{objective}", build_s + b2, solve_s + res.solve_s,
                   claimed=res.objective, gap=MILP_GAP)


def solve_rounds(inst: Instance, budgets: Sequence[Sequence[float]], **kwargs) -> list[Result]:
    """Solve round after round as the device memory budgets change (one row of budgets per round).

    Each round is solved exactly for its own budgets (``kwargs`` go to :func:`solve`); the
    instance's other settings (deadline, coverage, sub-channels) stay. Nothing is mutated.
    """
    out = []
    for r, row in enumerate(budgets):
        if len(row) != inst.n:
            raise InputError(f"budgets[{r}]", len(row), f"{inst.n} budgets (one per device)")
        fields = {**inst.__dict__, "budget": np.asarray(row, dtype=float)}
        if np.any(~(fields["budget"] > 0)):
            raise InputError(f"budgets[{r}]", list(row), "numbers > 0")
        out.append(solve(Instance(**fields), **kwargs))
    return out


def _hint(inst: Instance, objective: str) -> list[Choice | None] | None:
    try:
        return list(greedy(inst, objective=objective).choices)
    except InfeasibleError:
        return None


def _check_found(inst: Instance, res) -> None:
    if res.x is not None:
        return
    if res.status != "infeasible":
        bound = "none" if res.bound is None else f"{res.bound:.6g}"
        raise SolverError(f"SmartSplit: the solver stopped ({res.status}) before finding a plan "
                          f"(proven bound {bound}); give a longer time_limit")
    tight = [f"{inst.scenario.devices[k].name} (budget {inst.budget[k]:.3g} B, smallest "
             f"{_min_memory(inst, k):.3g} B)" for k in range(inst.n)
             if _min_memory(inst, k) > inst.budget[k]]
    why = (f"devices that fit no cut even with recomputation: {', '.join(tight)}" if tight
           else "the deadline, coverage or min_devices cannot be met by the devices that fit")
    raise InfeasibleError(f"SmartSplit: no plan; {why}")


def _min_memory(inst: Instance, k: int) -> float:
    """Least memory device k can train in (any cut, best recomputation): a one-device MILP."""
    from splitopt.compile.columns import MilpBuilder
    from splitopt.parallel.milp import solve_program

    m = MilpBuilder()
    s = m.add_vars(1, lb=1, ub=1, name="select")
    cap = int(m.add_vars(1, name="memory")[0])
    _device_arcs(m, inst, k, int(s[0]), cap)
    m.minimize({cap: 1.0})
    res = solve_program(m.program())
    return float(res.objective) if res.objective is not None else float("inf")


# ---------------------------------------------------------------------------- baselines
def _greedy_device(inst: Instance, k: int) -> tuple[Choice, float] | None:
    """Device k's fastest cut that fits, dropping activations by bytes saved per extra second."""
    best: tuple[Choice, float] | None = None
    for c in np.argsort(inst.base[k], kind="stable"):
        c = int(c)
        if best is not None and inst.base[k, c] >= best[1]:
            break  # recomputation only adds time: no later cut can win
        drop: list[int] = []
        t, mem = device_cost(inst, k, c, drop)
        while mem > inst.budget[k] and inst.recompute:
            pick, score = None, 0.0
            for v in range(1, c + 1):
                if v in drop:
                    continue
                t2, m2 = device_cost(inst, k, c, drop + [v])
                gain = (mem - m2) / max(t2 - t, 1e-15)
                if m2 < mem and gain > score:
                    pick, score = v, gain
            if pick is None:
                break
            drop.append(pick)
            t, mem = device_cost(inst, k, c, drop)
        if mem <= inst.budget[k] and (best is None or t < best[1]):
            best = (Choice(c, tuple(sorted(drop))), t)
    return best


def greedy(inst: Instance, *, objective: str = "latency") -> Result:
    """The baseline: per-device greedy cut + recomputation, devices admitted fastest-first.

    ``latency``: admit until ``min_devices`` and the coverage hold; ``participation``: admit every
    device that keeps the round within the deadline.
    """
    import time as _time

    if objective not in OBJECTIVES:
        raise InputError("objective", objective, f"one of {OBJECTIVES}")
    t0 = _time.perf_counter()
    own = {k: g for k in range(inst.n) if (g := _greedy_device(inst, k)) is not None}
    order = sorted(own, key=lambda k: own[k][1])
    choices: list[Choice | None] = [None] * inst.n
    relaxed = Instance(**{**inst.__dict__, "min_devices": 0, "coverage": 0.0})
    for k in order:
        choices[k] = own[k][0]
        if objective == "participation":
            if not round_value(relaxed, choices)[2]:
                choices[k] = None
        elif round_value(inst, choices)[2]:
            break
    if not round_value(inst, choices)[2]:
        raise InfeasibleError("SmartSplit greedy: found no plan that meets every constraint")
    return _finish(inst, choices, "feasible", None, None, f"smartsplit-greedy-{objective}",
                   0.0, _time.perf_counter() - t0)


def brute_force(inst: Instance, *, objective: str = "latency") -> Result:
    """Exhaustive search over selections x cuts x recomputed layers (tiny instances only)."""
    opts = []
    for k in range(inst.n):
        fits = [Choice(c, tuple(d)) for c, d in _patterns(inst, k)
                if device_cost(inst, k, c, d)[1] <= inst.budget[k] * (1 + 1e-9)]
        opts.append([None, *fits])
    if np.prod([len(o) for o in opts], dtype=float) > 2e5:
        raise InputError("instance", "too many combinations", "a tiny instance for brute force")
    best, key = None, None
    for combo in itertools.product(*opts):
        T, data, ok = round_value(inst, combo)
        cand = (-data if objective == "participation" else 0.0, T)
        if ok and (key is None or cand < key):
            best, key = combo, cand
    if best is None or key is None:
        raise InfeasibleError("SmartSplit brute force: no plan meets every constraint")
    return _finish(inst, list(best), "optimal", key[1], None, "brute-force", 0.0, 0.0)
