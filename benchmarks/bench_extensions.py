"""Extensions: SmartSplit, energy-delay fronts, multi-tier splits, Synergy mapping, split solving.

Every instance has an ``exact`` method and the paper's kind of baseline(s), measured in the same
run; ``objective / exact`` in the report is the baseline's objective relative to the optimum
(SmartSplit participation cases report minus the participants, so the ratio is the share of the
optimum's participants). Run: ``splitopt bench extensions --quick --out /tmp/ext``.
"""

from __future__ import annotations

import importlib.util
import math
import time
from functools import partial
from typing import Any

import numpy as np
from splitopt.benchmarks.registry import BenchSpec, Case, register

from splitopt.errors import InfeasibleError

KINDS = ("raspberry-pi-4", "jetson-nano", "phone-snapdragon-8-gen-2", "raspberry-pi-5")


# ---------------------------------------------------------------------------- scenarios
def memory_wall_scenario(n: int, seed: int = 0, *, band_hz: float = 3e6):
    """n catalog devices with small training-memory budgets (4-30 MB) under a 64x64 CNN chain."""
    from splitopt.formulations.multitier import chain_variant

    from splitopt.scenario import Scenario, catalog_device, catalog_server
    from splitopt.system import Channel, Training

    rng = np.random.default_rng(seed)
    g = chain_variant("cnn64-d9w16", 9, 16, image=64)
    devs = [catalog_device(KINDS[i % 4], name=f"dev{i}", snr_db=float(rng.uniform(5, 25)),
                           memory_bytes=float(rng.uniform(4e6, 3e7))) for i in range(n)]
    return Scenario(g, devs, catalog_server("edge-a2"),
                    Channel(bandwidth_up_hz=band_hz, bandwidth_dn_hz=band_hz),
                    Training(batch_size=32, optimizer_copies=1))


def _row(status: str, objective: float | None, bound: float | None, build_s: float,
         solve_s: float, **extra: Any) -> dict[str, Any]:
    gap = None
    if objective is not None and bound is not None:
        gap = abs(objective - bound) / max(abs(objective), 1e-12)
    return dict(status=status, objective=objective, bound=bound, gap=gap, build_s=build_s,
                solve_s=solve_s, **extra)


