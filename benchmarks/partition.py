"""Partition benchmark: speed against a networkx min-cut (DADS-style), the MILP and brute force,
and plan quality on the zoo models against the named baselines of
``splitopt.partitioning.baselines``: device-only, server-only, the honest best chain cut (every
crossing tensor priced), the mispriced chain cut (the prefix a chain-only partitioner picks when it
prices only the last layer's output; its true cost is reported) and block contraction without a
certificate.

    .venv/bin/python benchmarks/partition.py            # full run (figures in docs/partition.md)
    .venv/bin/python benchmarks/partition.py --quick    # seconds
    .venv/bin/python benchmarks/partition.py --no-zoo --sizes 1000 --repeats 30   # one size
    .venv/bin/python benchmarks/partition_breakdown.py   # partition()'s stages vs raw OR-Tools

Speed: every method starts from the same LayerGraph and device and ends with a device-side set
re-priced in floats under the reference model. ``maxflow cold`` is the first call on a fresh graph
object (it builds the cached index arrays); ``maxflow`` and ``blockwise`` are later calls.
Times are CPU seconds of the process (``time.process_time``; every solver here runs one thread),
the median over the device settings and repeats, so that a loaded shared machine skews them less
than wall-clock times.
``networkx`` builds the same s-t graph as a ``networkx.DiGraph`` with integer capacities (float
capacities gave wrong partitions: networkx issue #4972) and runs ``minimum_cut`` (preflow-push),
mirrored exactly when splitopt's solver mirrors (a slow device), which is the fast direction for
both push-relabel codes.
``milp`` is HiGHS through highspy; ``brute`` runs where the graph has at most 20 free nodes.
Anchors in the same run: ``LayerGraph()`` (building the graph object from its nodes and edges)
and ``ortools raw`` (:func:`ortools_raw`: OR-Tools alone on the same s-t network), with the ratios
``cold / raw`` and ``maxflow / raw`` (issue 15's min-cut rows: the median and range of the ratios of
calls timed back to back, 3 settings x ``--repeats``) and ``blockwise / maxflow``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from splitopt import Device, LayerGraph, Link, Server
from splitopt.partitioning import partition
from splitopt.partitioning.problem import CutProblem, iteration_problem
from splitopt.partitioning.stgraph import build_network
from splitopt.partitioning.synthetic import resnet_like

SERVER = Server(name="edge-h100", flops=4e13, device_class="h100")
# (device FLOP/s, link bit/s): a slow device on a slow link, a mid one, a fast device on a fast link
SETTINGS = [(2e10, 1e6), (3e12, 1e7), (2e13, 1e9)]
ZOO = ("digits_cnn", "resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0",
       "vit_b_16", "gpt2", "bert_base")


def networkx_cut(prob: CutProblem) -> np.ndarray:
    """DADS-style min-cut of the same s-t graph with networkx, on integer-scaled capacities."""
    import networkx as nx

    net = build_network(prob)
    finite = np.where(net.inf, 0.0, net.caps)
    scale = 2.0**61 / max(float(finite.sum()), 1e-300)
    caps: dict[tuple[int, int], int | None] = {}
    for t, h, c, inf in zip(net.tails.tolist(), net.heads.tolist(),
                            np.floor(finite * scale).astype(np.int64).tolist(), net.inf.tolist(),
                            strict=True):
        old = caps.get((t, h), 0)
        caps[(t, h)] = None if inf or old is None else old + c
    g = nx.DiGraph()
    g.add_nodes_from(range(net.n_nodes))
    for (t, h), c in caps.items():
        if net.mirror:  # the same mirroring as splitopt's solver, so both get the easy direction
            t, h = h, t
        if c is None:
            g.add_edge(t, h)  # no capacity attribute: infinite
        else:
            g.add_edge(t, h, capacity=c)
    _, (near, far) = nx.minimum_cut(g, 1, 0) if net.mirror else nx.minimum_cut(g, 0, 1)
    src = np.zeros(net.n_nodes, bool)
    src[list(far if net.mirror else near)] = True
    return src[net.node_of]


def _networkx_from_graph(g: LayerGraph, dev: Device, link: Link) -> np.ndarray:
    """The networkx route end to end from the LayerGraph."""
    return networkx_cut(iteration_problem(g, dev, SERVER, link))


def one_blas_thread() -> Any:
    """A context limiting BLAS to one thread (every solver here runs one thread).

    On the shared 2-core machine OpenBLAS's threads made a 1e5-element dot product take 23 ms
    instead of 0.07 ms (they spin against the other jobs), and process CPU time counts them.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of this process (the solvers run one thread; robust on a shared machine)."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def ortools_raw(prob: CutProblem) -> float:
    """CPU seconds of :func:`ortools_raw_cut`."""
    return ortools_raw_cut(prob)[0]


