"""Synergy: several models (tenants) mapped segment by segment onto a pool of small accelerators.

Paper: T. Gong, S. Y. Jang, U. G. Acer, F. Kawsar, C. Min, "Collaborative Inference via Dynamic
Composition of Tiny AI Accelerators on MCUs", arXiv:2401.08637 (https://arxiv.org/abs/2401.08637).

Inference, not training: forward costs only (``graph.fwd_seconds``). Model m's nodes, in
topological order ``0..L_m-1``, are cut into contiguous segments ``[i, j)``; each segment runs on
one accelerator a (compute ``f_a`` FLOP/s, memory ``mem_a``, link ``r_a`` bit/s), and a model visits
an accelerator at most once. With ``y[m,i,j,a] = 1`` when segment [i, j) of model m is on a:

    flow:     sum_{j,a} y[m,0,j,a] = 1,   sum_{i<p,a} y[m,i,p,a] = sum_{j>p,a} y[m,p,j,a]  (0<p<L_m)
    compute:  c[m,i,j,a] = sum_{v in [i,j)} fwd_s_a(v)
    send:     s[m,j,a]   = 8 bnd_m(j) / r_a  if j < L_m  (bnd_m(j): bytes leaving the prefix [0,j))
    load_a    = sum_{m,i,j} y[m,i,j,a] (c[m,i,j,a] + s[m,j,a])
    memory_a  = sum_{m,i,j} y[m,i,j,a] (W_m[i,j) + buf_m[i,j)) <= mem_a
                (weights, plus the segment's activation buffer: its largest input + output)

``objective="throughput"`` minimises the bottleneck ``B >= load_a`` (frames per second = 1/B, all
tenants in a pipeline); ``"latency"`` minimises ``sum_m w_m`` (compute + send of model m's
segments). Exact: :func:`problem` states it on the public builder
(:class:`splitopt.model.assign.SegmentAssignment`: the arcs y and their flow / once rows; loads and
memory per accelerator as its ``per_slot`` expressions) and :func:`solve_builder` solves it with
:func:`splitopt.solving.solve` (the generic exact path: a MILP, no cones); :func:`solve` builds the
same MILP by hand (:class:`splitopt.compile.columns.MilpBuilder`) and is kept as an independent
oracle. Both re-price the mapping here (:func:`priced_rows`). Baselines: :func:`whole_models` (each
model on one accelerator, no splitting: the "one model, one accelerator" deployment), and
:func:`greedy` (fill the least-loaded accelerator layer by layer, the usual layer-wise packing).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitopt.backends.results import Result
from splitopt.errors import InfeasibleError, InputError, no_plan
from splitopt.graph import LayerGraph
from splitopt.scenario import Scenario
from splitopt.solving.verify import (
    MILP_GAP,
    Row,
    checked_status,
    solver_agrees,
    verify,
)

OBJECTIVES = ("throughput", "latency")


@dataclass(frozen=True)
class Accelerator:
    """One small accelerator (e.g. a MAX78000 on an MCU): speed, memory and link rate."""

    name: str
    flops: float
    memory_bytes: float
    link_bps: float
    device_class: str | None = None

    def __post_init__(self) -> None:
        for key in ("flops", "memory_bytes", "link_bps"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and v > 0 and not math.isnan(v)):
                raise InputError(f"accelerator {self.name!r}.{key}", v, "a number > 0")


@dataclass(frozen=True)
class Instance:
    """Prefix sums per model: ``fwd[m]`` (L_m+1, A), ``w[m]``, ``bnd[m]`` (L_m+1,); ``out[m]``."""

    names: tuple[str, ...]
    accels: tuple[Accelerator, ...]
    fwd: tuple[np.ndarray, ...]
    w: tuple[np.ndarray, ...]
    out: tuple[np.ndarray, ...]
    bnd: tuple[np.ndarray, ...]
    weight: np.ndarray

    def seg(self, m: int, i: int, j: int, a: int) -> tuple[float, float, float]:
        """(compute s, send s, memory bytes) of segment [i, j) of model m on accelerator a."""
        comp = float(self.fwd[m][j, a] - self.fwd[m][i, a])
        n = len(self.w[m]) - 1
        send = 8.0 * float(self.bnd[m][j]) / self.accels[a].link_bps if j < n else 0.0
        buf = float(self.out[m][max(i - 1, 0):j].max(initial=0.0) + self.out[m][i:j].max())
        return comp, send, float(self.w[m][j] - self.w[m][i]) + buf


def instance(models: Sequence[tuple[str, LayerGraph]], accels: Sequence[Accelerator], *,
             weights: Sequence[float] | None = None) -> Instance:
    """Validate and precompute (``weights``: per-model latency weights, default 1)."""
    if not models or not accels:
        raise InputError("models / accels", (len(models), len(accels)), "at least one of each")
    fwd, w, out, bnd = [], [], [], []
    for _, g in models:
        if not isinstance(g, LayerGraph):
            raise InputError("models", type(g).__name__, "(name, LayerGraph) pairs")
        per = np.stack([g.fwd_seconds(a.device_class, a.flops) for a in accels], axis=1)
        fwd.append(np.vstack([np.zeros((1, len(accels))), np.cumsum(per, axis=0)]))
        w.append(np.concatenate([[0.0], np.cumsum(g.param_bytes)]))
        out.append(g.out_bytes.copy())
        prefixes = np.tri(len(g) + 1, len(g), -1, dtype=bool)  # row j: the first j nodes
        bnd.append(g.boundary_mask(prefixes).astype(float) @ g.out_bytes)
    wt = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=float)
    if wt.shape != (len(models),) or np.any(wt < 0):
        raise InputError("weights", weights, f"{len(models)} numbers >= 0")
    return Instance(tuple(n for n, _ in models), tuple(accels), tuple(fwd), tuple(w), tuple(out),
                    tuple(bnd), wt)


Mapping = tuple[tuple[tuple[int, int, int], ...], ...]  # per model: (i, j, accelerator) segments


def evaluate(inst: Instance, mapping: Mapping) -> tuple[float, float, bool]:
    """(bottleneck seconds, weighted latency seconds, feasible) of a mapping."""
    b, lat, rows = priced_rows(inst, mapping)
    ok = all(r.value <= r.hi * (1 + 1e-9) for r in rows)
    return b, lat, ok


def priced_rows(inst: Instance, mapping: Mapping) -> tuple[float, float, list[Row]]:
    """(bottleneck, weighted latency, every rule as a Row) of a mapping.

    Segments chain each model from its first layer to its last, an accelerator at most once per
    model, each accelerator's memory within its capacity.
    """
    A = len(inst.accels)
    load, mem, lat, broken = np.zeros(A), np.zeros(A), 0.0, 0
    for m, segs in enumerate(mapping):
        n = len(inst.w[m]) - 1
        ends = [0] + [j for _, j, _ in segs]
        broken += not ([i for i, _, _ in segs] == ends[:-1] and ends[-1] == n)
        broken += len({a for _, _, a in segs}) != len(segs)
        for i, j, a in segs:
            comp, send, mb = inst.seg(m, i, j, a)
            load[a] += comp + send
            mem[a] += mb
            lat += inst.weight[m] * (comp + send)
    rows = [Row("segments chain each model once per accelerator", float(broken), hi=0.0)]
    rows += [Row(f"memory of {acc.name}", float(mem[a]), hi=float(acc.memory_bytes))
             for a, acc in enumerate(inst.accels)]
    return float(load.max()), float(lat), rows


def _finish(inst: Instance, mapping: Mapping, status: str, bound: float | None, method: str,
            build_s: float = 0.0, solve_s: float = 0.0, *, objective: str = "throughput",
            claimed: float | None = None, backend: str | None = None) -> Result:
    """The Result of a mapping, through the verified-answer guard (splitopt.solving.verify).

    The one :class:`splitopt.backends.Result`: ``objective`` is the re-priced ``objective``
    (the bottleneck, 1/throughput, or the weighted latency) and ``bound`` bounds it; extras:
    ``mapping``, ``bottleneck_s``, ``latency_s``, ``throughput`` (frames per second of the whole
    pipeline, every tenant once per frame), ``method``. ``claimed`` is the solver's own value,
    checked to agree with the re-priced one.
    """
    b, lat, rows = priced_rows(inst, mapping)
    value = b if objective == "throughput" else lat
    check = verify(objective=value, repriced=value, bound=bound, rows=rows,
                   extra=[solver_agrees(claimed, value)],
                   gap=MILP_GAP if status == "optimal" else None)
    return Result(checked_status(status, check), path=method,
                  backend=backend or ("highs" if "milp" in method else "none"), objective=value,
                  bound=bound,
                  build_s=build_s, solve_s=solve_s, verification=check,
                  extras={"mapping": mapping, "bottleneck_s": b, "latency_s": lat,
                          "throughput": 1.0 / b if b > 0 else math.inf, "method": method})


def build(inst: Instance, objective: str = "throughput"):
    """The MILP: returns (MilpBuilder, {column: (m, i, j, a)}, bottleneck column)."""
    from splitopt.compile.columns import MilpBuilder

    m_ = MilpBuilder()
    A, arcs = len(inst.accels), {}
    load: list[dict[int, float]] = [{} for _ in range(A)]
    mem: list[dict[int, float]] = [{} for _ in range(A)]
    obj: dict[int, float] = {}
    B = int(m_.add_vars(1, name="bottleneck")[0])
    for m in range(len(inst.names)):
        n = len(inst.w[m]) - 1
        node_in: list[dict[int, float]] = [{} for _ in range(n + 1)]
        node_out: list[dict[int, float]] = [{} for _ in range(n + 1)]
        visits: list[dict[int, float]] = [{} for _ in range(A)]
        for i, j, a in itertools.product(range(n), range(1, n + 1), range(A)):
            if j <= i:
                continue
            col = int(m_.add_vars(1, ub=1, integer=True, name=f"y{m}_{i}_{j}_{a}")[0])
            arcs[col] = (m, i, j, a)
            comp, send, mb = inst.seg(m, i, j, a)
            load[a][col], mem[a][col] = comp + send, mb
            obj[col] = inst.weight[m] * (comp + send)
            node_out[i][col], node_in[j][col], visits[a][col] = 1.0, 1.0, 1.0
        m_.add_row(node_out[0], lb=1.0, ub=1.0, name=f"start{m}")
        for p in range(1, n):
            m_.add_row({**node_out[p], **{c: -1.0 for c in node_in[p]}}, lb=0.0, ub=0.0)
        for a in range(A):
            m_.add_row(visits[a], ub=1.0, name=f"once{m}_{a}")
    for a, acc in enumerate(inst.accels):
        m_.add_row({c: v / acc.memory_bytes for c, v in mem[a].items()}, ub=1.0, name=f"mem{a}")
        m_.add_row({**load[a], B: -1.0}, ub=0.0, name=f"load{a}")
    if objective == "throughput":
        m_.minimize({B: 1.0})
    else:
        m_.minimize(obj)
    return m_, arcs, B


def solve(inst: Instance, *, objective: str = "throughput", time_limit: float | None = None,
          workers: int = 1, engine: str = "processes", address: str | None = None) -> Result:
    """Exact mapping (MILP).

    ``workers > 1`` splits it into sub-problems (:mod:`splitopt.parallel`) solved on local
    processes, or on a Dask / Ray cluster (``engine``, ``address``).
    """
    import time

    from splitopt.parallel import solve_split

    if objective not in OBJECTIVES:
        raise InputError("objective", objective, f"one of {OBJECTIVES}")
    t0 = time.perf_counter()
    m_, arcs, B = build(inst, objective)
    prog = m_.program()
    build_s = time.perf_counter() - t0
    res = solve_split(prog, workers=workers, engine=engine, address=address,
                      time_limit=time_limit, progress=workers > 1)
    if res.x is None:
        raise no_plan("Synergy: no mapping fits the accelerators' memory", res.status,
                      "Synergy")
    chosen = sorted(arcs[c] for c in arcs if res.x[c] > 0.5)
    mapping = tuple(tuple((i, j, a) for mm, i, j, a in chosen if mm == m)
                    for m in range(len(inst.names)))
    return _finish(inst, mapping, res.status, res.bound, f"synergy-milp-{objective}", build_s,
                   res.solve_s, objective=objective, claimed=res.objective)


def arc_costs(inst: Instance, seg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds, memory bytes, weighted seconds) of every arc of ``seg`` (a SegmentAssignment)."""
    cost = np.array([inst.seg(int(m), int(i), int(j), int(a))
                     for m, i, j, a in zip(seg.model, seg.start, seg.end, seg.slot)]).reshape(-1, 3)
    seconds = cost[:, 0] + cost[:, 1]
    return seconds, cost[:, 2], inst.weight[seg.model] * seconds


