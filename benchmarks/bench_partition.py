"""Partition family: max-flow speed vs a networkx min-cut, the MILP and brute force; plan quality
on zoo models vs the named baselines: device-only, server-only, the honest best chain cut, the
mispriced chain cut, block contraction without certificate (benchmarks/partition.py)."""

from __future__ import annotations

import time
from functools import cache, partial
from typing import Any

from splitopt.benchmarks.registry import BenchSpec, Case, register

SPEED_FULL = ("resnet_like1000", "resnet_like10000", "resnet_like100000", "resnet50", "gpt2")
SPEED_QUICK = ("resnet_like1000", "resnet_like10000", "resnet18")
QUALITY_FULL = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "vit_b_16", "gpt2", "bert_base")
QUALITY_QUICK = ("resnet18",)
LIMITS = {"milp": 2e4}


@cache
def _graph(name: str):
    from splitopt.benchmarks.partition import _zoo_graph

    from splitopt.partitioning.synthetic import resnet_like

    if name.startswith("resnet_like"):
        return resnet_like(int(name.removeprefix("resnet_like")))
    if name.startswith("random_dag"):
        import numpy as np

        from splitopt.testing import random_dag

        return random_dag(np.random.default_rng(0), int(name.removeprefix("random_dag")))
    return _zoo_graph(name)


def _setting():
    from splitopt.benchmarks.partition import SERVER, SETTINGS

    from splitopt import Device, Link

    flops, rate = SETTINGS[0]
    return Device(name="dev", flops=flops, spectral_eff_up=1, spectral_eff_dn=1), SERVER, \
        Link(rate, rate)


def speed(graph: str, method: str) -> dict[str, Any]:
    """CPU seconds of one method on one graph, its cut re-priced in floats (BLAS on one thread)."""
    from splitopt.benchmarks.partition import one_blas_thread

    with one_blas_thread():
        return _speed(graph, method)


def _speed(graph: str, method: str) -> dict[str, Any]:
    from splitopt.benchmarks.partition import _networkx_from_graph

    from splitopt.partitioning import partition
    from splitopt.partitioning.problem import iteration_problem

    g = _graph(graph)
    dev, srv, link = _setting()
    if len(g) > LIMITS.get(method, float("inf")):
        return {"status": "skipped", "error": f"{len(g)} nodes: above this method's limit"}
    partition(g, dev, srv, link)  # caches the graph's index arrays, as every later call finds them
    t0 = time.process_time()
    if method == "networkx":
        mask = _networkx_from_graph(g, dev, link)
        solve_s = time.process_time() - t0
        cost = iteration_problem(g, dev, srv, link).price(mask)
    elif method == "ortools raw":  # the anchor: OR-Tools alone on the same s-t network
        from splitopt.benchmarks.partition import ortools_raw_cut

        prob = iteration_problem(g, dev, srv, link)
        solve_s, mask = ortools_raw_cut(prob)
        cost = prob.price(mask)
    elif method == "maxflow cold":  # from a fresh graph object: no cached arrays
        from splitopt.benchmarks.partition import _fresh

        fresh = _fresh(g)
        t0 = time.process_time()
        cost = partition(fresh, dev, srv, link).objective
        solve_s = time.process_time() - t0
    else:
        cost = partition(g, dev, srv, link, method=method).objective
        solve_s = time.process_time() - t0
    return {"objective": cost, "bound": cost if method != "networkx" else None,
            "status": "optimal", "solve_s": solve_s, "nodes": len(g)}


def quality(model: str, method: str) -> dict[str, Any]:
    """Delay of the optimal cut and of each baseline (a Jetson Nano on a 10 Mbit/s link)."""
    from splitopt.benchmarks.partition import SERVER

    from splitopt import Link
    from splitopt.partitioning import partition
    from splitopt.partitioning.baselines import baselines
    from splitopt.partitioning.problem import iteration_problem
    from splitopt.scenario import catalog_device

    g, dev, link = _graph(model), catalog_device("jetson-nano", snr_db=15), Link(1e7, 1e7)
    t0 = time.process_time()
    if method == "max-flow (optimal)":
        cost = partition(g, dev, SERVER, link, batch=32).objective
    else:
        prob = iteration_problem(g, dev, SERVER, link, batch=32)
        cost = next(b.cost for b in baselines(prob, extended=True) if b.name == method)
    return {"objective": cost, "status": "ok", "solve_s": time.process_time() - t0}


def _cases(quick: bool) -> list[Case]:
    cases = []
    for g in SPEED_QUICK if quick else SPEED_FULL:
        size = float(g.removeprefix("resnet_like")) if g.startswith("resnet_like") else None
        for m in ("ortools raw", "maxflow cold", "maxflow", "blockwise", "networkx", "milp"):
            cases.append(Case(f"speed {g}", m, partial(speed, g, m), size))
    for m in ("maxflow", "blockwise", "networkx", "milp", "brute"):  # brute force where it ends
        cases.append(Case("speed random_dag18", m, partial(speed, "random_dag18", m), 20.0))
    for model in QUALITY_QUICK if quick else QUALITY_FULL:
        for m in ("max-flow (optimal)", "best chain cut", "mispriced chain cut",
                  "blocks, no certificate", "device-only", "server-only"):
            cases.append(Case(f"quality {model}", m, partial(quality, model, m)))
    return cases


SPEC = register(BenchSpec(
    name="partition",
    description="exact partitioning of layer DAGs: CPU seconds of max-flow (OR-Tools; from a "
                "fresh graph and cached) and the block-wise path vs OR-Tools alone on the same "
                "s-t network (the anchor) and a networkx preflow-push min-cut of it "
                "(integer capacities, re-priced in floats), the HiGHS MILP and brute force; and "
                "iteration delay of the optimal cut vs the baselines (Jetson Nano, 10 Mbit/s, "
                "H100-profiled server, batch 32)",
    cases=_cases, baseline=("ortools raw", "networkx", "max-flow (optimal)")))