def ortools_raw_cut(prob: CutProblem) -> tuple[float, np.ndarray]:
    """CPU seconds of OR-Tools alone on the s-t network splitopt builds for ``prob``, its cut.

    The anchor of issue 15's min-cut rows: the arcs and integer capacities are prepared outside
    the clock; inside it, ``SimpleMaxFlow`` gets the arcs, solves (in the direction splitopt
    solves), returns the minimum cut's side and is freed (any use of it pays that: 6-8 ms of the
    ~90 ms at 1e5 nodes). Everything splitopt adds (building arrays and the network, certifying
    the cut in floats, pricing and checking the plan) is the difference.
    """
    from ortools.graph.python import max_flow

    net = build_network(prob)
    finite = np.where(net.inf, 0.0, net.caps)
    icap = np.floor(finite * (2.0**61 / max(float(finite.sum()), 1e-300))).astype(np.int64)
    icap[net.inf] = int(icap.sum()) + 1
    tails, heads = (net.heads, net.tails) if net.mirror else (net.tails, net.heads)
    t0 = time.process_time()
    smf = max_flow.SimpleMaxFlow()
    smf.add_arcs_with_capacity(tails, heads, icap)
    smf.solve(*((1, 0) if net.mirror else (0, 1)))
    near = smf.get_sink_side_min_cut() if net.mirror else smf.get_source_side_min_cut()
    del smf
    seconds = time.process_time() - t0
    side = np.zeros(net.n_nodes, bool)
    side[np.asarray(near, dtype=np.int64)] = True
    return seconds, side[net.node_of]  # the mirror's sink side is the device side


def _fresh(g: LayerGraph) -> LayerGraph:
    """The same graph as a new object (no cached arrays)."""
    return LayerGraph(g.nodes, g.edges, g.inputs, g.output, name=g.name, meta=g.meta)


def speed_rows(name: str, g: LayerGraph, *, quick: bool, repeats: int = 3) -> list[dict]:
    """Times of every method on one graph, median over the device settings and repeats.

    Each repeat times the anchors and the max-flow calls back to back; the rows ``cold / raw``
    and ``maxflow / raw`` keep the ratio of every such pair (``pairs``), so their spread shows
    how much a loaded machine moved them.
    """
    rows = []
    pairs: dict[str, list[float]] = {"cold / raw": [], "maxflow / raw": []}
    for i, (flops, rate) in enumerate(SETTINGS[:1] if quick else SETTINGS):
        dev = Device(name="dev", flops=flops, spectral_eff_up=1, spectral_eff_dn=1)
        link = Link(rate, rate)
        prob = iteration_problem(g, dev, SERVER, link)
        runs: dict[str, list[float]] = {}
        costs: dict[str, float] = {}
        for _ in range(repeats):
            t, _ = _timed(partial(_fresh, g))
            runs.setdefault("LayerGraph()", []).append(t)
            runs.setdefault("ortools raw", []).append(ortools_raw(prob))  # anchors: no plan
            t, p = _timed(partial(partition, _fresh(g), dev, SERVER, link))
            runs.setdefault("maxflow cold", []).append(t)
            costs["maxflow cold"] = p.objective
            for m in ("maxflow", "blockwise"):
                t, p = _timed(partial(partition, g, dev, SERVER, link, method=m))
                runs.setdefault(m, []).append(t)
                costs[m] = p.objective
            raw = runs["ortools raw"][-1]
            pairs["cold / raw"].append(runs["maxflow cold"][-1] / raw)
            pairs["maxflow / raw"].append(runs["maxflow"][-1] / raw)
        if len(g) <= 2e4 or (i == 0 and not quick):  # above 2e4 nodes: one setting (minutes)
            t, mask = _timed(partial(_networkx_from_graph, g, dev, link))
            runs["networkx"], costs["networkx"] = [t], prob.price(mask)
        for m, limit in (("milp", 2e4), ("brute", 22)):
            if len(g) <= limit:
                t, p = _timed(partial(partition, g, dev, SERVER, link, method=m))
                runs[m], costs[m] = [t], p.objective
        best = costs["maxflow"]
        for m, ts in runs.items():
            rows.append({"graph": name, "nodes": len(g), "edges": len(g.edges), "device_flops":
                         flops, "link_bps": rate, "method": m, "seconds": statistics.median(ts),
                         "rel_diff": (costs[m] - best) / best if m in costs else 0.0})
    for m, ratios in pairs.items():
        rows.append({"graph": name, "nodes": len(g), "edges": len(g.edges), "method": m,
                     "pairs": ratios, "seconds": 0.0, "rel_diff": 0.0})
    return rows


def run(sizes: Sequence[int] = (1000, 10000, 100000), quick: bool = False,
        zoo: Sequence[str] | None = None, repeats: int = 3) -> list[dict]:
    """Speed rows on synthetic ResNet-like DAGs of the given sizes and on the zoo graphs.

    ``zoo`` defaults to every zoo model, or to digits_cnn and resnet18 when ``quick``.
    """
    if zoo is None:
        zoo = ("digits_cnn", "resnet18") if quick else ZOO
    rows = []
    for n in sizes:
        g = resnet_like(n)
        rows += speed_rows(f"resnet_like{n}", g, quick=quick, repeats=repeats)
    for name in zoo:
        rows += speed_rows(name, _zoo_graph(name), quick=quick, repeats=repeats)
    return rows