def problem(inst: Instance, scenario: Scenario,
            objective: str = "throughput") -> tuple[Any, Any, float]:
    """Synergy on the public builder: ``(Problem, SegmentAssignment, unit_s)``, objective set.

    The objective is in units of ``unit_s`` seconds (the slowest arc's seconds): loads of
    1e-4 s would otherwise sit within the MILP's feasibility tolerance (1e-7 absolute) of
    their bound, a relative gap of 1e-5 that the exact path cannot close.

    ``scenario`` carries the fleet the Problem is made over (its devices are the accelerators,
    :func:`splitopt.formulations.registry.accelerators_of`); the per-device cut options of the
    Problem play no part (one candidate each, nothing priced on them): the decision is the
    assignment's arcs. Rows: the assignment's own (start, flow, once per accelerator) and each
    accelerator's memory; objective the largest accelerator load (``throughput``: the pipeline's
    bottleneck) or the weighted latency sum.
    """
    from splitopt.model import Problem, maximum
    from splitopt.model.assign import SegmentAssignment

    if objective not in OBJECTIVES:
        raise InputError("objective", objective, f"one of {OBJECTIVES}")
    p = Problem(scenario, cuts=[scenario.graph.chain_prefixes()[0]], server_share=False)
    seg = SegmentAssignment(p, [len(w) - 1 for w in inst.w], len(inst.accels), name="segment")
    seconds, mem, weighted = arc_costs(inst, seg)
    for used, acc in zip(seg.per_slot(mem), inst.accels):  # scaled: bytes of ~1e6 vs 0/1 arcs
        p.add(used * (1.0 / acc.memory_bytes) <= 1.0, name=f"memory:{acc.name}")
    unit = max(float(seconds.max()), 1e-300)
    p.minimize(maximum(seg.per_slot(seconds / unit)) if objective == "throughput"
               else seg.linear(weighted / unit))
    return p, seg, unit


