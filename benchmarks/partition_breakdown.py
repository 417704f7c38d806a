"""Where the time of one ``partition()`` call goes, stage by stage, beside raw OR-Tools.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/partition_breakdown.py --sizes 1000 10000

Runs the stages of :func:`splitopt.partitioning.partition` (method ``maxflow``, a graph whose
arrays and s-t structure are cached) one after the other, as ``partition()`` does, each timed in
CPU seconds, and the anchor of benchmarks/partition.py (:func:`ortools_raw`: OR-Tools alone on
the same network, its integer capacities prepared outside the clock) split into the same OR-Tools
stages, interleaved call by call. ``--cold`` adds the stages a fresh graph object pays once (its
index arrays and connectivity, the node arrays, the s-t structure). Prints the median of each
stage; the sum of splitopt's stages minus the anchor's is what the Python around the cut costs.
Before timing, a 16 MB array is allocated and freed, as the full benchmark's earlier rows do:
glibc then serves the solver's arrays from its heap instead of fresh (page-faulting) mappings,
which made the same OR-Tools solve 1.7x faster at 1e3 nodes and 2x at 1e4.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from splitopt.benchmarks.partition import SERVER, SETTINGS, _fresh, one_blas_thread

from splitopt import Device, Link
from splitopt.backends.maxflow import solve_scaled
from splitopt.partitioning.guard import verify_cut
from splitopt.partitioning.problem import certified, graph_arrays, iteration_problem
from splitopt.partitioning.stgraph import build_network
from splitopt.partitioning.synthetic import resnet_like
from splitopt.plan import DevicePlan, Plan
from splitopt.solving.verify import checked_status


def _stages(g: Any, dev: Device, link: Link, cold: bool) -> dict[str, float]:
    """One partition() call, stage by stage (CPU seconds)."""
    clock, out = time.process_time, {}
    t = clock()

    def lap(name: str) -> None:
        nonlocal t
        now = clock()
        out[name] = now - t
        t = now

    if cold:
        graph_arrays(g)
        lap("cold: index arrays, connectivity")
        _ = (g.train_flops, g.out_bytes, g.param_bytes, g.act_bytes)
        lap("cold: node arrays")
    prob = iteration_problem(g, dev, SERVER, link)
    lap("problem (costs, input checks)")
    net = build_network(prob)
    lap("cold: s-t structure + capacities" if cold else "capacities")
    sides, flows, lower = solve_scaled(net.tails, net.heads, net.finite_caps, net.n_nodes,
                                       net.mirror)
    lap("OR-Tools add arcs + solve (+ scaling)")
    side = sides[0]()
    lap("OR-Tools read the cut")
    upper = prob.price(side[net.node_of])
    res = certified(prob, side[net.node_of], lower + net.const, {}, objective=upper)
    lap("certificate (float price)")
    del sides, flows
    lap("OR-Tools free")
    dp = DevicePlan(dev.name, g.names_of(res.x), 1.0, batch_size=1)
    lap("plan's name set")
    check, phases, boundary = verify_cut(g, dp.device_side, dev, SERVER, link, batch=1,
                                         labels_on_device=False, objective=res.objective,
                                         bound=res.bound, status=res.termination)
    lap("guard (names -> split test, re-price)")
    meta = {"boundary": [g.nodes[i].name for i in np.flatnonzero(boundary).tolist()],
            "phases": phases.to_dict(), "device_side_size": len(dp.device_side),
            "solver": res.extras, "verification": check.to_dict()}
    Plan((dp,), status=checked_status(res.termination, check), objective=res.objective,
         bound=res.bound, method="maxflow", meta=meta)
    lap("Plan (meta, validation)")
    return out


def _raw_stages(prob: Any) -> dict[str, float]:
    """The anchor's OR-Tools stages on the same network (capacities prepared unclocked)."""
    from ortools.graph.python import max_flow

    net = build_network(prob)
    icap = np.empty(net.tails.size, np.int64)
    icap[net.finite] = net.finite_caps * (2.0**61 / max(float(net.finite_caps.sum()), 1e-300))
    icap[net.finite.stop:] = int(icap[net.finite].sum()) + 1
    tails, heads = (net.heads, net.tails) if net.mirror else (net.tails, net.heads)
    clock = time.process_time
    t0 = clock()
    smf = max_flow.SimpleMaxFlow()
    smf.add_arcs_with_capacity(tails, heads, icap)
    smf.solve(*((1, 0) if net.mirror else (0, 1)))
    t1 = clock()
    near = smf.get_sink_side_min_cut() if net.mirror else smf.get_source_side_min_cut()
    side = np.zeros(net.n_nodes, bool)
    side[np.asarray(near, dtype=np.int64)] = True
    t2 = clock()
    del smf
    t3 = clock()
    return {"raw: add arcs + solve": t1 - t0, "raw: read the cut": t2 - t1, "raw: free": t3 - t2}


def breakdown(n: int, repeats: int, cold: bool, setting: int) -> None:
    """Print the median of every stage at ``n`` nodes, one device setting."""
    g = resnet_like(n)
    flops, rate = SETTINGS[setting]
    dev = Device(name="dev", flops=flops, spectral_eff_up=1, spectral_eff_dn=1)
    link = Link(rate, rate)
    prob = iteration_problem(g, dev, SERVER, link)
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        for stages in (_stages(_fresh(g) if cold else g, dev, link, cold), _raw_stages(prob)):
            for k, v in stages.items():
                runs.setdefault(k, []).append(v)
    med = {k: statistics.median(v) for k, v in runs.items()}
    ours = sum(v for k, v in med.items() if not k.startswith("raw"))
    raw = sum(v for k, v in med.items() if k.startswith("raw"))
    print(f"\nresnet_like({n}): {len(g)} nodes, device {flops:.0e} FLOP/s, "
          f"{'fresh graph' if cold else 'cached graph'}, median of {repeats}")
    for k, v in med.items():
        print(f"  {k:42s} {v * 1e6:9.1f} us")
    print(f"  {'sum splitopt / sum raw':42s} {ours * 1e6:9.1f} / {raw * 1e6:.1f} us "
          f"= {ours / raw:.2f}x")


def main() -> None:
    """Command line: sizes, repeats, --cold, --setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--cold", action="store_true", help="a fresh graph object every call")
    ap.add_argument("--setting", type=int, default=1, choices=range(len(SETTINGS)),
                    help="device/link setting of benchmarks/partition.py (0 slow .. 2 fast)")
    args = ap.parse_args()
    scratch = np.ones(2_000_000)  # 16 MB freed: the allocator state of the full benchmark
    del scratch
    with one_blas_thread():
        for n in args.sizes:
            breakdown(n, max(5, args.repeats * 1000 // n), args.cold, args.setting)


if __name__ == "__main__":
    main()