def _zoo_graph(name: str) -> LayerGraph:
    from splitopt.profiler import profile_model

    return profile_model(name) if name == "digits_cnn" else profile_model(name, times="h100")


def quality(models: Sequence[str] = ZOO, *, batch: int = 32) -> list[dict]:
    """Optimal cut vs every named baseline over devices x bandwidths."""
    from splitopt.partitioning.baselines import baselines
    from splitopt.scenario import catalog_device

    devices = [catalog_device(x, snr_db=15) for x in
               ("raspberry-pi-4", "jetson-nano", "jetson-orin-nano", "phone-snapdragon-8-gen-2")]
    rows = []
    for name in models:
        g = _zoo_graph(name)
        for dev in devices:
            for mbps in (1, 10, 100):
                link = Link(mbps * 1e6, mbps * 1e6)
                p = partition(g, dev, SERVER, link, batch=batch)
                prob = iteration_problem(g, dev, SERVER, link, batch=batch)
                row = {"model": name, "device": dev.name, "mbps": mbps, "optimal_s": p.objective,
                       "device_side": p.meta["device_side_size"], "nodes": len(g)}
                for b in baselines(prob, extended=True):
                    row[b.name] = b.reduction(p.objective)
                    if b.claimed is not None:
                        row[f"{b.name} claimed"] = b.reduction(b.claimed)
                rows.append(row)
    return rows


def _print_speed(rows: list[dict]) -> None:
    by: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        key = (r["graph"], r["nodes"], r["edges"])
        by.setdefault(key, {}).setdefault(r["method"], []).append(r)
    methods = ["LayerGraph()", "ortools raw", "maxflow cold", "maxflow", "blockwise", "networkx",
               "milp", "brute"]
    ratios = ["cold / raw", "maxflow / raw", "blockwise / maxflow", "networkx / maxflow cold"]
    print("| graph | nodes | edges | " + " | ".join(methods + ratios) + " |")
    print("|---" * (len(methods) + len(ratios) + 3) + "|")
    for (graph, n, e), ms in by.items():
        med = {m: statistics.median(x["seconds"] for x in v) for m, v in ms.items()}
        worst = max(abs(x["rel_diff"]) for v in ms.values() for x in v)
        cells = [f"{med[m] * 1e3:.1f} ms" if m in med else "-" for m in methods]
        for key in ("cold / raw", "maxflow / raw"):  # median [range] of the same-repeat pairs
            xs = [r for x in ms.get(key, []) for r in x["pairs"]]
            cells.append(f"{statistics.median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}]"
                         if xs else "-")
        for a, b in (("blockwise", "maxflow"), ("networkx", "maxflow cold")):
            cells.append(f"{med[a] / med[b]:.2f}x" if a in med and med.get(b) else "-")
        print(f"| {graph} | {n} | {e} | " + " | ".join(cells) + " |"
              + (f" (max rel. diff {worst:.1e})" if worst > 1e-9 else ""))


QUALITY_COLUMNS = ("device-only", "server-only", "best chain cut", "mispriced chain cut",
                   "blocks, no certificate")


def _print_quality(rows: list[dict]) -> None:
    print("| model | device | Mbit/s | optimal s/iter | device side | "
          + " | ".join(f"vs {c}" for c in QUALITY_COLUMNS) + " |")
    print("|---" * (5 + len(QUALITY_COLUMNS)) + "|")
    for r in rows:
        cells = [f"{r[c]:.2f}%" if c in r else "-" for c in QUALITY_COLUMNS]
        print(f"| {r['model']} | {r['device']} | {r['mbps']} | {r['optimal_s']:.4g} | "
              f"{r['device_side']}/{r['nodes']} | " + " | ".join(cells) + " |")
    print("\nper model: median / max reduction of the optimum vs each baseline")
    print("| model | " + " | ".join(QUALITY_COLUMNS) + " |")
    print("|---" * (1 + len(QUALITY_COLUMNS)) + "|")
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        cells = []
        for c in QUALITY_COLUMNS:
            xs = [r[c] for r in mine if c in r]
            cells.append(f"{statistics.median(xs):.1f}% / {max(xs):.1f}%" if xs else "-")
        print(f"| {model} | " + " | ".join(cells) + " |")


def main() -> None:
    """Run the benchmark and print Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one setting")
    ap.add_argument("--no-zoo", action="store_true", help="synthetic graphs only")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per device setting")
    ap.add_argument("--sizes", type=int, nargs="+", metavar="N",
                    help="resnet_like sizes (default 1e3 1e4 1e5; --quick: 1e3 1e4)")
    args = ap.parse_args()
    sizes = args.sizes or ((1000, 10000) if args.quick else (1000, 10000, 100000))
    zoo = () if args.no_zoo else (("digits_cnn", "resnet18") if args.quick else ZOO)
    with one_blas_thread():
        _print_speed(run(sizes, args.quick, zoo, args.repeats))
    print("\ntimes: CPU seconds of this process (time.process_time), median over settings; "
          "x / raw: median [range] of the ratios of calls timed back to back")
    if zoo:
        _print_quality(quality(zoo))


if __name__ == "__main__":
    main()
