"""Fleet family (issue 15 rows 1-2, issue 14 §2): exact EdgeSplit plans for 1e2-1e5 devices and
re-planning after one device changes, each timed against an anchor written here, in the same run.

Anchors (numpy, no splitopt solver):

- ``anchor_plan``: the candidates (chain prefixes; on a DAG one lower hull per compute class),
  A[k,c] = I b (dev_k(c) + srv(c)), D[k,c] = bits(c) spb_k, then a bare bisection on T with
  sum_k min_c D[k,c] / (T - A[k,c]) <= 1 and the least shares at the optimum (dedicated server).
- ``anchor_rebisect`` (in ``replan_case``): A and D kept as arrays; one device's row re-priced;
  the bare bisection again from scratch.
- ``anchor_shared``: a shared server (``serving: shared``): the same bisection with the
  closed-form share test F = c + s^2 / (1 - a) <= 1, options chosen by its linearisation (fast,
  not exact: its optimum is an upper bound of ours).

Ours: ``planner`` = ``Planner.for_formulation(EdgeSplit(), scenario).solve()`` (the fleet path:
option table, grouped bisection, vectorised pricing, guard); ``builder`` = ``EdgeSplit().solve()``
(builder Problem, analysis, bisection path, decode, the verified-answer guard with the scalar
``evaluate()``); ``update`` = ``Planner.update`` after one device's bandwidth or FLOP/s changes,
also against a from-scratch ``planner`` solve and a from-scratch ``builder`` solve;
``planner-shared`` = the fleet path on the shared-server scenario (the server-share path).

Times are CPU seconds (time.process_time, after gc.collect()) of interleaved repeats (anchor,
ours, anchor, ours...); each row reports ours / anchor per repeat as median and range, and
whether both optima agree.
Fleets: 5 catalog compute classes cycling, each device its own SNR (uniform 0-25 dB), a dedicated
server (shared for ``planner-shared``), batch 32, 5 local iterations, 100 rounds.

Run: ``.venv/bin/python -m splitopt.benchmarks.bench_fleet [--quick]``
(or ``splitopt bench fleet``); one row: ``--only gpt2-N10000 builder [--repeats 15]`` (instance
and method as printed; the method may be left out).
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import statistics
import sys
import time
from functools import partial
from typing import Any

import numpy as np
from splitopt.benchmarks.registry import BenchSpec, Case, register

from splitopt.errors import SplitoptError

CLASSES = ("jetson-nano", "raspberry-pi-4", "jetson-orin-nano", "phone-snapdragon-8-gen-2",
           "jetson-xavier-nx")
PLAN_FULL = [("chain50", n) for n in (100, 1000, 10_000, 100_000)] + [
    (m, n) for m in ("resnet50", "gpt2") for n in (1000, 10_000)]
PLAN_QUICK = [("chain50", 100), ("chain50", 1000), ("dag300", 1000)]
REPLAN_FULL = [("chain50", 1000), ("resnet50", 1000)]
REPLAN_QUICK = [("chain50", 1000)]


@functools.cache
def graph(model: str) -> Any:
    """``chainN`` (a random N-layer chain), ``dagN`` (ResNet-like), or a zoo model (cached)."""
    from splitopt.benchmarks.bench_joint import graph as joint_graph

    return joint_graph(model)


@functools.cache
def fleet(model: str, n: int, serving: str = "dedicated") -> Any:
    """``n`` devices over 5 compute classes, one SNR per device, an edge A2, a 20 MHz band."""
    from splitopt.scenario import Scenario, catalog_device, catalog_server
    from splitopt.system import Channel, Training

    snr = np.random.default_rng(1).uniform(0, 25, n)
    devs = [catalog_device(CLASSES[i % 5], name=f"dev{i}", snr_db=float(snr[i]),
                           memory_bytes=math.inf) for i in range(n)]
    server = catalog_server("edge-a2")
    if hasattr(server, "serving"):
        server = server.model_copy(update={"serving": serving})
    return Scenario(graph(model), devs, server, Channel(bandwidth_up_hz=20e6, bandwidth_dn_hz=20e6),
                    Training(batch_size=32, local_iters=5, rounds=100, optimizer_copies=1,
                             aggregate=False))


# ---------------------------------------------------------------------------- anchors
def numpy_bisection(A: np.ndarray, D: np.ndarray, rtol: float = 1e-12):
    """Bare min-max bisection: (T*, option, shares) with sum_k min_c D/(T - A) <= 1."""
    def total(T: float) -> float:
        R = T - A
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.where(R > 0, D / R, np.inf).min(axis=1).sum())

    lo = float(A.min(axis=1).max())
    hi = 2 * lo
    while total(hi) > 1:
        lo, hi = hi, 2 * hi
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if total(mid) <= 1 else (mid, hi)
    R = hi - A
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(R > 0, D / R, np.inf)
    opt = need.argmin(axis=1)
    rows = np.arange(len(A))
    beta = need[rows, opt] / need[rows, opt].sum()
    return float(np.max(A[rows, opt] + D[rows, opt] / beta)), opt, beta


def anchor_arrays(sc: Any, server: bool = True) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """A, D (N, C), the candidates (chain prefixes, or one hull per compute class) and the
    server's compute per candidate (A holds it unless ``server=False``)."""
    from splitopt.costs import CutTable
    from splitopt.partitioning.hull import hull

    g, tr, srv = sc.graph, sc.training, sc.server
    ib = float(tr.batch_size * tr.local_iters)
    classes: dict[tuple, int] = {}
    which = [classes.setdefault((d.flops, d.cls), len(classes)) for d in sc.devices]
    firsts = dict(zip(which, sc.devices))
    if g.is_chain:
        table = CutTable.chain(g)
    else:
        sets = {frozenset(s): None for d in firsts.values()
                for s in hull(g, d, srv, batch=tr.batch_size, local_iters=tr.local_iters,
                              aggregate=tr.aggregate, labels=tr.labels)}
        table = CutTable.from_sets(g, list(sets))
    m = table.masks.astype(float)
    srv_row = (1 - m) @ g.train_seconds(srv.device_class, srv.flops)
    A = ib * (np.stack([m @ g.train_seconds(firsts[r].cls, firsts[r].flops)
                        for r in range(len(firsts))]) + (srv_row if server else 0.0))[which]
    bits = ib * 8 * table.boundary_bytes
    ch = sc.channel
    spb = np.array([1 / (ch.bandwidth_up_hz * d.spectral_eff_up)
                    + 1 / (ch.bandwidth_dn_hz * d.spectral_eff_dn) for d in sc.devices])
    return A, spb[:, None] * bits[None], table, ib * srv_row