def solve_builder(inst: Instance, scenario: Scenario, *, objective: str = "throughput",
                  time_limit: float | None = None, backend: str | None = None) -> Result:
    """The exact mapping through the builder (:func:`problem`, :func:`splitopt.solving.solve`).

    The answer is re-priced here (:func:`priced_rows`) before it is labelled, as :func:`solve`'s.
    """
    import time

    from splitopt.solving import solve as solve_problem

    t0 = time.perf_counter()
    p, seg, unit = problem(inst, scenario, objective)
    try:
        res = solve_problem(p, backend=backend, time_limit=time_limit)
    except InfeasibleError as err:
        raise InfeasibleError(f"Synergy: no mapping fits the accelerators' memory ({err})") from err
    if seg.name not in res.values:
        raise no_plan(f"Synergy: no mapping found ({res.message})", res.termination, "Synergy")
    bound, claimed = ((None if v is None else v * unit) for v in (res.bound, res.objective))
    return _finish(inst, seg.chosen(res.values[seg.name]), res.termination, bound,
                   res.path, res.build_s, time.perf_counter() - t0 - res.build_s,
                   objective=objective, claimed=claimed, backend=res.backend)


# ---------------------------------------------------------------------------- baselines
def whole_models(inst: Instance) -> Result:
    """Each model whole on one accelerator: biggest model first, on the least-loaded that fits."""
    A = len(inst.accels)
    load, mem = np.zeros(A), np.zeros(A)
    cap = np.array([a.memory_bytes for a in inst.accels])
    mapping: list[tuple[tuple[int, int, int], ...]] = [()] * len(inst.names)
    for m in sorted(range(len(inst.names)), key=lambda m: -inst.fwd[m][-1].min()):
        n = len(inst.w[m]) - 1
        fits = [a for a in range(A) if mem[a] + inst.seg(m, 0, n, a)[2] <= cap[a]]
        if not fits:
            raise InfeasibleError(f"whole-model baseline: {inst.names[m]} fits no accelerator")
        a = min(fits, key=lambda a: load[a] + inst.seg(m, 0, n, a)[0])
        comp, send, mb = inst.seg(m, 0, n, a)
        load[a] += comp + send
        mem[a] += mb
        mapping[m] = ((0, n, a),)
    return _finish(inst, tuple(mapping), "feasible", None, "whole-models")