# ---------------------------------------------------------------------------- SmartSplit
def smartsplit_case(n: int, method: str, objective: str, deadline: float | None = 2.0,
                    workers: int = 1) -> dict[str, Any]:
    """One SmartSplit round; participation rows report minus the participants as objective."""
    from splitopt.formulations import smartsplit as ss

    sc = memory_wall_scenario(n)
    t0 = time.perf_counter()
    if objective == "participation":  # 10 sub-channels: at most 10 devices, each 1/10 of the band
        inst = ss.instance(sc, deadline=deadline, channels=10, recompute=method != "no-recompute")
    else:  # the fastest half of the fleet, each on 1/n of the band
        inst = ss.instance(sc, min_devices=n // 2, recompute=method != "no-recompute")
    build = time.perf_counter() - t0
    try:
        if method == "greedy":
            res = ss.greedy(inst, objective=objective)
        elif method == "builder":  # the registered solve: the public builder's exact paths
            res = ss.solve_builder(inst, objective=objective)
        else:
            res = ss.solve(inst, objective=objective, workers=workers)
    except InfeasibleError as err:
        return _row("infeasible", None, None, build, time.perf_counter() - t0, error=None,
                    note=str(err)[:200])
    recomputed = sum(1 for ch in res.choices if ch is not None and ch.dropped)
    if objective == "participation":
        bound = -res.data_bound if res.data_bound is not None else None
        return _row(res.status, -float(res.participants), bound, build + res.build_s,
                    res.solve_s, round_s=res.round_s, participants=res.participants,
                    recomputing=recomputed)
    return _row(res.status, res.round_s, res.bound, build + res.build_s, res.solve_s,
                participants=res.participants, recomputing=recomputed)


# ---------------------------------------------------------------------------- energy-delay
def energy_delay_scenario(n: int, seed: int = 0) -> tuple[Any, list[frozenset[str]]]:
    """HFSL over catalog devices (labels on the device) and its split candidates: server-only
    and a mid split (FL mode, the whole model, is the third option)."""
    from splitopt.formulations.multitier import chain_variant

    from splitopt.scenario import Scenario, catalog_device, catalog_server
    from splitopt.system import Channel, Training

    rng = np.random.default_rng(seed)
    g = chain_variant("cnn32-d5w16", 5, 16, image=32)
    devs = [catalog_device(KINDS[i % 4], name=f"dev{i}", snr_db=float(rng.uniform(0, 20)))
            for i in range(n)]
    sc = Scenario(g, devs, catalog_server("edge-a2"),
                  Channel(bandwidth_up_hz=2e6, bandwidth_dn_hz=2e6),
                  Training(batch_size=16, labels="device"))
    pre = g.chain_prefixes()
    return sc, [pre[0], pre[3]]


def energy_delay_problem(n: int, seed: int = 0, *, levels: tuple[float, ...] = (1.0,)):
    """HFSL over catalog devices: per device server-only, a mid split or FL mode (labels on the
    device), at the given DVFS levels; few discrete options make the front non-convex."""
    from splitopt.formulations import energy_delay as ed

    from splitopt.costs import CutTable

    sc, sets = energy_delay_scenario(n, seed)
    table = CutTable.from_sets(sc.graph, [*sets, frozenset(sc.graph.names)])
    return ed.instance(sc, levels=levels, table=table)


def energy_delay_case(n: int, method: str, n_points: int,
                      levels: tuple[float, ...] = (1.0,)) -> dict[str, Any]:
    """Mean least energy over an epsilon grid, using the method's points (exact: the front)."""
    from splitopt.formulations import energy_delay as ed

    t0 = time.perf_counter()
    p = energy_delay_problem(n, levels=levels)
    t_min, e_min = ed.min_delay(p), ed.min_energy(p, math.inf)
    grid = np.linspace(t_min * (1 + 1e-9), e_min.delay_s, n_points)
    if method == "exact":
        pts = [ed.min_energy(p, float(e)) for e in grid]
    else:
        ref = (t_min, e_min.energy_j)
        pts = [ed.weighted_sum(p, float(w), ref) for w in np.linspace(0, 1, n_points)]
    best = [min((q.energy_j for q in pts if q.delay_s <= e * (1 + 1e-9)), default=math.inf)
            for e in grid]
    front = ed.nondominated(pts)
    return _row("optimal" if method == "exact" else "feasible", float(np.mean(best)), None, 0.0,
                time.perf_counter() - t0, points=len(front),
                unsupported=len(ed.unsupported(front)))


def energy_delay_front_case(n: int, levels: tuple[float, ...], n_points: int = 5,
                            seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    """The registered front (``pareto_front`` on the builder with DVFS ``levels``) against the
    module's own epsilon loop on :func:`energy_delay_problem`'s instance, interleaved in this run:
    ``ratio`` = builder / own (medians of ``repeats`` back-to-back pairs after one untimed pair
    that loads both); ``max_rel_diff``: the largest relative difference of a builder point's
    energy from the module's exact point at its delay.
    """
    from splitopt.formulations import energy_delay as ed

    from splitopt.model import Problem
    from splitopt.solving.pareto import pareto_front

    sc, sets = energy_delay_scenario(n, seed)
    builder_s, own_s = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        p = Problem(sc, cuts=sets, modes=True, server_share=False, dvfs=levels)
        front = pareto_front(p, p.total_energy(), p.round_latency(), n_points)
        t1 = time.perf_counter()
        q = energy_delay_problem(n, seed, levels=levels)
        own = ed.pareto_front(q, n_points)
        t2 = time.perf_counter()
        if i:
            builder_s.append(t1 - t0)
            own_s.append(t2 - t1)
    diff = max(abs(r.extras["x_value"] / ed.min_energy(q, r.extras["y_value"] * (1 + 1e-9))
                   .energy_j - 1) for r in front)
    b, o = float(np.median(builder_s)), float(np.median(own_s))
    return _row("optimal", float(np.mean([r.extras["x_value"] for r in front])), None, 0.0,
                b, own_s=o, ratio=b / o, points=len(front), own_points=len(own),
                max_rel_diff=diff)


# ---------------------------------------------------------------------------- multi-tier
def _path():
    from splitopt.formulations.multitier import Tier

    from splitopt.system import Link

    tiers = [Tier("phone", 1e10, 2e8), Tier("edge", 2e12, 8e9), Tier("cloud", 3e13)]
    return tiers, [Link(2e7, 5e7), Link(1e9, 1e9)]


def multitier_case(kind: str, method: str) -> dict[str, Any]:
    """A 3-tier path; kind ``chain`` (conv chain) or ``dag`` (random DAG with skips)."""
    from splitopt.formulations import multitier as mt
    from splitopt.formulations.multitier import chain_variant

    from splitopt.testing import random_dag

    if kind == "chain":
        g = chain_variant("cnn64-d15w32", 15, 32, image=64)
    else:
        g = random_dag(np.random.default_rng(5), 30, skip_prob=0.5, scale=30.0)
    tiers, links = _path()
    c = mt.costs(g, tiers, links, batch=32)
    t0 = time.perf_counter()
    fn = {"exact": mt.solve, "milp": mt.solve_dag, "greedy": mt.greedy, "two-tier": mt.two_tier,
          "device-only": mt.device_only}[method]
    sp = fn(c)
    obj = sp.latency_s if math.isfinite(sp.latency_s) else None
    return _row(sp.status if obj is not None else "infeasible", obj, sp.bound, 0.0,
                time.perf_counter() - t0, method_used=sp.method)


# ---------------------------------------------------------------------------- Synergy
def synergy_instance(models: int, accels: int):
    """Tenants: conv-chain variants; accelerators: MAX78000-like (442 KB weights, 1-4 MB/s link)."""
    from splitopt.formulations import synergy as sy
    from splitopt.formulations.multitier import chain_variant

    rng = np.random.default_rng(3)
    ms = [(f"m{i}", chain_variant(f"m{i}", int(rng.integers(4, 8)), int(rng.choice([32, 48, 64])),
                                  image=8)) for i in range(models)]
    acs = [sy.Accelerator(f"max78000-{a}", 3e10 * float(rng.uniform(0.5, 1.5)), 4.42e5,
                          8e6 * float(rng.uniform(1, 4))) for a in range(accels)]
    return sy.instance(ms, acs)


def synergy_case(models: int, accels: int, method: str) -> dict[str, Any]:
    """Bottleneck stage seconds (1 / throughput) of the mapping."""
    from splitopt.formulations import synergy as sy

    inst = synergy_instance(models, accels)
    t0 = time.perf_counter()
    try:
        res = {"exact": sy.solve, "greedy": sy.greedy, "whole-models": sy.whole_models}[method](
            inst)
    except InfeasibleError as err:
        return _row("infeasible", None, None, 0.0, time.perf_counter() - t0, note=str(err)[:200])
    return _row(res.status, res.bottleneck_s, res.bound, res.build_s, time.perf_counter() - t0,
                throughput=res.throughput, latency_s=res.latency_s)


# ---------------------------------------------------------------------------- split solving
def split_case(n: int, workers: int, how: str = "cut",
               engine: str = "processes") -> dict[str, Any]:
    """SmartSplit latency MILP (fastest half of n devices), whole or split across workers.

    The worker pool (local processes, or a local Ray with ``workers`` CPUs) is started and timed
    (``start_s``) before the clock for the solve starts.
    """
    from splitopt.formulations import smartsplit as ss

    from splitopt.parallel import auto_split, solve_split, split_by_choice

    inst = ss.instance(memory_wall_scenario(n, seed=4), min_devices=n // 2)
    t0 = time.perf_counter()
    m, s, _, arcs = ss.build(inst, phase="latency")
    prog = m.program()
    build = time.perf_counter() - t0
    subs = None
    if workers > 1 and how == "cut":  # ranges of device 0's cut, plus "device 0 left out"
        opts = [[c for c, cut in arcs[0].stop.items() if cut == q] for q in range(inst.n_cuts)]
        subs = split_by_choice(opts, parts=4 * workers, none_col=int(s[0]))
    elif workers > 1:  # branch on the most fractional binaries of the LP relaxation
        subs = auto_split(prog, 2 * workers)
    start = _warm_ray(workers) if engine == "ray" else _warm_pool(workers)
    res = solve_split(prog, subs, workers=workers, engine=engine, progress=False)
    return _row(res.status, res.objective, res.bound, build, res.wall_s, parts=len(res.parts),
                parts_per_s=res.per_second, start_s=start)


def _warm_pool(workers: int) -> float:
    """Start joblib's reusable pool (imports included) and return how long that took."""
    if workers < 2:
        return 0.0
    from joblib.executor import get_memmapping_executor

    from splitopt.parallel.split import _solve_part  # noqa: F401 - imported by the workers too

    t0 = time.perf_counter()
    ex = get_memmapping_executor(workers)
    list(ex.map(_import_in_worker, range(workers)))
    return time.perf_counter() - t0


def _warm_ray(workers: int) -> float:
    """Start a local Ray with ``workers`` CPUs, import splitopt in its workers; return the time."""
    import ray

    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_import_in_worker)
    ray.get([remote.remote(i) for i in range(workers)])
    return time.perf_counter() - t0


def _import_in_worker(_: int) -> bool:
    import splitopt.compile.program  # noqa: F401
    import splitopt.parallel.milp  # noqa: F401

    return True


def _cases(quick: bool) -> list[Case]:
    cases: list[Case] = []
    for n in (8,) if quick else (8, 20, 40):
        for obj in ("participation", "latency"):
            for meth in ("exact", "builder", "no-recompute", "greedy"):
                cases.append(Case(f"smartsplit-{obj}-{n}dev", meth,
                                  partial(smartsplit_case, n, meth, obj), n))
    for n, lv in ((3, (1.0,)),) if quick else ((3, (1.0,)), (4, (1.0,)), (3, (0.6, 0.8, 1.0))):
        for meth in ("exact", "weighted-sum"):
            cases.append(Case(f"energy-delay-{n}dev-{len(lv)}lv", meth,
                              partial(energy_delay_case, n, meth, 8 if quick else 16, lv), n))
    for lv in ((1.0,), (0.6, 0.8, 1.0)):  # the builder's exact front; the own loop timed beside
        cases.append(Case(f"energy-delay-front-3dev-{len(lv)}lv", "exact",
                          partial(energy_delay_front_case, 3, lv), 3))
    for kind in ("chain", "dag"):
        for meth in ("exact", "greedy", "two-tier", "device-only") + (
                ("milp",) if kind == "chain" else ()):
            cases.append(Case(f"multitier-{kind}", meth, partial(multitier_case, kind, meth)))
    for models, accels in ((3, 6),) if quick else ((3, 6), (4, 8)):
        for meth in ("exact", "greedy", "whole-models"):
            cases.append(Case(f"synergy-{models}m{accels}a", meth,
                              partial(synergy_case, models, accels, meth), models * accels))
    for n in (10,) if quick else (30, 40):
        for w, how in ((1, "cut"), (2, "cut")) + (() if quick else ((2, "auto"),)):
            name = "exact" if w == 1 else f"{w}-workers-{how}"
            cases.append(Case(f"split-smartsplit-{n}dev", name, partial(split_case, n, w, how), n))
        if importlib.util.find_spec("ray") is not None:
            cases.append(Case(f"split-smartsplit-{n}dev", "2-workers-cut-ray",
                              partial(split_case, n, 2, "cut", "ray"), n))
    return cases


SPEC = register(BenchSpec(
    name="extensions",
    description="SmartSplit (memory wall), energy-delay Pareto fronts, multi-tier splits, Synergy "
                "multi-model mapping and split solving; exact vs each paper's kind of baseline",
    cases=_cases, baseline="exact"))


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["front"]:  # front N LEVELS (comma-separated), e.g. front 3 0.5,0.75,1
        lv = tuple(float(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "1").split(","))
        print(json.dumps(energy_delay_front_case(int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                                                 lv)))