def anchor_plan(sc: Any) -> float:
    """The anchor's optimum (round latency x rounds)."""
    A, D, _, _ = anchor_arrays(sc)
    return numpy_bisection(A, D)[0] * sc.training.rounds


def shared_share(A: np.ndarray, D: np.ndarray, S: np.ndarray, T: float) -> float:
    """Least total server share at round time T by the closed form F = c + s^2 / (1 - a), the
    options chosen by its linearisation (3 passes; an upper bound on the exact least share)."""
    R = T - A
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(R > 0, 1.0 / R, np.inf)
    a, s, c = D * inv, np.sqrt(S * D) * inv, S * inv
    rows = np.arange(len(A))
    g = (1.0, 1.0)
    for _ in range(3):
        opt = np.argmin(g[0] * a + g[1] * s + c, axis=1)
        xa, xs, xc = a[rows, opt].sum(), s[rows, opt].sum(), c[rows, opt].sum()
        if not xa < 1:
            return np.inf
        g = (xs**2 / (1 - xa) ** 2, 2 * xs / (1 - xa))
    return float(xc + xs**2 / (1 - xa))


def anchor_shared(sc: Any) -> float:
    """Shared server: bisection on T with the closed-form share test (see shared_share)."""
    A, D, _, srv = anchor_arrays(sc, server=False)
    S = np.broadcast_to(srv, A.shape)
    lo = float(A.min(axis=1).max())
    hi = max(2 * lo, float((A + S + D).min(axis=1).max()))
    while shared_share(A, D, S, hi) > 1:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-10 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if shared_share(A, D, S, mid) <= 1 else (mid, hi)
    return hi * sc.training.rounds