def greedy(inst: Instance) -> Result:
    """Layer-wise packing: extend a segment while it fits, else go to the least-loaded free one."""
    A = len(inst.accels)
    load, mem = np.zeros(A), np.zeros(A)
    cap = np.array([a.memory_bytes for a in inst.accels])
    mapping: list[tuple[tuple[int, int, int], ...]] = []
    for m in range(len(inst.names)):
        n, segs, used, i = len(inst.w[m]) - 1, [], set(), 0
        while i < n:
            free = [a for a in range(A) if a not in used and mem[a] + inst.seg(m, i, i + 1, a)[2]
                    <= cap[a]]
            if not free:
                raise InfeasibleError(f"greedy: {inst.names[m]} layer {i} fits nowhere")
            a = min(free, key=lambda a: load[a])
            j = i + 1
            while j < n and mem[a] + inst.seg(m, i, j + 1, a)[2] <= cap[a]:
                j += 1
            comp, send, mb = inst.seg(m, i, j, a)
            load[a] += comp + send
            mem[a] += mb
            segs.append((i, j, a))
            used.add(a)
            i = j
        mapping.append(tuple(segs))
    return _finish(inst, tuple(mapping), "feasible", None, "greedy")


def brute_force(inst: Instance, objective: str = "throughput") -> Result:
    """Every segmentation x accelerator order of every model (tiny instances only)."""
    A, per_model = len(inst.accels), []
    for m in range(len(inst.names)):
        n, opts = len(inst.w[m]) - 1, []
        for k in range(n):
            for cuts in itertools.combinations(range(1, n), k):
                bounds = (0, *cuts, n)
                for accs in itertools.permutations(range(A), k + 1):
                    opts.append(tuple((bounds[s], bounds[s + 1], accs[s]) for s in range(k + 1)))
        per_model.append(opts)
    if np.prod([len(o) for o in per_model], dtype=float) > 3e5:
        raise InputError("instance", "too many mappings", "a tiny instance for brute force")
    key = 0 if objective == "throughput" else 1
    best = None
    for mp in itertools.product(*per_model):
        val = evaluate(inst, mp)
        if val[2] and (best is None or val[key] < best[0][key]):
            best = (val, mp)
    if best is None:
        raise InfeasibleError("Synergy brute force: no mapping fits")
    return _finish(inst, best[1], "optimal", best[0][key], "brute-force", objective=objective)