def ours(sc: Any, method: str) -> float:
    """Our exact optimum through the fleet path or the builder path."""
    from splitopt.formulations.edgesplit import EdgeSplit

    from splitopt.planner import Planner

    form = EdgeSplit(server_share=method.endswith("shared"))
    if method.startswith("planner"):
        res = Planner.for_formulation(form, sc).solve()
        assert res.termination == "optimal", res.verification.summary()
        return float(res.objective)
    plan = form.solve(sc)
    assert plan.status == "optimal", plan.meta
    return float(plan.objective)


def _timed(fn: Any) -> tuple[float, Any]:
    gc.collect()  # no collection of an earlier case's garbage inside the timed call
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def _summary(ours_s: list[float], anchor_s: list[float]) -> dict[str, Any]:
    ratios = [a / b for a, b in zip(ours_s, anchor_s)]
    return {"solve_s": statistics.median(ours_s), "anchor_s": statistics.median(anchor_s),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "repeats": len(ratios)}


def plan_case(model: str, n: int, method: str, repeats: int = 0) -> dict[str, Any]:
    """One fleet: ``method`` ("planner" or "builder") against ``anchor_plan``, interleaved."""
    shared = method.endswith("shared")
    sc = fleet(model, n, "shared" if shared else "dedicated")
    anchor = anchor_shared if shared else anchor_plan
    anchor(fleet("chain5", 3) if model.startswith("chain") else sc)  # imports, caches
    ours(fleet(model, 5, "shared" if shared else "dedicated"), method)
    t_ours, t_anchor = [], []
    repeats = repeats or (9 if n <= 1000 else 5 if n <= 10_000 else 3)
    for _ in range(repeats if method != "builder" or n <= 10_000 else 1):
        s, ref = _timed(partial(anchor, sc))
        t_anchor.append(s)
        s, obj = _timed(partial(ours, sc, method))
        t_ours.append(s)
    table = anchor_arrays(sc)[2]
    return {"objective": obj, "bound": None, "status": "optimal", "devices": n,
            "cuts": len(table), "anchor_objective": ref,
            "agree": abs(obj - ref) <= 1e-9 * abs(ref) or (shared and obj <= ref),
            **_summary(t_ours, t_anchor)}


def replan_case(model: str, n: int, repeats: int = 20) -> dict[str, Any]:
    """Planner.update after one device's change vs a bare numpy re-bisection and from-scratch
    solves (the fleet path and the builder path)."""
    from splitopt.formulations.edgesplit import EdgeSplit

    from splitopt.planner import Planner

    form = EdgeSplit(server_share=False)
    sc = fleet(model, n)
    pl = Planner.for_formulation(form, sc)
    pl.solve()
    A, D, table, _ = anchor_arrays(sc)
    tr = sc.training
    ib = float(tr.batch_size * tr.local_iters)
    m = table.masks.astype(float)
    srv_row = (1 - m) @ sc.graph.train_seconds(sc.server.device_class, sc.server.flops)
    bits = ib * 8 * table.boundary_bytes
    rng = np.random.default_rng(2)
    t_up, t_anchor, t_fleet, t_builder, agree = [], [], [], [], True
    for i in range(repeats):
        k = int(rng.integers(n))
        name, dev = f"dev{k}", pl.scenario.device(f"dev{k}")
        change = ({"spectral_eff_up": dev.spectral_eff_up * float(rng.choice([0.5, 2.0]))}
                  if i % 2 == 0 else {"flops": dev.flops * float(rng.choice([0.5, 2.0]))})
        new = dev.model_copy(update=change)

        def anchor(k=k, new=new) -> float:
            A[k] = ib * (m @ sc.graph.train_seconds(new.cls, new.flops) + srv_row)
            ch = sc.channel
            D[k] = bits * (1 / (ch.bandwidth_up_hz * new.spectral_eff_up)
                           + 1 / (ch.bandwidth_dn_hz * new.spectral_eff_dn))
            return numpy_bisection(A, D)[0] * tr.rounds

        s, ref = _timed(anchor)
        t_anchor.append(s)
        s, res = _timed(partial(pl.update, name, **change))
        t_up.append(s)
        agree &= abs(res.objective - ref) <= 1e-9 * ref and res.termination == "optimal"
        if i < 3:  # the from-scratch solves are slow: a few repeats are enough
            t_fleet.append(_timed(partial(ours, pl.scenario, "planner"))[0])
            t_builder.append(_timed(partial(ours, pl.scenario, "builder"))[0])
    return {"objective": res.objective, "status": res.termination, "devices": n,
            "cuts": len(table), "agree": agree, "update_ms": 1e3 * statistics.median(t_up),
            "update_max_ms": 1e3 * max(t_up), "rebisect_ms": 1e3 * statistics.median(t_anchor),
            "scratch_fleet_ms": 1e3 * statistics.median(t_fleet),
            "scratch_builder_ms": 1e3 * statistics.median(t_builder),
            **_summary(t_up, t_anchor)}


def _cases(quick: bool) -> list[Case]:
    plans = PLAN_QUICK if quick else PLAN_FULL
    out = [Case(f"{m}-N{n}", meth, partial(plan_case, m, n, meth), n)
           for m, n in plans for meth in ("planner", "builder")]
    out += [Case(f"{m}-N{n}", "planner-shared", partial(plan_case, m, n, "planner-shared"), n)
            for m, n in plans if m.startswith("chain") and n >= 1000]
    out += [Case(f"{m}-N{n}", "update", partial(replan_case, m, n), n)
            for m, n in (REPLAN_QUICK if quick else REPLAN_FULL)]
    return out


SPEC = register(BenchSpec(
    name="fleet",
    description="exact EdgeSplit (dedicated server) for 1e2-1e5 devices and re-planning after "
                "one device changes, as ratios of CPU time to bare numpy anchors in the same run",
    cases=_cases,
    extra={"columns": ["devices", "cuts", "agree", "anchor_s", "ratio_median", "ratio_min",
                       "ratio_max", "update_ms", "rebisect_ms", "scratch_fleet_ms",
                       "scratch_builder_ms"]}))


METHODS = ("planner", "builder", "planner-shared", "update")


def _row_name(text: str) -> tuple[str, int]:
    """``MODEL-NSIZE`` (e.g. ``gpt2-N10000``) as (model, size), for argparse."""
    model, sep, n = text.rpartition("-N")
    if not sep or not model or not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a row is MODEL-NSIZE, e.g. chain50-N100 or gpt2-N10000")
    return model, int(n)


def main(argv: list[str]) -> None:
    """Print one line per case (the quick sweep with --quick, one row with --only)."""
    ap = argparse.ArgumentParser(prog="python -m splitopt.benchmarks.bench_fleet",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the small sweep")
    ap.add_argument("--only", nargs="+", metavar=("ROW", "METHOD"),
                    help="one row, MODEL-NSIZE (e.g. gpt2-N10000), and optionally one method: "
                         + ", ".join(METHODS))
    ap.add_argument("--repeats", type=int, default=0,
                    help="interleaved pairs of that row (default: by size)")
    args = ap.parse_args(argv)
    if args.repeats < 0:
        ap.error(f"--repeats {args.repeats}: a count >= 0 (0: by size)")
    cases = _cases(args.quick)
    if args.only:
        if len(args.only) > 2 or (len(args.only) == 2 and args.only[1] not in METHODS):
            ap.error(f"--only {' '.join(args.only)}: a row and at most one method of "
                     f"{', '.join(METHODS)}")
        try:
            model, n = _row_name(args.only[0])
        except argparse.ArgumentTypeError as err:
            ap.error(f"--only {err}")
        methods = args.only[1:] or [c.method for c in cases if c.instance == args.only[0]] or [
            "planner", "builder"]
        cases = [Case(args.only[0], m, partial(replan_case, model, n) if m == "update" else
                      partial(plan_case, model, n, m, args.repeats), n) for m in methods]
    for case in cases:
        try:
            row = case.run()
        except SplitoptError as err:  # e.g. a model name the zoo lacks
            ap.error(f"{case.instance} {case.method}: {err}")
        keys = ("devices", "cuts", "agree", "solve_s", "anchor_s", "ratio_median", "ratio_min",
                "ratio_max", "update_ms", "rebisect_ms", "scratch_fleet_ms", "scratch_builder_ms")
        shown = " ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                         for k in keys if k in row)
        print(f"{case.instance:>16} {case.method:>8} {shown}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
